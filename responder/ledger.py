"""The SQLite ledger: what was done with every message, so nothing is done twice.

A message moves through recorded states; a crash at any point is resumed from the
last one on the next pass:

    seen -> submitting -> decided -> answered -> filed
            (POST in flight: reconciled by re-reading Halo, never blindly re-posted)

Answers go through an outbox table of their own, sent and retried apart from
decisions: pending -> sending -> sent, each one marked "sending" just before it goes and
"sent" once the server took it, so a crash leaves at most the one on the wire to send
again. An answer over the person's hourly limit is held there instead, and a digest
(its own table) takes over all of a person's held answers in one transaction: each
answer is sent once, either alone or in exactly one digest. Schema changes are named
migrations, applied once, in a transaction; the number applied is also the file's
``PRAGMA user_version`` (the schema version), so a ledger written by a newer responder
is refused rather than misread. ``backup`` copies
a ledger with SQLite's online backup while the service keeps writing to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_messages_and_outbox",
        """
        CREATE TABLE messages (
            key TEXT PRIMARY KEY,          -- Message-ID, or sha256:<content hash>
            message_id TEXT,
            content_hash TEXT NOT NULL,
            sender TEXT,
            subject TEXT,
            ticket_id INTEGER,
            seq INTEGER,
            actionnumber INTEGER,
            decision TEXT,
            note TEXT,
            state TEXT NOT NULL,
            outcome TEXT,
            reason TEXT,
            auth_verdict TEXT,
            halo_status TEXT,
            mailbox_ref TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX messages_content_hash ON messages (content_hash);
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            message_key TEXT NOT NULL UNIQUE REFERENCES messages (key),
            recipient TEXT NOT NULL,
            raw BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | dropped
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
        """,
    ),
    (
        # responder replay: a replayed message may be answered once more, once per replay
        "0002_replays",
        """
        ALTER TABLE messages ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE outbox_new (
            id INTEGER PRIMARY KEY,
            message_key TEXT NOT NULL REFERENCES messages (key),
            replay INTEGER NOT NULL DEFAULT 0,     -- messages.replays when it was queued
            recipient TEXT NOT NULL,
            raw BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (message_key, replay)
        );
        INSERT INTO outbox_new (id, message_key, recipient, raw, state, attempts, last_error,
                                created_at, sent_at)
            SELECT id, message_key, recipient, raw, state, attempts, last_error, created_at,
                   sent_at FROM outbox;
        DROP TABLE outbox;
        ALTER TABLE outbox_new RENAME TO outbox;
        CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
        """,
    ),
    (
        # one reply may decide several entries of the same person ("seq:actionnumber,...")
        "0003_approver_entries",
        """
        ALTER TABLE messages ADD COLUMN entries TEXT;
        """,
    ),
    (
        # Answers over a person's hourly limit are held and sent together as one digest:
        # outbox rows "held" (raw: the digest entry, JSON) until a digest covers them
        # ("digested", digest_id set in the same transaction that queues the digest).
        "0004_digests",
        """
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            recipient TEXT NOT NULL,
            raw BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | dropped
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX digests_recipient ON digests (recipient, created_at);
        ALTER TABLE outbox ADD COLUMN digest_id INTEGER REFERENCES digests (id);
        CREATE INDEX outbox_held ON outbox (state, recipient);
        """,
    ),
    (
        # what a mailbox adapter must remember across restarts (Graph: the delta link)
        "0005_mailbox_state",
        """
        CREATE TABLE mailbox_state (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    ),
    (
        # the Halo request budget, shared by every process on this ledger
        "0006_halo_budget",
        """
        CREATE TABLE halo_budget (
            tenant TEXT NOT NULL,          -- base_url|tenant: one budget per Halo tenant
            at REAL NOT NULL               -- unix time the request was counted at
        );
        CREATE INDEX halo_budget_tenant_at ON halo_budget (tenant, at);
        """,
    ),
    (
        # the review console (responder/console): what it shows and what admins did there
        "0007_console",
        """
        ALTER TABLE messages ADD COLUMN headers TEXT;       -- the raw header block, bounded
        ALTER TABLE messages ADD COLUMN reply_text TEXT;    -- the new text the responder read
        ALTER TABLE messages ADD COLUMN auth_details TEXT;  -- the results the verdict weighed
        ALTER TABLE messages ADD COLUMN vouched_by TEXT;    -- released: the admin who vouched
        CREATE INDEX messages_created_at ON messages (created_at);
        CREATE TABLE history (
            id INTEGER PRIMARY KEY,
            message_key TEXT NOT NULL,
            at TEXT NOT NULL,
            state TEXT,
            outcome TEXT,
            reason TEXT,
            halo_status TEXT                -- what Halo answered, when it changed
        );
        CREATE INDEX history_message ON history (message_key, id);
        CREATE TABLE admin_actions (
            id INTEGER PRIMARY KEY,
            message_key TEXT NOT NULL,
            action TEXT NOT NULL,           -- release | retry | resend
            who TEXT NOT NULL,
            at TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX admin_actions_message ON admin_actions (message_key, id)
        """,
    ),
    (
        # Each answer (and digest) is marked "sending" just before it goes out and "sent"
        # as soon as the server took it, one at a time: after a crash only the one marked
        # "sending" can have gone out unrecorded, and only that one is sent again.
        # ``sending_pid`` is the process sending it, so another live process on this
        # ledger leaves it alone. (A responder from before this migration would not see
        # a "sending" row at all: the schema version keeps it off this ledger.)
        "0008_answer_sending",
        """
        ALTER TABLE outbox ADD COLUMN sending_at TEXT;
        ALTER TABLE outbox ADD COLUMN sending_pid INTEGER;
        ALTER TABLE digests ADD COLUMN sending_at TEXT;
        ALTER TABLE digests ADD COLUMN sending_pid INTEGER
        """,
    ),
]

