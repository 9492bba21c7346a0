"""The command line, as a user runs it (every command is also shown in docs/operations.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from responder.commands.cli import _parser, main
from tests.harness import Harness, gmail_reply, outlook_reply

OPERATIONS = Path(__file__).parent.parent / "docs" / "operations.md"


def test_demo_decides_the_seeded_replies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    outcomes = {row["message"]: row["outcome"] for row in rows}
    assert outcomes == {
        "Outlook reply: approve": "approved",
        "Gmail reply: reject with a note": "rejected",
        "iPhone forward: approve on top": "approved",
        "Not an approver": "not-approver",
        "Out-of-office auto-reply": "ignored",
    }
    assert {row["halo_result"] for row in rows if row["outcome"] == "approved"} == {1}


def test_explain_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reply.eml"
    path.write_bytes(outlook_reply("Alice <Alice@Example.com>", 1234, "REJECT - too expensive"))

    assert main(["explain", str(path), "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert {k: data[k] for k in ("sender", "ticket_id", "decision", "note", "forwarded",
                                 "auto_submitted", "reply_text")} == {
        "sender": "alice@example.com", "ticket_id": 1234, "decision": "reject",
        "note": "too expensive", "forwarded": False, "auto_submitted": False,
        "reply_text": "REJECT - too expensive",
    }
    assert data["message_id"].lower().endswith("@example.com>")


def test_explain_with_config_shows_trust_and_the_plan(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    path = tmp_path / "reply.eml"
    path.write_bytes(gmail_reply("alice@example.com", 1234, "Approve"))

    assert main(["explain", str(path), "--json", "--config", str(config), "--online"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["authenticity"]["trusted"] is True
    assert data["plan"]["outcome"] == "submit"
    assert data["plan"]["submission"] == {"ticket_id": 1234, "seq": 1, "actionnumber": 3,
                                          "result": 1}
    assert harness.halo.approver(1234, 1)["result"] is None  # explain never submits


def test_check_reports_each_part(harness: Harness, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    assert main(["check", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {part: v["ok"] for part, v in report.items()} == {
        "config": True, "mailbox": True, "smtp": True, "halo": True, "ledger": True,
        "trust": True}

    harness.halo.client_secret = "rotated-elsewhere"
    assert main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^halo +FAILED", out, re.M)
    assert "demo-secret" not in out


def test_a_broken_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[halo]\nbase_url = "x"\nclient_id = "a"\nclient_secret = "b"\n'
                    '[imap]\nhost = "h"\nport = "nine"\nusername = "u"\npassword = "p"\n'
                    '[smtp]\nhost = "s"\nfrom = "a@b.c"\n')
    assert main(["once", "--config", str(path)]) == 2
    assert "imap.port: expected an integer" in capsys.readouterr().err


def test_once_and_audit(harness: Harness, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve - go"))
    harness.deliver(gmail_reply("alice@example.com", 999, "Approve"))

    assert main(["once", "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(m["outcome"] for m in result["messages"]) == ["approved", "ticket-not-found"]
    assert result["answers_sent"] == 2

    assert main(["audit", "--config", str(config), "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    approved = next(r for r in rows if r["outcome"] == "approved")
    assert (approved["ticket_id"], approved["seq"], approved["note"]) == (1234, 1, "go")
    assert "dmarc=pass" in approved["auth_verdict"]


def test_once_exits_1_when_something_failed(harness: Harness, tmp_path: Path) -> None:
    harness.overrides = {"halo": {"max_retries": 0}}
    config = harness.write_config(tmp_path / "config.toml")
    harness.halo.faults.fail_next(503, times=10)
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    assert main(["once", "--config", str(config)]) == 1


def test_every_command_is_shown_in_the_operations_guide() -> None:
    guide = OPERATIONS.read_text()
    commands = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"responder {name}" in guide, f"docs/operations.md does not show `responder {name}`"


def test_two_mailboxes_in_one_config(harness: Harness, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = Harness(harness.dovecot, harness.halo, harness.sink, harness.state_dir)
    harness.overrides = {"instances": {
        "first": {"imap": {"username": harness.user}},
        "second": {"imap": {"username": other.user,
                            "password": harness.dovecot.users[other.user]}},
    }}
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    other.deliver(gmail_reply("bob@example.com", 1234, "Reject"))

    assert main(["once", "--config", str(config), "--json"]) == 0

    result = json.loads(capsys.readouterr().out)
    assert sorted((m["instance"], m["outcome"]) for m in result["messages"]) == [
        ("first", "approved"), ("second", "rejected")]
    assert main(["check", "--config", str(config), "--instance", "second", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["second"]["mailbox"]["ok"] is True


def test_check_online_ticket_shows_how_the_approvers_are_read_and_posts_nothing(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.halo.behaviour.history = True
    harness.halo.add_ticket(1900, "Two steps and a CAB", [
        {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2, "step_id": 1,
         "result": 1, "dateapproved": "2026-11-28T08:00:00Z"},
        {"emailaddress": "bob@example.com", "seq": 2, "actionnumber": 2, "step_id": 2},
        {"emailaddress": "bob@example.com", "seq": 3, "actionnumber": 2, "step_id": 2,
         "cab_id": 4},
        {"emailaddress": "carol@example.com", "seq": 4, "actionnumber": 2, "step_id": 3},
    ])
    config = harness.write_config(tmp_path / "config.toml")

    assert main(["check", "--config", str(config), "--online", "--ticket", "1900"]) == 0

    out = capsys.readouterr().out
    assert "current step 2" in out
    assert re.search(r"approvers_history: seq 1 .* result 1 .* -> decided", out)
    assert re.search(r"approvers: seq 2 .*bob@example.com step 2 result None .* -> pending", out)
    assert "a reply from alice@example.com: already decided" in out
    assert "a reply from bob@example.com: decides seq 2, 3" in out
    assert "a reply from carol@example.com: decides seq 4" in out
    assert harness.halo.count("POST", "/api/ticketapproval") == 0
    assert main(["check", "--config", str(config), "--online", "--ticket", "999"]) == 1
    assert "ticket 999 was not found" in capsys.readouterr().out
    assert main(["check", "--config", str(config), "--ticket", "1900"]) == 2
