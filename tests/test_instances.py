"""Several instances on one mailbox, as separate processes: nobody fails, nothing doubles.

Real processes (not threads: each has its own interpreter, ledger and timing), one
Maildir, the stand-in Halo over HTTP and the SMTP sink. The folder the claims go to
does not exist at the start of each round, so the three race to create it too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from responder.halo.standin import StandinHalo
from responder.mailboxes.maildir import deliver, folder_dir, make_folder
from tests.harness import AUTHSERV, RESPONDER_ADDRESS, gmail_reply
from tests.servers import SmtpSink

REPO = Path(__file__).resolve().parent.parent
ROUNDS, REPLIES, PROCESSES = 20, 150, 3
APPROVERS = 10  # per ticket: 15 tickets of 10 approvers, fewer reads of Halo per round


@pytest.fixture
def racers() -> Iterator[list[subprocess.Popen[str]]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.racer"], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


def config(halo: StandinHalo, sink: SmtpSink, root: Path, state: Path) -> dict[str, Any]:
    return {
        "halo": {"base_url": halo.base_url, "client_id": halo.client_id,
                 "client_secret": halo.client_secret},
        "maildir": {"path": str(root)},
        "smtp": {"host": sink.host, "port": sink.port, "tls": "none", "from": RESPONDER_ADDRESS},
        "state": {"path": str(state)},
        "answers": {"enabled": False},
        "security": {"trusted_authserv_id": AUTHSERV},
    }


@pytest.mark.timeout(900)  # about 25 s on an idle machine; CI runners are not always idle
def test_three_processes_claiming_one_maildir_decide_each_reply_once(
    racers: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    with StandinHalo() as halo, SmtpSink() as sink:
        for round_ in range(ROUNDS):
            root = tmp_path / f"round{round_}" / "Maildir"
            root.parent.mkdir()
            first = 100_000 * (round_ + 1)
            tickets = range(first, first + REPLIES // APPROVERS)
            expected = []
            for ticket_id in tickets:
                people = [f"approver{ticket_id}.{seq}@example.com" for seq in range(APPROVERS)]
                halo.add_ticket(ticket_id, f"Ticket {ticket_id}", [
                    {"emailaddress": who, "seq": seq, "actionnumber": 1}
                    for seq, who in enumerate(people)])
                for seq, who in enumerate(people):
                    deliver(root, gmail_reply(who, ticket_id, "Approve"))
                    expected.append((ticket_id, seq))
            lines = [json.dumps(config(halo, sink, root, root.parent / f"p{n}.sqlite3")) + "\n"
                     for n in range(PROCESSES)]
            for proc, line in zip(racers, lines, strict=True):  # all three at once
                assert proc.stdin is not None
                proc.stdin.write(line)
                proc.stdin.flush()
            reports = []
            for proc in racers:
                assert proc.stdout is not None
                answer = proc.stdout.readline()
                assert answer, f"round {round_}: a process failed: {proc.communicate()[1]}"
                reports += json.loads(answer)

            outcomes = Counter(r["outcome"] for r in reports)
            assert outcomes == {"approved": REPLIES}, f"round {round_}: {outcomes}"
            assert len({r["key"] for r in reports}) == REPLIES
            assert all(halo.approver(t, seq)["result"] == 1 for t, seq in expected)
            done = folder_dir(root, "Approvals/Done")
            assert len(list((done / "cur").iterdir())) == REPLIES
            assert list((root / "new").iterdir()) == list((root / "cur").iterdir()) == []
        assert halo.duplicate_decisions == 0
        assert len(halo.decisions) == ROUNDS * REPLIES
        assert sink.received() == []  # answers are off here: this is about claims


def test_a_half_made_folder_is_completed_not_fatal(tmp_path: Path) -> None:
    """What a crashed (or older) instance leaves: the directory with only some of its parts."""
    root = tmp_path / "Maildir"
    deliver(root, b"Subject: x\r\n\r\nhi\r\n")
    half = folder_dir(root, "Approvals/Processing")
    (half / "cur").mkdir(parents=True)
    assert make_folder(root, half) is False
    assert sorted(p.name for p in half.iterdir()) == ["cur", "maildirfolder", "new", "tmp"]


def test_a_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    """Made under tmp/ and renamed into place: whoever sees the name sees its new/ and cur/."""
    root = tmp_path / "Maildir"
    deliver(root, b"Subject: x\r\n\r\nhi\r\n")
    target = folder_dir(root, "Approvals/Done")
    assert make_folder(root, target) is True
    assert make_folder(root, target) is False  # there already: left alone
    assert sorted(p.name for p in target.iterdir()) == ["cur", "maildirfolder", "new", "tmp"]
    assert list((root / "tmp").iterdir()) == []  # no staging left behind
