"""The SQLite ledger: what was done with every message, so nothing is done twice.

A message moves through recorded states; a crash at any point is resumed from the
last one on the next pass:

    seen -> submitting -> decided -> answered -> filed
            (POST in flight: reconciled by re-reading Halo, never blindly re-posted)

Answers go through an outbox table of their own, sent and retried apart from
decisions. Schema changes are named migrations, applied once, in a transaction.
"""

from __future__ import annotations

import sqlite3
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
]

SEEN, SUBMITTING, DECIDED, ANSWERED, FILED = "seen", "submitting", "decided", "answered", "filed"
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

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> Row:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class OutboxItem:
    id: int
    message_key: str
    recipient: str
    raw: bytes
    attempts: int


class Ledger:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a recorded state survives power loss
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, at TEXT)")
        done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    self.db.execute(statement)
                self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, _now()))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # -- messages ---------------------------------------------------------------

    def find(self, key: str, content_hash: str) -> Row | None:
        """The row for this message, by Message-ID or else by content (a replay)."""
        row = self.db.execute("SELECT * FROM messages WHERE key = ?", (key,)).fetchone()
        if row is None:
            row = self.db.execute(
                "SELECT * FROM messages WHERE content_hash = ? ORDER BY created_at LIMIT 1",
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

    def rows(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every message row as a dict (for audit exports)."""
        query, args = "SELECT * FROM messages ORDER BY created_at", ()
        if since:
            query = "SELECT * FROM messages WHERE created_at >= ? ORDER BY created_at"
            args = (since.isoformat(),)  # type: ignore[assignment]
        for row in self.db.execute(query, args):
            yield dict(row)

    def queue_answer(self, message_key: str, recipient: str, raw: bytes) -> bool:
        """Queue one answer per message (and replay); False when one was queued before."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO outbox (message_key, replay, recipient, raw, created_at) "
            "VALUES (?, COALESCE((SELECT replays FROM messages WHERE key = ?), 0), ?, ?, ?)",
            (message_key, message_key, recipient, raw, _now()),
        )
        return cursor.rowcount == 1

    def answers_to(self, recipient: str, within: timedelta) -> int:
        since = (datetime.now(UTC) - within).isoformat()
        row = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE recipient = ? AND created_at >= ? "
            "AND state != 'dropped'",
            (recipient, since),
        ).fetchone()
        return int(row[0])

    def pending_answers(self, max_attempts: int = 20) -> list[OutboxItem]:
        rows = self.db.execute(
            "SELECT id, message_key, recipient, raw, attempts FROM outbox "
            "WHERE state = 'pending' AND attempts < ? ORDER BY id",
            (max_attempts,),
        )
        return [OutboxItem(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def drop_stale_answers(self, max_attempts: int) -> list[str]:
        """Give up on answers the SMTP server refused too often; returns their messages."""
        rows = self.db.execute(
            "SELECT message_key FROM outbox WHERE state = 'pending' AND attempts >= ?",
            (max_attempts,),
        ).fetchall()
        self.db.execute(
            "UPDATE outbox SET state = 'dropped' WHERE state = 'pending' AND attempts >= ?",
            (max_attempts,),
        )
        return [str(r[0]) for r in rows]

    def answer_sent(self, item_id: int) -> None:
        self.db.execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1 WHERE id = ?",
            (_now(), item_id),
        )

    def answer_failed(self, item_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error[:500], item_id),
        )

    def outbox_size(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
                   .fetchone()[0])
