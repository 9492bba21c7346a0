"""Chaos run: hundreds of replies through ``responder run`` while everything breaks.

A real Dovecot, the SMTP sink and the stand-in Halo (tests/servers.py, responder/standin.py);
``responder run`` as a subprocess. While the replies arrive it injects Halo errors and
slow answers, SMTP refusals, Dovecot restarts and ``kill -9`` of the responder (often
while a decision POST is in flight), restarting it each time. Each approver answers
``--per-approver`` tickets, more than the hourly answer limit, so answers and digests
mix. At the end it prints what was lost or doubled; the goal is 0 and 0.

    python scripts/chaos.py [--replies 300] [--per-approver 20] [--seed 1] [--kills 5]
"""

from __future__ import annotations

import argparse
import email
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from responder.digest import DIGEST  # noqa: E402
from responder.message import RESPONDER_HEADER  # noqa: E402
from responder.standin import BEHAVIOURS, StandinHalo  # noqa: E402
from tests.harness import Harness, gmail_reply  # noqa: E402
from tests.servers import Dovecot, SmtpSink  # noqa: E402

FIRST_TICKET = 10_000


class Service:
    """``responder run`` as a subprocess that can be killed and started again."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "responder.cli", "run", "--config", str(self.config)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--halo-behaviour", choices=sorted(BEHAVIOURS), default="default",
                        help="how the stand-in Halo acts where real Halo is unconfirmed")
    parser.add_argument("--kills", type=int, default=5, help="kill -9 / restart cycles")
    parser.add_argument("--per-approver", type=int, default=20,
                        help="tickets per approver (the hourly answer limit is 10)")
    parser.add_argument("--digest-minutes", type=float, default=0.1,
                        help="[security] digest_minutes (short, so digests flow in the run)")
    parser.add_argument("--feed-seconds", type=float, default=60.0)
    parser.add_argument("--settle-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.monotonic()

    with (
        Dovecot() as dovecot,
        SmtpSink() as sink,
        StandinHalo(seed=args.seed, behaviour=args.halo_behaviour) as halo,
        tempfile.TemporaryDirectory(prefix="chaos-") as tmp,
    ):
        tickets = list(range(FIRST_TICKET, FIRST_TICKET + args.replies))
        per = max(args.per_approver, 1)

        def approver(ticket_id: int) -> str:
            return f"approver{(ticket_id - FIRST_TICKET) // per}@example.com"

        for ticket_id in tickets:
            halo.add_ticket(
                ticket_id,
                f"Chaos {ticket_id}",
                [{"emailaddress": approver(ticket_id), "seq": 1, "actionnumber": 1}],
            )
        harness = Harness(dovecot, halo, sink, Path(tmp))
        harness.overrides = {
            "halo": {"timeout": 2.0, "max_retries": 1},
            "service": {"retry_seconds": 1.0},
            "imap": {"timeout": 5.0},
            "security": {"digest_minutes": args.digest_minutes},
        }
        config = harness.write_config(Path(tmp) / "config.toml")
        service = Service(config, Path(tmp) / "responder.log")
        service.start()

        sent: list[int] = []

        def answered() -> tuple[Counter[str], int, int]:
            """How often each reply is answered (alone or in a digest); answers, digests."""
            mails = [email.message_from_bytes(m.content) for m in sink.received()]
            digests = [m for m in mails if m[RESPONDER_HEADER] == DIGEST]
            alone = [m for m in mails if m[RESPONDER_HEADER] != DIGEST]
            count = Counter(str(m["In-Reply-To"]) for m in alone)
            for digest in digests:
                count.update(str(digest["References"]).split())
            return count, len(alone), len(digests)
        feeding = threading.Event()

        def feed() -> None:
            pause = args.feed_seconds / max(args.replies, 1)
            for ticket_id in tickets:
                word = rng.choice(["Approve", "Reject - not now", "approved, thanks"])
                raw = gmail_reply(approver(ticket_id), ticket_id, word,
                                  msgid=f"<chaos{ticket_id}@example.com>")
                for _ in range(20):  # Dovecot may be restarting
                    try:
                        harness.deliver(raw)
                        break
                    except Exception:
                        time.sleep(0.5)
                sent.append(ticket_id)
                time.sleep(pause)
            feeding.set()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        faults = Counter[str]()
        kill_at = sorted(rng.uniform(5, args.feed_seconds) for _ in range(args.kills))
        while not feeding.is_set():
            time.sleep(rng.uniform(1.0, 3.0))
            if kill_at and time.monotonic() - started >= kill_at[0]:
                kill_at.pop(0)
                halo.faults.delay_after_apply = 3.0  # catch it with a POST in flight
                time.sleep(rng.uniform(0.5, 2.0))
                service.kill()
                halo.faults.delay_after_apply = 0.0
                faults["kill -9 + restart"] += 1
                service.start()
                continue
            what = rng.choice(["halo-errors", "halo-slow", "smtp", "imap-restart", "calm"])
            faults[what] += 1
            if what == "halo-errors":
                halo.faults.error_rate = 0.3
            elif what == "halo-slow":
                halo.faults.latency = 2.5  # past the client's timeout: maybe-applied POSTs
            elif what == "smtp":
                sink.refuse_next(rng.randint(3, 20))
            elif what == "imap-restart":
                dovecot.restart()
            else:
                halo.faults.clear()
            if what != "calm" and rng.random() < 0.5:
                time.sleep(rng.uniform(1.0, 3.0))
                halo.faults.clear()
        halo.faults.clear()
        sink._refusals.clear()

        def decided() -> int:
            return sum(halo.approver(t, 1)["result"] is not None for t in tickets)

        deadline = time.monotonic() + args.settle_seconds
        while time.monotonic() < deadline:
            if (
                decided() == len(sent)
                and sum(answered()[0].values()) >= len(sent)
                and not harness.folder("INBOX")
            ):
                break
            time.sleep(1.0)
        time.sleep(2.0)  # let a last pass finish
        code = service.stop()

        coverage, answers, digests = answered()
        expected = {f"<chaos{t}@example.com>" for t in sent}
        figures = {
            "replies sent": len(sent),
            "approvers": len({approver(t) for t in sent}),
            "decisions expected": len(sent),
            "decisions recorded": decided(),
            "decisions lost": len(sent) - decided(),
            "duplicate POSTs": halo.duplicate_decisions,
            "answers sent": answers,
            "digests sent": digests,
            "replies in a digest": sum(coverage.values()) - answers,
            "replies unanswered": len(expected - set(coverage)),
            "replies answered twice": sum(n - 1 for n in coverage.values() if n > 1),
            "messages left unfiled": len(harness.folder("INBOX")),
            "kill -9 cycles": service.kills,
            "faults injected": dict(faults),
            "exit code of the last run": code,
            "seconds": round(time.monotonic() - started),
        }
    for name, value in figures.items():
        print(f"{name:28} {value}")
    bad = (
        figures["decisions lost"],
        figures["duplicate POSTs"],
        figures["replies unanswered"],
        figures["replies answered twice"],
        figures["messages left unfiled"],
    )
    return 0 if not any(bad) else 1


if __name__ == "__main__":
    sys.exit(main())