log = logging.getLogger("responder.ledger")


class LedgerError(Exception):
    """The ledger cannot be used as it is (newer schema, missing file); says what to do."""


def schema_version() -> int:
    """The schema version this responder writes: the number of migrations it knows."""
    return len(MIGRATIONS)


SEEN, SUBMITTING, DECIDED, ANSWERED, FILED = "seen", "submitting", "decided", "answered", "filed"
# An answer or digest not sent yet: waiting, or on the wire (a crash there resends it).
UNSENT = "('pending', 'sending')"
REPLAY = "replay"  # the outcome of a message put back by ``responder replay``, until its pass


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Row:
    key: str
    state: str
    outcome: str | None
    reason: str | None
    ticket_id: int | None
    seq: int | None
    actionnumber: int | None
    decision: str | None
    note: str | None
    sender: str | None
    attempts: int
    entries: str | None = None
    created_at: str = ""
    vouched_by: str | None = None  # released in the console: processed as authenticated
    content_hash: str = ""  # what the vouch is for: these bytes, not any Message-ID twin

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> Row:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class OutboxItem:
    """One email to send: an answer to one message, or a digest answering several."""

    id: int
    message_key: str  # for a digest: the messages it answers, comma-separated
    recipient: str
    raw: bytes
    attempts: int
    digest: bool = False
    sending_pid: int | None = None  # set: it was being sent by this process (maybe a crash)
    sending_at: str | None = None  # since when (ISO time)


@dataclass(frozen=True)
class Held:
    """An answer waiting for its digest: ``entry`` is what the digest says about it."""

    id: int
    message_key: str
    recipient: str
    entry: bytes


@dataclass(frozen=True)
class AdminAction:
    """One thing an admin did to a message in the console."""

    action: str  # release | retry | resend
    who: str
    at: str
    detail: str


