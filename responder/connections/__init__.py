"""What the Microsoft Graph mailbox and sender share: the Graph API client (``graph``),
OAuth2 tokens for mail sign-in (``oauth``), and the request budget and Retry-After that
the Halo client uses too (``budget``).
"""
