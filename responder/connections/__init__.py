"""What the Microsoft Graph mailbox and sender share: the Graph API client (``graph``)
and OAuth2 tokens for mail sign-in (``oauth``).
"""
