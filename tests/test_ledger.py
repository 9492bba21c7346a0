"""The ledger remembers every message, so nothing is acted on or answered twice."""

import sqlite3
from datetime import timedelta
from pathlib import Path

from responder.ledger import FILED, SUBMITTING, Ledger


def test_a_message_is_found_by_id_or_by_content(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record("<a@x>", state=SUBMITTING, content_hash="h1", ticket_id=7, seq=2)
    assert ledger.find("<a@x>", "other").state == SUBMITTING
    replay = ledger.find("<changed-id@x>", "h1")
    assert replay is not None and replay.key == "<a@x>"
    assert ledger.find("<b@x>", "h2") is None


def test_states_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger(path).record("<a@x>", state=FILED, content_hash="h", outcome="approved")
    again = Ledger(path)
    row = again.find("<a@x>", "h")
    assert row is not None and (row.state, row.outcome) == (FILED, "approved")
    names = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM migrations")]
    assert names == ["0001_messages_and_outbox", "0002_replays"]


def test_one_answer_per_message_and_a_count_per_recipient(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record("<a@x>", state=SUBMITTING, content_hash="h")
    assert ledger.queue_answer("<a@x>", "alice@example.com", b"raw")
    assert not ledger.queue_answer("<a@x>", "alice@example.com", b"raw again")
    assert ledger.answers_to("alice@example.com", timedelta(hours=1)) == 1
    [item] = ledger.pending_answers()
    ledger.answer_failed(item.id, "451 try later")
    assert ledger.outbox_size() == 1
    ledger.answer_sent(item.id)
    assert ledger.pending_answers() == [] and ledger.outbox_size() == 0


def test_answers_refused_too_often_are_dropped_not_retried_forever(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record("<a@x>", state=SUBMITTING, content_hash="h")
    ledger.queue_answer("<a@x>", "alice@example.com", b"raw")
    [item] = ledger.pending_answers(3)
    for _ in range(3):
        ledger.answer_failed(item.id, "550 no such user")
    assert ledger.drop_stale_answers(3) == ["<a@x>"]
    assert ledger.pending_answers(3) == [] and ledger.outbox_size() == 0
