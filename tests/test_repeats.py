"""A person's second identical reply, and the mail system's copy of one, end to end.

``responder once`` as an admin runs it (a subprocess), a real Dovecot, the SMTP sink
and the stand-in Halo. A copy the mail system makes keeps the sender's ``Date``; a
person who sends the same words again writes a new message with its own: that one is
answered ("already decided"), the copy is filed without an answer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import Harness, gmail_reply, text_of

REPO = Path(__file__).resolve().parent.parent
FIRST_DATE = "Sat, 28 Nov 2026 09:00:00 +0000"  # the harness's replies carry this Date


def once(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "responder", "once", "--config", str(config)],
        cwd=REPO, capture_output=True, timeout=90,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def alice_approves(msgid: str, date: str = FIRST_DATE) -> bytes:
    """Alice's one-word reply; only its Message-ID (and, when she writes again, its Date)
    differ from one to the next."""
    raw = gmail_reply("alice@example.com", 1800, "Approve", msgid=msgid)
    return raw.replace(f"Date: {FIRST_DATE}".encode(), f"Date: {date}".encode())


def test_a_second_identical_reply_is_answered_and_a_copy_is_not(
    harness: Harness, tmp_path: Path
) -> None:
    harness.halo.add_ticket(1800, "Change", [
        {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2}])
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(alice_approves("<first@example.com>"))
    once(config)
    assert harness.halo.approver(1800, 1)["result"] == 1
    assert len(harness.answers()) == 1

    # An hour later, from her phone, not having seen the confirmation: the same words.
    harness.deliver(alice_approves("<again@example.com>", "Sat, 28 Nov 2026 10:02:00 +0000"))
    once(config)

    answers = harness.answers()
    assert len(answers) == 2, [text_of(a) for a in answers]
    assert answers[1]["In-Reply-To"] == "<again@example.com>"
    assert "already" in text_of(answers[1]).lower()
    assert len(harness.folder("Approvals/Unmatched")) == 1  # where late replies go
    assert len(harness.posts()) == 1 and harness.halo.duplicate_decisions == 0

    # The mail system delivers her second reply once more, under another Message-ID,
    # with her Date: a copy, filed without a word.
    harness.deliver(alice_approves("<again-copy@example.com>", "Sat, 28 Nov 2026 10:02:00 +0000"))
    once(config)

    assert len(harness.answers()) == 2
    assert len(harness.folder("Approvals/Ignored")) == 1
    assert harness.folder("INBOX") == []
    rows = {r["key"]: r for r in harness.ledger_rows()}
    assert rows["<again@example.com>"]["outcome"] == "already-decided"
    assert "<again-copy@example.com>" not in rows  # a copy: no row of its own
    assert len(harness.posts()) == 1
