"""Trust: whether the sender really is who From: says (no I/O but dkimpy's DNS look-up).

``authresults`` reads the receiving server's Authentication-Results, ``authenticity``
judges them (and our own DKIM check), ``samples`` and ``discovery`` explain which
``[security]`` settings saved mail fits (``check --sample``, ``check --discover``, ``init``).
"""
