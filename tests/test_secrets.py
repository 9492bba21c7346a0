"""Secrets never reach a log line, an error, the ledger or ``responder check``.

Distinctive secrets (with characters that change under URL and base64 encoding) are
configured for Halo, IMAP and SMTP; passes then run through the failures most likely to
echo a credential: a wrong Halo secret, a wrong IMAP password, a wrong SMTP password, a
refused recipient and a Halo 5xx. Logging is set up as the CLI sets it up
(``setup_logging`` with the Redactor), at debug level, and every line is searched for
each secret in every form it travels in. A second handler sees the records before the
Redactor does, so that a leak is caught at its source, not only papered over.
"""

from __future__ import annotations

import base64
import io
import logging
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from responder.halo.standin import StandinHalo
from responder.logs import also_redact, setup_logging
from responder.service import check
from tests.harness import Harness, gmail_reply
from tests.servers import Dovecot, SmtpSink

# The SMTP sink offers AUTH over plain TCP on 127.0.0.1, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

HALO_SECRET = "Halo+Secret/zebra&=41"
WRONG_HALO_SECRET = "Wrong+Halo/okapi&=52"
IMAP_SECRET = "Imap+Pass/quokka&=63"
WRONG_IMAP_SECRET = "Wrong+Imap/tapir&=74"
SMTP_SECRET = "Smtp+Pass/narwhal&=85"
WRONG_SMTP_SECRET = "Wrong+Smtp/axolotl&=96"
ALL = (
    HALO_SECRET,
    WRONG_HALO_SECRET,
    IMAP_SECRET,
    WRONG_IMAP_SECRET,
    SMTP_SECRET,
    WRONG_SMTP_SECRET,
)


def forms(secret: str, user: str = "responder") -> set[str]:
    """A secret as it may appear on the wire: plain, URL-encoded, base64, SASL PLAIN."""
    plain = f"\0{user}\0{secret}".encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(plain).decode(),
    }


def leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    found = [f for s in ALL for f in forms(s) if f in text]
    return found + [t for t in extra if t in text]


class Raw(logging.Handler):
    """Every record as a library wrote it, before any Redactor touched it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.formatter = logging.Formatter("%(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, Raw]]:
    """The CLI's logging (debug, with every secret configured anywhere), captured; the
    root logger is put back afterwards by conftest's ``logging_as_it_was``."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging(1, "text", ALL)
    raw = Raw()
    logging.getLogger().handlers.insert(0, raw)  # before the Redactor, which rewrites it
    yield stream, raw


@pytest.fixture
def secret_harness(shared_dovecot: Dovecot) -> Iterator[Harness]:
    """The harness with distinctive secrets: Halo's, the IMAP user's, SMTP AUTH's."""
    with (
        StandinHalo(client_secret=HALO_SECRET) as halo,
        SmtpSink(username="responder", password=SMTP_SECRET) as sink,
        tempfile.TemporaryDirectory(prefix="responder-test-") as state,
    ):
        halo.add_ticket(
            1234,
            "New laptop for Dana",
            [
                {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 3},
            ],
        )
        harness = Harness(shared_dovecot, halo, sink, Path(state))
        harness.user = harness.user.replace("approvals", "secretive")
        shared_dovecot.add_user(harness.user, IMAP_SECRET)
        harness.overrides = {
            "halo": {"max_retries": 0},
            "smtp": {"username": "responder", "password": SMTP_SECRET},
        }
        yield harness


def with_overrides(harness: Harness, **sections: dict[str, object]) -> None:
    for name, values in sections.items():
        harness.overrides[name] = {**harness.overrides.get(name, {}), **values}


async def test_no_secret_reaches_logs_errors_the_ledger_or_check(
    secret_harness: Harness, logs: tuple[io.StringIO, Raw]
) -> None:
    h = secret_harness
    stream, raw = logs
    errors: list[str] = []
    h.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    h.deliver(gmail_reply("dave@example.com", 1234, "Approve"))

    # 1. A wrong Halo secret: the token request is refused, everything stays pending.
    with_overrides(h, halo={"client_secret": WRONG_HALO_SECRET})
    first = await h.once()
    assert {r.outcome for r in first.reports} == {"pending"}
    with_overrides(h, halo={"client_secret": HALO_SECRET})

    # 2. A wrong IMAP password: the pass cannot start.
    with_overrides(h, imap={"password": WRONG_IMAP_SECRET})
    with pytest.raises(Exception) as failed:
        await h.once()
    errors.append("".join(traceback.format_exception(failed.value)))
    with_overrides(h, imap={"password": IMAP_SECRET})

    # 3. A wrong SMTP password, then a refused recipient, with Halo failing with a 500.
    h.halo.faults.fail_next(500, times=5, path_prefix="/api/ticketapproval")
    with_overrides(h, smtp={"password": WRONG_SMTP_SECRET})
    await h.once()
    with_overrides(h, smtp={"password": SMTP_SECRET})
    h.sink.refuse_next(1, code=550, text="No such user here")
    await h.once()

    # 4. Everything well again: the approval goes through and every answer is sent.
    h.halo.faults.clear()
    last = await h.once()
    assert "approved" in {r.outcome for r in last.reports}
    assert h.halo.approver(1234, 1)["result"] == 1

    # 5. ``responder check`` with every credential wrong.
    with_overrides(
        h,
        halo={"client_secret": WRONG_HALO_SECRET},
        imap={"password": WRONG_IMAP_SECRET},
        smtp={"password": WRONG_SMTP_SECRET},
    )
    lines = await check(h.settings)
    assert not all(line.ok for line in lines)
    errors += [line.detail for line in lines]

    tokens = tuple(h.halo.issued_tokens)  # Halo's bearer tokens are secrets too
    written = stream.getvalue()
    for failure in ("invalid_client", "SMTPAuthenticationError", "HTTP 500", "550"):
        assert failure in written  # each failure was logged, and so could have leaked
    assert leaks(written, tokens) == []
    assert [line for line in raw.lines if leaks(line, tokens)] == []
    assert leaks("\n".join(errors), tokens) == []
    assert leaks(repr(h.ledger_rows()), tokens) == []
    assert all(s not in repr(h.settings) for s in ALL)


def test_a_secret_that_a_reloaded_config_brings_is_hidden_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After SIGHUP with a new Halo secret, both the old and the new one are redacted."""
    setup_logging(0, "text", ["the-old-secret"])
    also_redact(["the-new-secret"])
    logging.getLogger("responder").info("old the-old-secret, new the-new-secret")
    line = capsys.readouterr().err
    assert "the-old-secret" not in line and "the-new-secret" not in line
    assert line.count("***") == 2
