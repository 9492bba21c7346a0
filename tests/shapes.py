"""Messages as Exchange Online and Gmail really deliver them, composed for the tests.

The header shapes (order, spelling, stray tokens, comments) follow the real samples and
Microsoft's and Google's documentation collected in
``/work/shared/notes/m365-google-realities.md``; the people, domains, addresses and IPs
are our own. Each function returns the bytes as the mailbox stores them: the service's
own headers on top (topmost first), the sender's message below, and Exchange's
organisation headers at the end of the header block, where Exchange puts them.

The approver is alice@example.com (ticket 1234 in ``tests/conftest.py``). In the
Exchange Online tests the tenant's accepted domain is example.com for internal mail;
external mail comes from example.com into another tenant (service.example).
"""

from __future__ import annotations

import dkim

from tests.harness import reply

ALICE = "alice@example.com"
GMAIL_SIGNED = [b"to", b"subject", b"message-id", b"date", b"from", b"mime-version"]
OUTLOOK_SIGNED = [b"from", b"date", b"subject", b"message-id", b"content-type", b"mime-version"]

# -- the sender's message ---------------------------------------------------------------


def approval_reply(
    sender: str = ALICE, ticket: int = 1234, first: str = "Approve", msgid: str = ""
) -> bytes:
    """Alice's reply as her mail client wrote it (no service headers yet)."""
    body = (
        f"{first}\n\n"
        "On Sat, 28 Nov 2026 at 08:55, Service Desk <approvals@service.example> wrote:\n\n"
        f"> Ticket [ID:{ticket}] needs your approval.\n> Please reply APPROVE or REJECT.\n"
    )
    return reply(sender, f"Re: Approval required [ID:{ticket}]", body, msgid=msgid or None,
                 auth=None)


def signed(raw: bytes, domain: str, private_key: bytes, headers: list[bytes] | None = None,
           selector: bytes = b"sel") -> bytes:
    """``raw`` DKIM-signed by ``domain`` (a test key), over ``headers`` (Gmail's by default)."""
    signature = dkim.sign(raw, selector, domain.encode(), private_key,
                          include_headers=headers or GMAIL_SIGNED)
    return bytes(signature) + raw


def on_top(raw: bytes, *fields: str) -> bytes:
    """``raw`` with header fields prepended (topmost first), as later hops add theirs."""
    return b"".join(f"{f}\r\n".encode() for f in fields) + raw


