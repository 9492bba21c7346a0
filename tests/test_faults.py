"""Nothing lost, nothing doubled: crashes, outages and a second instance, for real.

Real Dovecot, the real SMTP sink, the stand-in Halo over HTTP with injected faults, and
``responder`` itself as a subprocess where a crash (``kill -9``) or a signal is the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from responder.config import ImapSettings, MaildirSettings
from responder.halo.standin import StandinHalo
from responder.ledger import Ledger
from responder.mailboxes.imap import CLAIM_PREFIX, ImapMailbox
from responder.mailboxes.maildir import MaildirMailbox, deliver
from responder.service import responder
from responder.worker import Responder
from tests.harness import Harness, gmail_reply
from tests.servers import Dovecot

REPO = Path(__file__).resolve().parent.parent


def approved(halo: StandinHalo, ticket_id: int = 1234, seq: int = 1) -> bool:
    return halo.approver(ticket_id, seq)["result"] is not None


def wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.02)


@contextlib.contextmanager
def cli_process(command: str, config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``responder COMMAND`` in a process group of its own, killed (-9) if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "responder", command, "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def run_cli(command: str, config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "responder", command, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )


def decisions_for(halo: StandinHalo, ticket_id: int, seq: int) -> int:
    return sum(1 for d in halo.decisions if (d["ticket_id"], d["seq"]) == (ticket_id, seq))


# -- exactly-once decisions across a crash --------------------------------------------------


@pytest.mark.parametrize("where", ["after_apply", "before_apply"])
def test_kill_9_around_the_post_neither_doubles_nor_loses_the_decision(
    harness: Harness, tmp_path: Path, where: str
) -> None:
    """Killed while the POST is in flight: the next run re-reads Halo and posts only if needed."""
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    if where == "after_apply":
        harness.halo.faults.delay_after_apply = 30.0  # applied in Halo, reply held back
    else:
        harness.halo.faults.delay_before_apply = 30.0  # held back before Halo applies it
    with cli_process("once", config):  # killed -9 on the way out, the POST in flight
        if where == "after_apply":
            wait_for(lambda: approved(harness.halo), 20, "the POST applied")
        else:
            wait_for(
                lambda: any(r["state"] == "submitting" for r in harness.ledger_rows()),
                20,
                "submitting",
            )
            time.sleep(0.3)  # the POST is on its way
    [row] = harness.ledger_rows()
    assert row["state"] == "submitting"  # the crash came between the POST and the ledger
    harness.halo.faults.clear()

    second = run_cli("once", config)

    assert second.returncode == 0, second.stdout.decode()
    assert approved(harness.halo)
    assert decisions_for(harness.halo, 1234, 1) == 1
    assert harness.halo.duplicate_decisions == 0
    assert len(harness.answers()) == 1
    assert len(harness.folder("Approvals/Done")) == 1
    assert harness.folder("INBOX") == []
    [row] = harness.ledger_rows()
    assert (row["state"], row["outcome"]) == ("filed", "approved")
    assert run_cli("once", config).returncode == 0  # and a third run does nothing more
    assert len(harness.answers()) == 1
    assert harness.halo.duplicate_decisions == 0


async def test_a_post_that_timed_out_after_halo_applied_it_is_not_sent_again(
    harness: Harness,
) -> None:
    harness.overrides = {"halo": {"timeout": 0.5, "max_retries": 1}}
    harness.halo.faults.delay_after_apply = 1.5
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    first = await harness.once()

    assert [r.outcome for r in first.reports] == ["pending"]
    assert approved(harness.halo) and harness.answers() == []
    harness.halo.faults.clear()
    second = await harness.once()
    assert [r.outcome for r in second.reports] == ["approved"]
    assert decisions_for(harness.halo, 1234, 1) == 1
    assert len(harness.answers()) == 1


# -- exactly-once answers ------------------------------------------------------------------


async def test_an_smtp_outage_delays_answers_without_blocking_decisions(harness: Harness) -> None:
    harness.sink.refuse_next(10)
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject - not now"))

    first = await harness.once()

    assert sorted(r.outcome for r in first.reports) == ["approved", "rejected"]
    assert (first.answers_sent, first.answers_failed) == (0, 2)
    assert approved(harness.halo, 1234, 1) and approved(harness.halo, 1234, 2)
    assert len(harness.folder("Approvals/Done")) == 2  # filed: the work is recorded
    assert harness.answers() == []
    harness.sink._refusals.clear()
    second = await harness.once()
    assert second.answers_sent == 2
    third = await harness.once()
    assert third.answers_sent == 0
    assert sorted(str(a["To"]) for a in harness.answers()) == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert len(harness.posts()) == 1


def answer_states(harness: Harness) -> list[str]:
    ledger = Ledger(harness.settings.state.path)
    try:
        return [r[0] for r in ledger.db.execute("SELECT state FROM outbox ORDER BY id")]
    finally:
        ledger.close()


def test_kill_9_while_the_third_answer_of_a_session_is_on_the_wire_doubles_only_it(
    harness: Harness, tmp_path: Path
) -> None:
    """Three answers over one SMTP session; killed with the third kept by the server but
    its "250" not read: the first two were recorded sent one by one, the third is marked
    "sending", and only the third goes again (it may have gone: at least once)."""
    for ticket_id in (2001, 2002, 2003):
        harness.halo.add_ticket(ticket_id, "Change", [
            {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 1}])
        harness.deliver(gmail_reply("alice@example.com", ticket_id, "Approve",
                                    msgid=f"<wire{ticket_id}@example.com>"))
    harness.sink.delay, harness.sink.delay_from = 30.0, 3  # the third's "250" held back
    config = harness.write_config(tmp_path / "config.toml")
    with cli_process("once", config):
        wait_for(lambda: len(harness.sink.received()) == 3, 30, "three answers kept")
        time.sleep(0.3)  # whatever the responder would do before the "250": it did
    assert answer_states(harness) == ["sent", "sent", "sending"]
    harness.sink.delay = 0.0

    again = run_cli("once", config)

    assert again.returncode == 0, again.stdout.decode()
    replied = Counter(str(a["In-Reply-To"]) for a in harness.answers())
    assert replied == {"<wire2001@example.com>": 1, "<wire2002@example.com>": 1,
                       "<wire2003@example.com>": 2}
    assert answer_states(harness) == ["sent", "sent", "sent"]
    assert b"was being sent when the responder stopped" in again.stderr + again.stdout
    assert run_cli("once", config).returncode == 0 and len(harness.answers()) == 4


async def test_an_answer_another_live_process_is_sending_is_left_to_it(
    harness: Harness,
) -> None:
    """Two processes on one ledger (``run`` and an admin's ``once``): an answer marked
    "sending" by a process still alive is not sent by the other, unless it has been
    "sending" longer than any send takes (its pid is someone else's now)."""
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.sink.refuse_next(1)
    await harness.once()  # decided; the answer refused once: queued
    assert answer_states(harness) == ["pending"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ledger = Ledger(harness.settings.state.path)
        try:
            [item] = ledger.pending_answers()
            assert ledger.answer_sending(item, sleeper.pid)
        finally:
            ledger.close()

        await harness.once()

        assert harness.answers() == [] and answer_states(harness) == ["sending"]
        ledger = Ledger(harness.settings.state.path)
        try:
            ledger.db.execute("UPDATE outbox SET sending_at = '2026-01-01T00:00:00+00:00'")
        finally:
            ledger.close()
        await harness.once()
        assert len(harness.answers()) == 1 and answer_states(harness) == ["sent"]
    finally:
        sleeper.kill()
        sleeper.wait()


# -- Halo faults: pending, never failed, nobody told; decided later -----------------------


async def pending_then_decided(harness: Harness) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    first = await harness.once()
    assert [r.outcome for r in first.reports] == ["pending"], first.reports
    assert harness.answers() == []
    assert len(harness.folder("INBOX")) == 1
    assert harness.folder("Approvals/Failed") == []
    harness.halo.faults.clear()
    second = await harness.once()
    assert [r.outcome for r in second.reports] == ["approved"], second.reports
    assert decisions_for(harness.halo, 1234, 1) == 1
    assert harness.halo.duplicate_decisions == 0
    assert len(harness.answers()) == 1


async def test_halo_5xx_on_every_read(harness: Harness) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.fail_next(503, times=50, path_prefix="/api/tickets")
    await pending_then_decided(harness)


async def test_halo_5xx_on_the_post(harness: Harness) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.fail_next(500, times=1, path_prefix="/api/ticketapproval")
    await pending_then_decided(harness)


async def test_halo_timeouts(harness: Harness) -> None:
    harness.overrides = {"halo": {"timeout": 0.3, "max_retries": 1}}
    harness.halo.faults.latency = 1.0
    await pending_then_decided(harness)


async def test_halo_refusing_connections(harness: Harness) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    settings, port = harness.settings, harness.halo.port
    harness.halo.stop()
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    async with responder(settings) as worker:
        first = await worker.run_once()
    assert [r.outcome for r in first.reports] == ["pending"]
    assert harness.answers() == []
    harness.halo._port = port  # back on the same address
    harness.halo.start()
    async with responder(settings) as worker:
        second = await worker.run_once()
    assert [r.outcome for r in second.reports] == ["approved"]
    assert len(harness.answers()) == 1


async def test_halo_429_without_retry_after(harness: Harness) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.rate_limit(0, window=60)
    await pending_then_decided(harness)


async def test_halo_429_with_retry_after_is_honoured(harness: Harness) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.rate_limit(0, window=60, retry_after=1.0)
    started = time.monotonic()
    await pending_then_decided(harness)
    limited = [r.at for r in harness.halo.requests if r.status == 429]
    assert len(limited) >= 2 and limited[1] - limited[0] >= 0.9
    assert time.monotonic() - started < 30


async def test_a_token_expired_between_passes_is_renewed(harness: Harness) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    async with responder(harness.settings) as worker:
        assert [r.outcome for r in (await worker.run_once()).reports] == ["approved"]
        harness.halo.faults.expire_tokens()
        harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))
        assert [r.outcome for r in (await worker.run_once()).reports] == ["rejected"]
    assert any(r.status == 401 for r in harness.halo.requests)
    assert len(harness.answers()) == 2


# -- two instances on one mailbox ------------------------------------------------------------


@pytest.fixture
def many_tickets(harness: Harness) -> list[int]:
    ids = list(range(5000, 5030))
    for ticket_id in ids:
        harness.halo.add_ticket(
            ticket_id,
            f"Ticket {ticket_id}",
            [{"emailaddress": f"approver{ticket_id}@example.com", "seq": 1, "actionnumber": 2}],
        )
    return ids


async def test_two_instances_racing_on_one_mailbox_act_once_per_message(
    harness: Harness, many_tickets: list[int], tmp_path: Path
) -> None:
    for ticket_id in many_tickets:
        harness.deliver(gmail_reply(f"approver{ticket_id}@example.com", ticket_id, "Approve"))
    first = harness.settings
    second = first.model_copy(
        update={"state": first.state.model_copy(update={"path": tmp_path / "second.sqlite3"})}
    )

    async with responder(first) as a, responder(second) as b:
        results = []
        for _ in range(3):  # several rounds of racing passes
            results += await asyncio.gather(a.run_once(), b.run_once())
        assert a.owner != b.owner  # one per ledger

    decided = [r.key for res in results for r in res.reports if r.outcome == "approved"]
    assert len(decided) == len(set(decided)) == len(many_tickets)
    assert len(harness.halo.decisions) == len(many_tickets)
    assert harness.halo.duplicate_decisions == 0
    answers = [str(m["In-Reply-To"]) for m in harness.answers()]
    assert len(answers) == len(set(answers)) == len(many_tickets)
    assert len(harness.folder("Approvals/Done")) == len(many_tickets)
    assert harness.folder("INBOX") == []


@pytest.fixture(scope="module")
def storing_dovecot() -> Iterator[Dovecot]:
    """Dovecot not offering CONDSTORE: every claim's STORE succeeds, as two conditional
    STOREs released together sometimes both do on a Dovecot that offers it (2.3.19)."""
    with Dovecot(hide=("CONDSTORE",)) as server:
        yield server


async def test_two_claims_stored_at_once_leave_each_message_to_one_instance(
    storing_dovecot: Dovecot,
) -> None:
    user = "racing"
    storing_dovecot.add_user(user, "secret")
    for i in range(10):
        storing_dovecot.append(user, "INBOX", gmail_reply(f"a{i}@example.com", 5000 + i, "Approve"))
    settings = ImapSettings(host=storing_dovecot.host, port=storing_dovecot.port, tls="none",
                            username=user, password="secret")
    boxes = {owner: ImapMailbox(settings) for owner in ("one", "two")}
    both_looked = threading.Barrier(2, timeout=10)
    racing = [True]
    for box in boxes.values():  # each stores its claims only once both have seen them free
        store = box._store_if_unchanged

        def stored_together(client: object, uids: list[int], modseq: dict[int, int], op: str,
                            flags: str, store: Callable[..., list[int]] = store) -> list[int]:
            if racing[0] and uids and flags.startswith(CLAIM_PREFIX):
                both_looked.wait()
            return store(client, uids, modseq, op, flags)

        box._store_if_unchanged = stored_together  # type: ignore[method-assign]
    try:
        for box in boxes.values():
            await box.open()
        one, two = await asyncio.gather(*(box.claim_new(o, 600) for o, box in boxes.items()))
        assert {i.ref for i in one}.isdisjoint({i.ref for i in two})  # both stored all ten
        racing[0] = False  # the next passes: one at a time, as usual
        for _ in range(2):
            held = {o: {i.ref for i in await box.claim_new(o, 600)} for o, box in boxes.items()}
    finally:
        for box in boxes.values():
            await box.close()
    assert held["one"].isdisjoint(held["two"])
    assert sorted(held["one"] | held["two"], key=int) == [str(u) for u in range(1, 11)]


async def test_a_crashed_holders_claim_is_taken_over_after_the_timeout(harness: Harness) -> None:
    harness.overrides = {"service": {"claim_timeout_seconds": 1.0}}
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    async with responder(harness.settings) as crashed:
        held = await crashed.mailbox.claim_new("crashed-host", 1.0)
        assert len(held) == 1  # ... and then it dies without filing it

    async with responder(harness.settings) as survivor:
        assert (await survivor.run_once()).reports == []  # someone else's: the clock starts
        await asyncio.sleep(1.2)  # ... and its claim is not renewed
        result = await survivor.run_once()
    assert [r.outcome for r in result.reports] == ["approved"]
    assert len(harness.answers()) == 1
    assert harness.halo.duplicate_decisions == 0


async def test_a_restart_under_another_host_name_holds_its_claims_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container recreated after a kill -9 comes back under a new host name. The
    messages the killed run had claimed are still this ledger's own, not another
    instance's to wait out for ``claim_timeout_seconds`` (10 minutes by default)."""
    harness.overrides = {"halo": {"max_retries": 0}}
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.halo.faults.fail_next(503, times=5, path_prefix="/api/tickets")
    monkeypatch.setattr(socket, "gethostname", lambda: "responder-7f9c4-abcde")
    first = await harness.once()  # claimed, Halo down: pending, still claimed ... killed
    assert [r.outcome for r in first.reports] == ["pending"]
    assert len(harness.folder("INBOX")) == 1
    harness.halo.faults.clear()
    monkeypatch.setattr(socket, "gethostname", lambda: "responder-7f9c4-zxqwv")

    second = await harness.once()

    assert [r.outcome for r in second.reports] == ["approved"]
    assert approved(harness.halo) and len(harness.answers()) == 1
    assert harness.folder("INBOX") == []


async def test_a_live_holder_keeps_its_pending_claim(harness: Harness, tmp_path: Path) -> None:
    """A holder waiting out a Halo outage renews its claim: nobody takes it over."""
    harness.overrides = {"service": {"claim_timeout_seconds": 0.5}, "halo": {"max_retries": 0}}
    harness.halo.faults.fail_next(503, times=1000, path_prefix="/api/tickets")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    first = harness.settings
    second = first.model_copy(
        update={"state": first.state.model_copy(update={"path": tmp_path / "second.sqlite3"})}
    )
    async with responder(first) as holder, responder(second) as other:
        assert [r.outcome for r in (await holder.run_once()).reports] == ["pending"]
        for _ in range(4):
            assert (await other.run_once()).reports == []
            await asyncio.sleep(0.3)
            assert [r.outcome for r in (await holder.run_once()).reports] == ["pending"]


def test_maildir_claims_have_one_winner_and_expire(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    keys = [deliver(root, f"Subject: {i}\r\n\r\nhi\r\n".encode()) for i in range(200)]
    boxes = [MaildirMailbox(MaildirSettings(path=root)) for _ in range(3)]
    got: dict[int, list[str]] = {}

    def claim(index: int) -> None:
        got[index] = [i.ref for i in asyncio.run(boxes[index].claim_new(f"b{index}", 60))]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [ref for refs in got.values() for ref in refs]
    assert sorted(won) == sorted(keys)  # every message once, to exactly one of them

    async def later() -> None:
        for index, box in enumerate(boxes):  # each keeps its own, and only those
            assert sorted(i.ref for i in await box.claim_new(f"b{index}", 60)) == sorted(got[index])
        lonely = MaildirMailbox(MaildirSettings(path=root))
        taken = await lonely.claim_new("newcomer", 0.0)  # everything is "stale" at once
        assert sorted(i.ref for i in taken) == sorted(keys)
        await lonely.move(taken[0].ref, "Approvals/Done")
        assert [p.name.split(":")[0] for p in (root / ".Approvals.Done" / "cur").iterdir()] == [
            taken[0].ref
        ]

    asyncio.run(later())


# -- the mailbox going away, and signals ---------------------------------------------------


@pytest.fixture(scope="module")
def own_dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


@pytest.fixture
def restartable(own_dovecot: Dovecot, halo: StandinHalo, harness: Harness) -> Iterator[Harness]:
    with tempfile.TemporaryDirectory(prefix="responder-test-") as state:
        yield Harness(own_dovecot, halo, harness.sink, Path(state))


@pytest.fixture
async def serving(restartable: Harness) -> AsyncIterator[Responder]:
    stop = asyncio.Event()
    async with responder(restartable.settings) as worker:
        task = asyncio.create_task(worker.run(stop, retry_seconds=1.0))
        yield worker
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_run_survives_an_imap_server_restart(
    restartable: Harness, serving: Responder
) -> None:
    await asyncio.to_thread(restartable.deliver, gmail_reply("alice@example.com", 1234, "Approve"))
    await asyncio.to_thread(wait_for, lambda: approved(restartable.halo, 1234, 1), 10, "first")
    await asyncio.to_thread(restartable.dovecot.restart)
    await asyncio.to_thread(restartable.deliver, gmail_reply("bob@example.com", 1234, "Reject"))
    await asyncio.to_thread(wait_for, lambda: approved(restartable.halo, 1234, 2), 30, "second")
    await asyncio.to_thread(wait_for, lambda: len(restartable.answers()) == 2, 10, "answers")
    assert restartable.halo.duplicate_decisions == 0


def test_sigterm_finishes_the_message_in_hand(harness: Harness, tmp_path: Path) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    harness.halo.faults.delay_after_apply = 2.0
    with cli_process("run", config) as proc:
        harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
        wait_for(lambda: approved(harness.halo), 20, "the POST applied")
        proc.send_signal(signal.SIGTERM)  # mid-pass: Halo has not answered yet
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    [row] = harness.ledger_rows()
    assert (row["state"], row["outcome"]) == ("filed", "approved")
    assert len(harness.answers()) == 1
    assert len(harness.folder("Approvals/Done")) == 1


def test_sighup_reloads_the_config(harness: Harness, tmp_path: Path) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    with cli_process("run", config) as proc:
        # serving (signal handlers set) once it has opened its ledger: SIGHUP before that
        # would end the process the default way, whatever the machine's load
        wait_for(lambda: harness.settings.state.path.exists(), 20, "the service started")
        time.sleep(1.0)
        harness.overrides = {"folders": {"done": "Approvals/Reloaded"}}
        harness.write_config(config)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
        wait_for(lambda: len(harness.folder("Approvals/Reloaded")) == 1, 20, "filed anew")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert b"config reloaded" in out


async def test_a_uidvalidity_change_between_passes_loses_and_doubles_nothing(
    harness: Harness,
) -> None:
    """The mailbox is renumbered under a live connection (restore from backup, migration)."""
    from responder.service import responder

    harness.halo.faults.fail_next(503, times=20)
    harness.overrides = {"halo": {"max_retries": 0}}
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    async with responder(harness.settings) as worker:
        first = await worker.run_once()
        assert [r.outcome for r in first.reports] == ["pending"]
        subprocess.run(
            ["doveadm", "-c", str(harness.dovecot.config_path), "mailbox", "update",
             "-u", harness.user, "--uid-validity", "4242", "INBOX"],
            check=True, capture_output=True,
        )
        probe = harness.dovecot.connect(harness.user)
        assert probe.select_folder("INBOX")[b"UIDVALIDITY"] == 4242
        probe.logout()
        harness.halo.faults.clear()
        harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))
        second = await worker.run_once()

    assert sorted(r.outcome for r in second.reports) == ["approved", "rejected"]
    assert harness.halo.count("POST", "/api/ticketapproval") == 1
    assert harness.halo.duplicate_decisions == 0
    assert harness.folder("INBOX") == [] and len(harness.folder("Approvals/Done")) == 2
    assert len(harness.answers()) == 2
