"""``responder replay``: a filed message, its cause fixed, run again; never decided twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from responder.commands.cli import main
from responder.config import MaildirSettings
from responder.mailboxes.imap import ImapMailbox
from responder.mailboxes.maildir import MaildirMailbox, deliver
from tests.harness import Harness, _toml_table, gmail_reply

MSGID = "<replay-1.77@example.com>"


def replay(config: Path, message_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["replay", message_id, "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_ticket_added_later_is_approved_on_replay_and_only_once(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1400, "Approve - go", msgid=MSGID))
    assert main(["once", "--config", str(config), "--json"]) == 0
    [first] = json.loads(capsys.readouterr().out)["messages"]
    assert first["outcome"] == "ticket-not-found"
    assert len(harness.folder("Approvals/Unmatched")) == 1
    harness.halo.add_ticket(
        1400, "Late ticket", [{"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2}]
    )

    code, out = replay(config, MSGID.strip("<>"), capsys)  # the <> are optional

    assert code == 0
    assert (out["status"], out["outcome"], out["folder"]) == (
        "replayed",
        "approved",
        "Approvals/Unmatched",
    )
    assert harness.halo.approver(1400, 1)["result"] == 1
    assert len(harness.posts()) == 1
    assert harness.folder("Approvals/Unmatched") == harness.folder("INBOX") == []
    assert len(harness.folder("Approvals/Done")) == 1
    answers = harness.answers()
    assert len(answers) == 2  # "ticket not found", then "approved"
    assert all(a["In-Reply-To"] == MSGID for a in answers)
    [row] = harness.ledger_rows()
    assert (row["state"], row["outcome"], row["replays"]) == ("filed", "approved", 1)
    assert row["note"] == "go" and "dmarc=pass" in row["auth_verdict"]  # evidence kept

    # Replaying it again (or an approved message at all) does nothing: Halo has it.
    code, out = replay(config, MSGID, capsys)
    assert code == 0 and out["status"] == "decided"
    assert "nothing to do" in out["detail"]
    assert len(harness.posts()) == 1 and len(harness.answers()) == 2
    assert len(harness.folder("Approvals/Done")) == 1 and harness.folder("INBOX") == []


def test_a_replay_whose_cause_is_not_fixed_files_it_again(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve", msgid=MSGID, auth="fail"))
    assert main(["once", "--config", str(config)]) == 0
    capsys.readouterr()
    assert len(harness.folder("Approvals/Quarantine")) == 1

    code, out = replay(config, MSGID, capsys)

    assert code == 0 and (out["status"], out["outcome"]) == ("replayed", "quarantined")
    assert len(harness.folder("Approvals/Quarantine")) == 1 and harness.folder("INBOX") == []
    assert harness.answers() == [] and harness.posts() == []  # still no backscatter


def test_replaying_an_unknown_message_id_exits_1(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    code, out = replay(config, "<nobody@nowhere.example>", capsys)
    assert code == 1 and out["status"] == "unknown"
    assert "no message <nobody@nowhere.example> in the ledger" in out["detail"]
    assert main(["replay", "nobody@nowhere.example", "--config", str(config)]) == 1
    assert "no message" in capsys.readouterr().out


def test_a_message_moved_away_by_hand_is_reported_and_left_as_it_was(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1400, "Approve", msgid=MSGID))
    assert main(["once", "--config", str(config)]) == 0
    client = harness.dovecot.connect(harness.user)
    client.select_folder("Approvals/Unmatched")
    client.delete_messages(client.search("ALL"))
    client.expunge()
    client.logout()
    capsys.readouterr()

    code, out = replay(config, MSGID, capsys)

    assert code == 1 and out["status"] == "not-found"
    [row] = harness.ledger_rows()
    assert (row["state"], row["outcome"]) == ("filed", "ticket-not-found")


async def test_imap_restore_finds_the_message_by_id_and_drops_claims(harness: Harness) -> None:
    other = gmail_reply("bob@example.com", 1234, "Approve", msgid="<replay-1.77@example.co>")
    harness.deliver(other, "Approvals/Failed")
    harness.deliver(
        gmail_reply("alice@example.com", 1234, "Approve", msgid=MSGID), "Approvals/Failed"
    )
    client = harness.dovecot.connect(harness.user)
    client.select_folder("Approvals/Failed")
    client.add_flags(client.search("ALL"), [b"$Responder_someone"])
    client.logout()
    box = ImapMailbox(harness.settings.imap)  # type: ignore[arg-type]
    await box.open()
    try:
        assert not await box.restore(MSGID, "Approvals/Done")  # no such folder
        assert not await box.restore("<replay-1.77@example>", "Approvals/Failed")  # a prefix
        assert await box.restore(MSGID, "Approvals/Failed")
        [back] = await box.fetch_new()
    finally:
        await box.close()
    assert b"Message-ID: " + MSGID.encode() in back.raw
    assert harness.folder("Approvals/Failed") == [other]
    client = harness.dovecot.connect(harness.user)
    client.select_folder("INBOX")
    assert [
        f for f in client.get_flags([int(back.ref)])[int(back.ref)] if f.startswith(b"$Responder")
    ] == []
    client.logout()


async def test_maildir_restore_finds_the_message_by_id(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    box = MaildirMailbox(MaildirSettings(path=root, poll_seconds=0.1))
    await box.open()
    key = deliver(root, gmail_reply("alice@example.com", 1400, "Approve", msgid=MSGID))
    await box.move(key, "Approvals/Unmatched")
    assert not await box.restore("<other@example.com>", "Approvals/Unmatched")
    assert not await box.restore(MSGID, "Approvals/Done")  # no such folder
    assert await box.restore(MSGID, "Approvals/Unmatched")
    assert [m.ref for m in await box.fetch_new()] == [key]
    assert list((root / ".Approvals.Unmatched" / "new").iterdir()) == []


def test_a_whole_replay_on_a_maildir(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "Maildir"
    deliver(root, gmail_reply("alice@example.com", 1400, "Approve", msgid=MSGID))
    data = harness.config()
    del data["imap"]
    data["maildir"] = {"path": str(root), "poll_seconds": 0.1}
    config = tmp_path / "maildir.toml"
    config.write_text("\n".join(line for s, v in data.items() for line in _toml_table(s, v)))
    config.chmod(0o600)
    assert main(["once", "--config", str(config)]) == 0
    capsys.readouterr()
    assert len(list((root / ".Approvals.Unmatched" / "cur").iterdir())) == 1
    harness.halo.add_ticket(
        1400, "Late ticket", [{"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2}]
    )

    code, out = replay(config, MSGID, capsys)

    assert code == 0 and (out["status"], out["outcome"]) == ("replayed", "approved")
    assert len(list((root / ".Approvals.Done" / "cur").iterdir())) == 1
    assert list((root / ".Approvals.Unmatched" / "cur").iterdir()) == []
    assert len(harness.posts()) == 1 and len(harness.answers()) == 2
