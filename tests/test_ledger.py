"""The ledger remembers every message, so nothing is acted on or answered twice."""

import os
import re
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from responder.ledger import (
    FILED,
    MIGRATIONS,
    SUBMITTING,
    Ledger,
    LedgerError,
    backup,
    schema_version,
)


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
    assert names == [name for name, _ in MIGRATIONS]  # each applied once, in order
    assert names[:2] == ["0001_messages_and_outbox", "0002_replays"]


def test_one_answer_per_message_and_a_count_per_recipient(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record("<a@x>", state=SUBMITTING, content_hash="h")
    assert ledger.queue_answer("<a@x>", "alice@example.com", b"raw")
    assert not ledger.queue_answer("<a@x>", "alice@example.com", b"raw again")
    assert ledger.answers_to("alice@example.com", timedelta(hours=1)) == 1
    [item] = ledger.pending_answers()
    ledger.answer_failed(item, "451 try later")
    assert ledger.outbox_size() == 1
    ledger.answer_sent(item)
    assert ledger.pending_answers() == [] and ledger.outbox_size() == 0


def test_answers_refused_too_often_are_dropped_not_retried_forever(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record("<a@x>", state=SUBMITTING, content_hash="h")
    ledger.queue_answer("<a@x>", "alice@example.com", b"raw")
    [item] = ledger.pending_answers(3)
    for _ in range(3):
        ledger.answer_failed(item, "550 no such user")
    assert ledger.drop_stale_answers(3) == ["<a@x>"]
    assert ledger.pending_answers(3) == [] and ledger.outbox_size() == 0


def test_an_answer_goes_pending_sending_sent_and_one_process_takes_it(tmp_path: Path) -> None:
    """Marked "sending" by one process just before it goes: another process on the ledger
    cannot take it then; refused, it is pending again; a crash leaves it "sending", found
    again with the process that was sending it."""
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record("<a@x>", state=SUBMITTING, content_hash="h")
    ledger.queue_answer("<a@x>", "alice@example.com", b"raw")
    [item] = ledger.pending_answers()
    assert item.sending_pid is None
    assert ledger.answer_sending(item, 4242)
    assert not ledger.answer_sending(item, 4343)  # as it was found: pending; no longer
    [crashed] = ledger.pending_answers()
    assert crashed.sending_pid == 4242 and ledger.outbox_size() == 1
    assert ledger.answers_to("alice@example.com", timedelta(hours=1)) == 1
    assert ledger.answer_sending(crashed, 4343)  # taken over (the caller saw 4242 gone)
    ledger.answer_failed(crashed, "451 try later")
    [again] = ledger.pending_answers()
    assert (again.sending_pid, again.attempts) == (None, 1)
    assert ledger.answer_sending(again, 4343)
    ledger.answer_sent(again)
    assert ledger.pending_answers() == [] and ledger.outbox_size() == 0


# -- schema versions: upgraded at start from every earlier one, newer ones refused ------------

def _ledger_as_of(path: Path, applied: int, *, versioned: bool) -> None:
    """A ledger as the release with the first ``applied`` migrations left it.

    Releases before schema versions recorded only the migration names (user_version 0);
    later ones also set user_version. Each gets one message once it has the table.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, at TEXT)")
    for name, sql in MIGRATIONS[:applied]:
        for statement in filter(str.strip, sql.split(";")):
            db.execute(statement)
        db.execute("INSERT INTO migrations VALUES (?, '2026-01-01')", (name,))
    if applied >= 1:
        db.execute("INSERT INTO messages (key, content_hash, state, outcome, ticket_id, "
                   "created_at, updated_at) VALUES ('<old@x>', 'h', 'filed', 'approved', 7, "
                   "'2026-01-01T00:00:00.000+00:00', '2026-01-01T00:00:00.000+00:00')")
    if versioned:
        db.execute(f"PRAGMA user_version = {applied}")
    db.close()


@pytest.mark.parametrize("versioned", [False, True], ids=["names-only", "user_version"])
@pytest.mark.parametrize("applied", range(len(MIGRATIONS) + 1))
def test_a_ledger_from_every_earlier_version_is_upgraded(
    tmp_path: Path, applied: int, versioned: bool
) -> None:
    path = tmp_path / "l.sqlite3"
    _ledger_as_of(path, applied, versioned=versioned)

    ledger = Ledger(path)

    assert ledger.version() == schema_version() == len(MIGRATIONS)
    names = [r[0] for r in ledger.db.execute("SELECT name FROM migrations ORDER BY name")]
    assert names == sorted(name for name, _ in MIGRATIONS)
    if applied >= 1:  # what was recorded before the upgrade is still there, and usable
        row = ledger.find("<old@x>", "h")
        assert row is not None and (row.outcome, row.ticket_id) == ("approved", 7)
    ledger.record("<new@x>", state=FILED, content_hash="h2", outcome="rejected")
    assert ledger.queue_answer("<new@x>", "a@example.com", b"answer")
    ledger.close()
    assert Ledger(path).version() == len(MIGRATIONS)  # and opening again changes nothing


def test_a_ledger_from_a_newer_responder_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {schema_version() + 1}")
    db.close()

    with pytest.raises(LedgerError, match="written by a newer responder"):
        Ledger(path)

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema_version() + 1


def test_backup_of_a_missing_ledger_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at"):
        backup(tmp_path / "state" / "l.sqlite3", tmp_path / "copy.sqlite3")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o000])
def test_a_backup_is_readable_by_its_owner_only_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    """It holds people's addresses and words: 0600, also where an older copy was 0644."""
    source = tmp_path / "l.sqlite3"
    ledger = Ledger(source)
    ledger.record("<a@x>", state=FILED, content_hash="h", note="approved for Dana")
    ledger.close()
    target = tmp_path / "copy.sqlite3"
    target.write_bytes(b"an older copy")
    target.chmod(0o644)
    before = os.umask(umask)
    try:
        backup(source, target)
    finally:
        os.umask(before)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy")]  # no partial


def test_a_digest_takes_its_held_answers_as_one_unit(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    for key in ("<a@x>", "<b@x>", "<c@x>"):
        ledger.record(key, state=SUBMITTING, content_hash=key)
    ledger.queue_answer("<a@x>", "alice@example.com", b"answer")
    assert ledger.hold_answer("<b@x>", "alice@example.com", b'{"ticket_id": 1}')
    assert ledger.hold_answer("<c@x>", "alice@example.com", b'{"ticket_id": 2}')
    assert not ledger.hold_answer("<a@x>", "alice@example.com", b"{}")  # answered already
    assert ledger.answers_to("alice@example.com", timedelta(hours=1)) == 1  # digests aside
    held = ledger.held_answers()["alice@example.com"]
    assert [h.message_key for h in held] == ["<b@x>", "<c@x>"]
    assert ledger.outbox_size() == 3

    other = Ledger(tmp_path / "l.sqlite3")  # a second process on the same ledger
    assert other.queue_digest("alice@example.com", b"digest of c", held[1:])
    assert not ledger.queue_digest("alice@example.com", b"digest of b, c", held)  # c is taken
    assert [i.message_key for i in ledger.pending_answers()] == ["<a@x>", "<c@x>"]
    assert ledger.held_answers()["alice@example.com"] == held[:1]  # b still waits

    answer, digest = ledger.pending_answers()
    assert (digest.digest, digest.raw) == (True, b"digest of c")
    ledger.answer_sent(digest)
    ledger.answer_sent(answer)
    assert ledger.outbox_size() == 1 and ledger.last_digest_at("alice@example.com") is not None


def test_the_docs_upgrade_and_backup_samples_show_the_current_schema() -> None:
    """The guides' sample outputs name the schema version this release writes."""
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text() + (root / "docs" / "operations.md").read_text()
    sample = r"ledger\.sqlite3(?:,| to \S+: \d+ messages,) schema version (\d+)(?!;)"
    started = re.findall(sample, readme)
    # run's log, backup's line, check's ledger line (README and operations)
    assert len(started) == 4 and {int(n) for n in started} == {len(MIGRATIONS)}
    assert f"the next run migrates it to {len(MIGRATIONS)}" in readme  # check, an older one
    assert f"schema version {len(MIGRATIONS)} ({MIGRATIONS[-1][0]})" in readme  # the log
    assert f"this one knows up to {len(MIGRATIONS)}" in readme