class Ledger:
    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """Open (and create, and migrate) the ledger; ``read_only`` does none of that.

        ``read_only`` is for ``audit``: an admin may read the service's ledger as another
        user (root) and with another release than the service's, so nothing of the file
        may change, whatever its version; a missing ledger is a LedgerError.
        """
        self.path = path
        self._before: set[Path] | None = None  # read_only: files beside it before we came
        self._budget_lock = threading.Lock()  # the budget's calls come from worker threads
        self._closed = False
        if read_only:
            self.db = self._connect_read_only(Path(path))
            return
        if str(path) != ":memory:":
            _create_private(Path(path))
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a recorded state survives power loss
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    @classmethod
    def read_only(cls, path: Path) -> Ledger:
        return cls(path, read_only=True)

    def _connect_read_only(self, path: Path) -> sqlite3.Connection:
        if not path.is_file():
            raise LedgerError(f"no ledger at {path} (state.path): nothing has run with "
                              "this config yet, or state.path points elsewhere")
        self._before = {f for f in _sidecars(path) if f.exists()}
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def close(self) -> None:
        with self._budget_lock:  # not while a budget call runs in a worker thread
            self._closed = True
            self.db.close()
        if self._before is not None:
            path = Path(self.path)
            _give_back(path, [f for f in _sidecars(path) if f.exists() and f not in self._before])

    def _migrate(self) -> None:
        version = self.version()
        if version > schema_version():
            self.db.close()
            raise LedgerError(
                f"{self.path}: schema version {version} was written by a newer responder "
                f"(this one knows up to {schema_version()}): upgrade the responder, or "
                "restore a backup made before the upgrade")
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, at TEXT)")
        done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
        if version == schema_version() and len(done) >= version:
            return
        for number, (name, sql) in enumerate(MIGRATIONS, start=1):
            if name in done:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, _now()))
                self.db.execute(f"PRAGMA user_version = {number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if done:  # a ledger that had data: say what changed, once
                log.info("ledger %s: migrated to schema version %d (%s)", self.path, number, name)
        if self.version() != schema_version():  # every named migration ran before
            self.db.execute(f"PRAGMA user_version = {schema_version()}")

    def version(self) -> int:
        """The schema version recorded in the file (0: new, or from before versions)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    # -- the Halo request budget (HaloClient's, shared across processes) -----------

    def budget_take(self, key: str, limit: int, window: float, now: float) -> float:
        """Count a request at ``now`` if fewer than ``limit`` are in the window (0.0);
        else the seconds until the oldest leaves it. One transaction: no two processes
        take the last slot."""
        with self._budget_lock:
            if self._closed:  # a call finishing after shutdown: nothing left to count
                return 0.0
            return self._budget_take(key, limit, window, now)

    def _budget_take(self, key: str, limit: int, window: float, now: float) -> float:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM halo_budget WHERE tenant = ? AND at <= ?",
                            (key, now - window))
            (count,) = self.db.execute(
                "SELECT COUNT(*) FROM halo_budget WHERE tenant = ?", (key,)
            ).fetchone()
            if count < limit:
                self.db.execute("INSERT INTO halo_budget VALUES (?, ?)", (key, now))
                wait = 0.0
            else:  # until enough of the oldest have left the window
                (frees,) = self.db.execute(
                    "SELECT at FROM halo_budget WHERE tenant = ? ORDER BY at LIMIT 1 OFFSET ?",
                    (key, count - limit),
                ).fetchone()
                wait = max(float(frees) + window - now, 0.001)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return wait

    def budget_settle(self, key: str, stamp: float, now: float) -> None:
        """Move a request's count to ``now`` (its answer came); a negative ``now`` drops it."""
        with self._budget_lock:
            if not self._closed:
                self._budget_settle(key, stamp, now)

    def _budget_settle(self, key: str, stamp: float, now: float) -> None:
        row = self.db.execute(
            "SELECT rowid FROM halo_budget WHERE tenant = ? AND at = ? LIMIT 1", (key, stamp)
        ).fetchone()
        if row is None:
            if now >= 0:
                self.db.execute("INSERT INTO halo_budget VALUES (?, ?)", (key, now))
            return
        if now < 0:
            self.db.execute("DELETE FROM halo_budget WHERE rowid = ?", (row[0],))
        else:
            self.db.execute("UPDATE halo_budget SET at = ? WHERE rowid = ?", (now, row[0]))

    # -- messages ---------------------------------------------------------------

    def find(self, key: str, content_hash: str) -> Row | None:
        """The row for this message, by Message-ID, or else the latest with its content."""
        row = self.db.execute("SELECT * FROM messages WHERE key = ?", (key,)).fetchone()
        if row is None:
            row = self.db.execute(
                "SELECT * FROM messages WHERE content_hash = ? ORDER BY created_at DESC LIMIT 1",
                (content_hash,),
            ).fetchone()
        return Row.from_sql(row) if row else None

    def record(self, key: str, **fields: Any) -> None:
        """Update a message's row with the given columns, inserting it the first time."""
        fields["updated_at"] = _now()
        updates = ", ".join(f"{c} = ?" for c in fields)
        cursor = self.db.execute(
            f"UPDATE messages SET {updates} WHERE key = ?",
            (*fields.values(), key),
        )
        if cursor.rowcount == 0:
            columns = ", ".join(fields)
            self.db.execute(
                f"INSERT INTO messages (key, created_at, {columns}) "
                f"VALUES (?, ?, {', '.join('?' * len(fields))})",
                (key, fields["updated_at"], *fields.values()),
            )
        self._remember(key, fields)

    def _remember(self, key: str, fields: dict[str, Any]) -> None:
        """Append to the message's history when its state, plan or Halo's answer changed."""
        kept = ("state", "outcome", "reason", "halo_status")
        if not any(fields.get(column) for column in kept):
            return
        row = self.db.execute(
            "SELECT state, outcome, reason, halo_status FROM messages WHERE key = ?", (key,)
        ).fetchone()
        last = self.db.execute(
            "SELECT state, outcome, reason, halo_status FROM history WHERE message_key = ? "
            "ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if last is None or tuple(last) != tuple(row):
            self.db.execute(
                "INSERT INTO history (message_key, at, state, outcome, reason, halo_status) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, fields["updated_at"], *row),
            )

    def by_message_id(self, message_id: str) -> Row | None:
        """The row of a Message-ID, given with or without its angle brackets."""
        bare = message_id.strip().removeprefix("<").removesuffix(">")
        row = self.db.execute(
            "SELECT * FROM messages WHERE key IN (?, ?) OR message_id IN (?, ?) "
            "ORDER BY created_at LIMIT 1",
            (f"<{bare}>", bare, f"<{bare}>", bare),
        ).fetchone()
        return Row.from_sql(row) if row else None

    def mark_replay(self, key: str) -> None:
        """Let the next pass treat a filed message as new; its evidence columns stay."""
        self.db.execute(
            "UPDATE messages SET state = ?, outcome = ?, replays = replays + 1, "
            "reason = 'replay of ' || COALESCE(outcome, '?') || ': ' || COALESCE(reason, ''), "
            "updated_at = ? WHERE key = ?",
            (SEEN, REPLAY, _now(), key),
        )
        self._remember(key, {"updated_at": _now(), "state": SEEN})

    def rows(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every message row as a dict (for audit exports), with the admins' actions on it.

        The raw header block stays out (it is for the console); ``admin_actions`` is one
        line per action: "<when> <who> <action>: <detail>".
        """
        query, args = "SELECT * FROM messages ORDER BY created_at", ()
        if since:
            query = "SELECT * FROM messages WHERE created_at >= ? ORDER BY created_at"
            args = (since.isoformat(),)  # type: ignore[assignment]
        console = self.db.execute(  # an older ledger, read as it is, has no such table
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'admin_actions'"
        ).fetchone() is not None
        for row in self.db.execute(query, args):
            found = dict(row)
            found.pop("headers", None)
            actions = self.actions(row["key"]) if console else []
            found["admin_actions"] = "\n".join(
                f"{a.at} {a.who} {a.action}: {a.detail}" for a in actions
            )
            yield found

    # -- the console's admin actions ---------------------------------------------

    def record_action(self, message_key: str, action: str, who: str, detail: str) -> None:
        self.db.execute(
            "INSERT INTO admin_actions (message_key, action, who, at, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            (message_key, action, who, _now(), detail[:1000]),
        )

    def actions(self, message_key: str) -> list[AdminAction]:
        rows = self.db.execute(
            "SELECT action, who, at, detail FROM admin_actions WHERE message_key = ? "
            "ORDER BY id",
            (message_key,),
        )
        return [AdminAction(r[0], r[1], r[2], r[3] or "") for r in rows]

    def vouch(self, key: str, who: str | None) -> None:
        """An admin vouches for the sender (the next pass takes it as authenticated)."""
        self.db.execute("UPDATE messages SET vouched_by = ? WHERE key = ?", (who, key))

    def queue_answer(self, message_key: str, recipient: str, raw: bytes) -> bool:
        """Queue one answer per message (and replay); False when one was queued before."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO outbox (message_key, replay, recipient, raw, created_at) "
            "VALUES (?, COALESCE((SELECT replays FROM messages WHERE key = ?), 0), ?, ?, ?)",
            (message_key, message_key, recipient, raw, _now()),
        )
        return cursor.rowcount == 1

    def hold_answer(self, message_key: str, recipient: str, entry: bytes) -> bool:
        """Hold a message's answer for a digest; False when it was queued or held before."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO outbox (message_key, replay, recipient, raw, state, "
            "created_at) VALUES (?, COALESCE((SELECT replays FROM messages WHERE key = ?), 0), "
            "?, ?, 'held', ?)",
            (message_key, message_key, recipient, entry, _now()),
        )
        return cursor.rowcount == 1

    def answers_to(self, recipient: str, within: timedelta) -> int:
        """Answers sent (or on their way) to ``recipient`` one by one, not in a digest."""
        since = (datetime.now(UTC) - within).isoformat()
        row = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE recipient = ? AND created_at >= ? "
            "AND state IN ('pending', 'sending', 'sent')",
            (recipient, since),
        ).fetchone()
        return int(row[0])

    def held_answers(self) -> dict[str, list[Held]]:
        """Answers waiting for a digest, by recipient, oldest first."""
        held: dict[str, list[Held]] = {}
        for r in self.db.execute(
            "SELECT id, message_key, recipient, raw FROM outbox WHERE state = 'held' ORDER BY id"
        ):
            held.setdefault(r[2], []).append(Held(r[0], r[1], r[2], bytes(r[3])))
        return held

    def last_digest_at(self, recipient: str) -> datetime | None:
        row = self.db.execute(
            "SELECT MAX(created_at) FROM digests WHERE recipient = ?", (recipient,)
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row[0] else None

    def digest_unsent(self, recipient: str) -> bool:
        """A digest to ``recipient`` still waits for the SMTP server (a newer one waits too)."""
        row = self.db.execute(
            f"SELECT 1 FROM digests WHERE recipient = ? AND state IN {UNSENT} "
            "LIMIT 1",
            (recipient,),
        ).fetchone()
        return row is not None

    def queue_digest(self, recipient: str, raw: bytes, covers: list[Held]) -> bool:
        """Queue one digest covering ``covers``, as one unit: all of them or nothing.

        False (and nothing queued) when one of them is no longer held: another process
        on this ledger bundled it first.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            digest_id = self.db.execute(
                "INSERT INTO digests (recipient, raw, created_at) VALUES (?, ?, ?)",
                (recipient, raw, _now()),
            ).lastrowid
            ids = [h.id for h in covers]
            marks = ", ".join("?" * len(ids))
            taken = self.db.execute(
                f"UPDATE outbox SET state = 'digested', digest_id = ? "
                f"WHERE state = 'held' AND id IN ({marks})",
                (digest_id, *ids),
            ).rowcount
            if taken != len(ids):
                self.db.execute("ROLLBACK")
                return False
            self.db.execute("COMMIT")
            return True
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def pending_answers(self, max_attempts: int = 20) -> list[OutboxItem]:
        """Answers first, then digests (which are made after the answers of their pass).

        Those marked "sending" are included, with the process that was sending them: the
        caller sends one again only when that process is gone (a crash mid-send).
        """
        rows = self.db.execute(
            "SELECT id, message_key, recipient, raw, attempts, sending_pid, sending_at "
            f"FROM outbox WHERE state IN {UNSENT} AND attempts < ? ORDER BY id",
            (max_attempts,),
        )
        answers = [OutboxItem(r[0], r[1], r[2], bytes(r[3]), r[4], sending_pid=r[5],
                              sending_at=r[6]) for r in rows]
        digests = self.db.execute(
            "SELECT d.id, GROUP_CONCAT(o.message_key, ','), d.recipient, d.raw, d.attempts, "
            "d.sending_pid, d.sending_at FROM digests d LEFT JOIN outbox o "
            f"ON o.digest_id = d.id WHERE d.state IN {UNSENT} AND d.attempts < ? "
            "GROUP BY d.id ORDER BY d.id",
            (max_attempts,),
        )
        return answers + [OutboxItem(r[0], r[1] or "", r[2], bytes(r[3]), r[4], digest=True,
                                     sending_pid=r[5], sending_at=r[6]) for r in digests]

    def answer_sending(self, item: OutboxItem, pid: int) -> bool:
        """Mark one answer "sending" by ``pid``, just before it goes out; False when it is
        no longer as ``item`` found it (another process on this ledger took it)."""
        cursor = self.db.execute(
            f"UPDATE {_table(item)} SET state = 'sending', sending_at = ?, sending_pid = ? "
            "WHERE id = ? AND state = ? AND sending_pid IS ?",
            (_now(), pid, item.id, "pending" if item.sending_pid is None else "sending",
             item.sending_pid),
        )
        return cursor.rowcount == 1

    def drop_stale_answers(self, max_attempts: int) -> list[str]:
        """Give up on answers the SMTP server refused too often; returns their messages."""
        dropped: list[str] = []
        for table in ("outbox", "digests"):
            what = ("message_key" if table == "outbox" else
                    "(SELECT GROUP_CONCAT(message_key, ',') FROM outbox WHERE digest_id = d.id)")
            rows = self.db.execute(
                f"SELECT {what} FROM {table} d WHERE state IN {UNSENT} "
                "AND attempts >= ?",
                (max_attempts,),
            ).fetchall()
            self.db.execute(
                f"UPDATE {table} SET state = 'dropped' WHERE state IN {UNSENT} "
                "AND attempts >= ?",
                (max_attempts,),
            )
            dropped += [str(r[0]) for r in rows]
        return dropped

    def answer_sent(self, item: OutboxItem) -> None:
        self.db.execute(
            f"UPDATE {_table(item)} SET state = 'sent', sent_at = ?, attempts = attempts + 1 "
            "WHERE id = ?",
            (_now(), item.id),
        )

    def answer_unsent(self, item: OutboxItem) -> None:
        """Marked "sending" but not tried after all (no connection): pending again, no
        attempt counted."""
        self.db.execute(
            f"UPDATE {_table(item)} SET state = 'pending', sending_pid = NULL "
            "WHERE id = ? AND state = 'sending'",
            (item.id,),
        )

    def answer_failed(self, item: OutboxItem, error: str) -> None:
        """The server refused it (or the connection broke on it): pending again."""
        self.db.execute(
            f"UPDATE {_table(item)} SET state = 'pending', sending_pid = NULL, "
            f"attempts = attempts + 1, last_error = ? WHERE id = ? AND state IN {UNSENT}",
            (error[:500], item.id),
        )

    def mailbox_state(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM mailbox_state WHERE name = ?",
                              (name,)).fetchone()
        return str(row[0]) if row else None

    def keep_state(self, name: str, value: str) -> str:
        """The value stored under ``name``, storing ``value`` there first if there is none
        (one winner when two processes on this ledger store at once)."""
        self.db.execute(
            "INSERT OR IGNORE INTO mailbox_state (name, value, updated_at) VALUES (?, ?, ?)",
            (name, value, _now()),
        )
        return self.mailbox_state(name) or value

    def set_mailbox_state(self, name: str, value: str | None) -> None:
        """Remember (or, with None, forget) one value of the mailbox adapter's."""
        if value is None:
            self.db.execute("DELETE FROM mailbox_state WHERE name = ?", (name,))
            return
        self.db.execute(
            "INSERT INTO mailbox_state (name, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (name, value, _now()),
        )

    def outbox_size(self) -> int:
        """Answers not sent yet: queued, held for a digest, or in a digest not sent yet."""
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending', "
            "'held')) + (SELECT COUNT(*) FROM outbox o JOIN digests d ON o.digest_id = d.id "
            f"WHERE d.state IN {UNSENT})"
        ).fetchone()
        return int(row[0])


def _table(item: OutboxItem) -> str:
    return "digests" if item.digest else "outbox"


def backup(source: Path, target: Path) -> tuple[int, int]:
    """Copy the ledger at ``source`` to ``target``, consistently, while it is in use.

    SQLite's online backup copies every page in one step, from one snapshot: in WAL
    mode the service's writes carry on meanwhile and are simply not in it. The copy is
    written beside ``target`` and renamed into place, so ``target`` is never a
    half-written file; it is a single file (no WAL), readable by its owner only (mode
    0600 whatever the umask: it holds people's addresses and words).
    Returns the copy's schema version and number of messages.
    """
    if not source.is_file():
        raise LedgerError(f"no ledger at {source} (state.path): nothing to back up")
    if target.exists() and target.resolve() == source.resolve():
        raise LedgerError(f"{target} is the ledger itself: back it up to another file")
    partial = target.with_name(f".{target.name}.partial")
    sidecars = _sidecars(source)
    existed = {f for f in sidecars if f.exists()}
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        _owner_only(partial)
        dst = sqlite3.connect(str(partial))
        try:
            src.backup(dst)  # one step: a WAL snapshot, writers carry on meanwhile
            dst.execute("PRAGMA journal_mode=DELETE")
            problem = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if problem != "ok":
                raise LedgerError(f"the copy of {source} is not sound: {problem}")
            version = int(dst.execute("PRAGMA user_version").fetchone()[0])
            has_messages = dst.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone()
            count = (int(dst.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
                     if has_messages else 0)
        finally:
            dst.close()
        os.replace(partial, target)
    finally:
        src.close()
        partial.unlink(missing_ok=True)
        _give_back(source, [f for f in sidecars if f.exists() and f not in existed])
    return version, count


def _owner_only(path: Path) -> None:
    """An empty file at ``path`` (replacing one there) with mode 0600, which SQLite then
    fills; its journal takes the same mode."""
    path.unlink(missing_ok=True)
    _private_file(path)


def _create_private(path: Path) -> None:
    """A new ledger (and its folder) readable by its owner only, whatever the umask:
    outside systemd (UMask=0077) a shell's 022 would leave every decision world-readable.
    SQLite gives the ``-wal`` and ``-shm`` files it adds the ledger's own mode."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another process made it meanwhile
        _private_file(path)


def _private_file(path: Path) -> None:
    """A new empty file with mode 0600, set rather than left to the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _sidecars(ledger: Path) -> list[Path]:
    return [ledger.with_name(ledger.name + end) for end in ("-wal", "-shm")]


def _give_back(ledger: Path, created: list[Path]) -> None:
    """Files SQLite created beside the ledger for our read belong to the ledger's owner.

    Run as root, a read of a WAL ledger can leave root-owned ``-wal``/``-shm`` files
    that the service (its own user) could then not write.
    """
    if os.geteuid() != 0:
        return
    owner = ledger.stat()
    for path in created:
        os.chown(path, owner.st_uid, owner.st_gid)