def at_end_of_header(raw: bytes, *fields: str) -> bytes:
    """``raw`` with header fields appended after its last header field."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head + b"".join(f"\r\n{f}".encode() for f in fields) + sep + body


# -- Exchange Online ---------------------------------------------------------------------

EOP_FRONTEND = (
    "Received: from mail-wm1-f41.google.com (209.85.128.41) by\r\n"
    " AM4PEPF00027A6C.mail.protection.outlook.com (10.167.16.90) with Microsoft SMTP\r\n"
    " Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20.8901.12 via\r\n"
    " Frontend Transport; Sat, 28 Nov 2026 09:00:02 +0000"
)
EOP_MAILBOX = (
    "Received: from AM4PEPF00027A6C.eurprd04.prod.outlook.com (2603:10a6:208:1ce::6)\r\n"
    " by DB9PR07MB7812.eurprd07.prod.outlook.com with HTTPS; Sat, 28 Nov 2026 09:00:03 +0000"
)
RECEIVED_SPF = (
    "Received-SPF: Pass (protection.outlook.com: domain of example.com designates\r\n"
    " 209.85.128.41 as permitted sender) receiver=protection.outlook.com;\r\n"
    " client-ip=209.85.128.41; helo=mail-wm1-f41.google.com; pr=C"
)
INTERNAL_SUBMISSION = (
    "Received: from DB9PR07MB7812.eurprd07.prod.outlook.com ([fe80::4c1e:9a2f:51d3:77b0])\r\n"
    " by DB9PR07MB7812.eurprd07.prod.outlook.com ([fe80::4c1e:9a2f:51d3:77b0%4]) with\r\n"
    " mapi id 15.20.8901.010; Sat, 28 Nov 2026 09:00:01 +0000"
)

# Exchange Online Protection's verdicts on mail from outside (Learn "Anti-spam message
# headers"; samples): no authserv-id, comments, ";" without a space, compauth.
EXO_PASS = (
    "spf=pass (sender IP is 209.85.128.41) smtp.mailfrom=example.com; dkim=pass\r\n"
    " (signature was verified) header.d=example.com;dmarc=pass action=none\r\n"
    " header.from=example.com;compauth=pass reason=100"
)
EXO_PASS_STRAY = (  # the recipient tenant's domain left between results, as in the samples
    "spf=pass (sender IP is 209.85.128.41) smtp.mailfrom=example.com;\r\n"
    " servicetenant.onmicrosoft.com; dkim=pass (signature was verified)\r\n"
    " header.d=example.com;servicetenant.onmicrosoft.com; dmarc=pass action=none\r\n"
    " header.from=example.com;compauth=pass reason=100"
)
EXO_PASS_TWO_DKIM = (  # two dkim= results, as a 2026 sample shows
    "spf=pass (sender IP is 209.85.128.41) smtp.mailfrom=example.com; dkim=pass\r\n"
    " (signature was verified) header.d=example.com;dkim=pass (signature was verified)\r\n"
    " header.d=esp.example;dmarc=pass action=none header.from=example.com;compauth=pass\r\n"
    " reason=100"
)
EXO_FAIL = (
    "spf=fail (sender IP is 198.51.100.23) smtp.mailfrom=example.com; dkim=none\r\n"
    " (message not signed) header.d=none;dmarc=fail action=oreject\r\n"
    " header.from=example.com;compauth=fail reason=000"
)
EXO_BESTGUESS = (  # example.com publishes no DMARC record; EOP guesses it would pass
    "spf=pass (sender IP is 209.85.128.41) smtp.mailfrom=example.com; dkim=none\r\n"
    " (message not signed) header.d=none;dmarc=bestguesspass action=none\r\n"
    " header.from=example.com;compauth=pass reason=109"
)
EXO_ARC_OVERRIDE = (  # compauth=pass reason=130: a trusted ARC sealer overrode a DMARC fail
    "spf=fail (sender IP is 192.0.2.80) smtp.mailfrom=example.com; dkim=fail\r\n"
    " (body hash did not verify) header.d=example.com;dmarc=fail action=none\r\n"
    " header.from=example.com;compauth=pass reason=130"
)
EXO_DIRECT_SEND = (  # anonymous SMTP to the tenant's MX with the tenant's own domain
    "spf=fail (sender IP is 198.51.100.23) smtp.mailfrom=example.com; dkim=none\r\n"
    " (message not signed) header.d=none;dmarc=fail action=none\r\n"
    " header.from=example.com;compauth=fail reason=601"
)
EXO_INTERNAL_STAMP = (  # what Exchange Online writes on a user's own submission
    "dkim=none (message not signed)\r\n header.d=none;dmarc=none action=none"
    " header.from=example.com;"
)
EXO_UNREADABLE = (  # a comment that never closes: nothing can be read from it
    "spf=pass (sender IP is 209.85.128.41 smtp.mailfrom=example.com; dkim=pass\r\n"
    " header.d=example.com;dmarc=pass action=none header.from=example.com"
)


def organisation_headers(auth_as: str, *, internal: bool) -> list[str]:
    """The X-MS-Exchange-Organization-* headers Mailbox Transport Delivery keeps."""
    source = ("DB9PR07MB7812.eurprd07.prod.outlook.com" if internal
              else "AM4PEPF00027A6C.eurprd04.prod.outlook.com")
    return [
        "X-MS-Exchange-Organization-ExpirationStartTime: 28 Nov 2026 09:00:02.6142 (UTC)",
        "X-MS-Exchange-Organization-Network-Message-Id: 5b2f0e4e-8c1d-4e7a-9f3b-0a1c2d3e4f50",
        "X-MS-Exchange-Organization-MessageDirectionality: "
        + ("Originating" if internal else "Incoming"),
        f"X-MS-Exchange-Organization-AuthSource: {source}",
        f"X-MS-Exchange-Organization-AuthAs: {auth_as}",
        *([f"X-MS-Exchange-Organization-AuthMechanism: {'04' if internal else '10'}"]
          if internal else []),
        "X-MS-Exchange-Organization-SCL: 1",
    ]


def exo_external(message: bytes, results: str, *, auth_as: str = "Anonymous") -> bytes:
    """``message`` as Exchange Online delivers it from the internet, with ``results``."""
    delivered = at_end_of_header(message, *organisation_headers(auth_as, internal=False))
    return on_top(delivered, EOP_MAILBOX, f"Authentication-Results: {results}", RECEIVED_SPF,
                  EOP_FRONTEND)


def exo_internal(message: bytes, *, stamp: bool = True, auth_as: tuple[str, ...] = ("Internal",)
                 ) -> bytes:
    """``message`` as Exchange Online delivers it between users of one tenant: not
    DKIM-signed, with or without the ``dkim=none ... dmarc=none`` stamp."""
    extra = organisation_headers(auth_as[0], internal=True) if auth_as else []
    extra += [f"X-MS-Exchange-Organization-AuthAs: {a}" for a in auth_as[1:]]
    delivered = at_end_of_header(message, *extra)
    top = [f"Authentication-Results: {EXO_INTERNAL_STAMP}"] if stamp else []
    return on_top(delivered, *top, INTERNAL_SUBMISSION)


# -- Gmail / Google Workspace -------------------------------------------------------------

GMAIL_RECEIVED = (
    "Received: from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\r\n"
    "        by mx.google.com with SMTPS id a640c23a62f3a-b1c2d3e4f5a6b7sor1234567a;\r\n"
    "        Sat, 28 Nov 2026 01:00:01 -0800 (PST)"
)


def gmail_results(dkim_: str = "pass", dmarc: str = "pass", spf: str = "pass",
                  domain: str = "example.com", b: str = "") -> str:
    bpart = f" header.b={b}" if b else ""
    return (
        f"mx.google.com;\r\n       dkim={dkim_} header.i=@{domain} header.s=sel{bpart};\r\n"
        f"       spf={spf} (google.com: domain of alice@{domain} designates 209.85.220.41 as"
        f" permitted sender) smtp.mailfrom=alice@{domain};\r\n"
        f"       dmarc={dmarc} (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from={domain}"
    )


def gmail_delivered(message: bytes, results: str) -> bytes:
    """``message`` as Gmail stores it: its own results on top, under the ARC set."""
    return on_top(
        message,
        "Delivered-To: approvals@service.example",
        "Received: by 2002:a05:6a10:9e8b:b0:5f1:2c3d:4e5f with SMTP id y11csp123456pxv;\r\n"
        "        Sat, 28 Nov 2026 01:00:02 -0800 (PST)",
        f"ARC-Authentication-Results: i=1; {results}",
        "Return-Path: <alice@example.com>",
        GMAIL_RECEIVED,
        "Received-SPF: pass (google.com: domain of alice@example.com designates 209.85.220.41"
        " as permitted sender) client-ip=209.85.220.41;",
        f"Authentication-Results: {results}",
    )
