"""Email-driven approval responder for Halo."""

__version__ = "0.1.0"
