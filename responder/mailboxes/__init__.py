"""The mailbox adapters (the shell): each implements ``responder.mailbox.Mailbox``."""
