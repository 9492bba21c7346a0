"""Chaos stress loop: rounds of replies through ``responder run`` killed with ``kill -9``.

A real Dovecot, the SMTP sink and the stand-in Halo (tests/servers.py, responder/halo/standin.py),
started once; ``responder run`` as a subprocess. Each round, with a fresh mailbox and
ledger, gives ``--replies`` tickets to approvers (``--per-approver`` each: more than the
hourly answer limit of 10, so most answers go out in digests spaced ``--digest-seconds``),
answers a quarter of Halo's requests with 500s (``--halo-error-rate``), delivers the
replies and kills the responder ``--kills`` times at random points during its passes --
some with a decision POST held in flight, some with an answer kept by the SMTP server
but its "250" not yet read -- restarting it each time, half the time under a new host
name (``--new-host``), as a recreated container. ``--more-faults`` adds Halo slower than
its timeout, SMTP refusals and Dovecot restarts between the kills.

After the last restart it waits at most ``--wait-seconds`` and prints, per round:
replies decided in Halo, still in the inbox, unanswered; "doubled": answers sent again
(the same email twice; a digest counts as one, whatever it covers); "twice": replies
answered by two different emails; then a summary line. A crash may double at most the
one answer on the wire, so a round passes with everything decided, filed and answered
once, no decision posted twice and at most one doubled answer per kill. ``--scale``
multiplies every duration (digest spacing, retry, feed time, wait): at 0.5 a round takes
25-50 s.

    python scripts/chaos.py [--rounds 20] [--scale 0.5] [--seed 1] [--more-faults]
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from responder.answers.digest import DIGEST  # noqa: E402
from responder.halo.standin import BEHAVIOURS, StandinHalo  # noqa: E402
from responder.reading.message import RESPONDER_HEADER  # noqa: E402
from tests.harness import Harness, gmail_reply  # noqa: E402
from tests.servers import Dovecot, SmtpSink  # noqa: E402

FIRST_TICKET = 10_000


class Service:
    """``responder run`` as a subprocess that can be killed and started again."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, hostname: str | None = None) -> None:
        """Start it; with ``hostname``, under that host name (in a UTS namespace of its
        own), as a container recreated after a crash comes back under a new one."""
        command = [sys.executable, "-m", "responder", "run", "--config", str(self.config)]
        if hostname is not None:
            command = ["unshare", "--uts", "sh", "-c", f'hostname {hostname} && exec "$@"',
                       "sh", *command]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
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
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


@dataclass
class Servers:
    dovecot: Dovecot
    sink: SmtpSink
    halo: StandinHalo


@dataclass
class RoundResult:
    number: int
    replies: int
    decided: int
    inbox: int
    unanswered: int
    doubled: int  # answers (a digest counts as one) sent again after a crash
    twice: int  # replies answered by two different emails (never: one answer each)
    kills: int
    answers: int
    digests: int
    duplicate_posts: int
    halo_requests: int
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return (self.decided == self.replies and not self.inbox and not self.unanswered
                and self.doubled <= self.kills and not self.twice
                and not self.duplicate_posts)

    def line(self) -> str:
        return (f"{self.number:>5} {self.decided:>4}/{self.replies:<4} {self.inbox:>5} "
                f"{self.unanswered:>10} {self.doubled:>7} {self.twice:>5} {self.kills:>5} "
                f"{self.answers:>7} "
                f"{self.digests:>7} {self.halo_requests:>6} {self.seconds:>6.1f}  "
                f"{'ok' if self.ok else 'FAIL'}")


HEADER = ("round  decided  inbox  unanswered  doubled twice  kills  answers digests   halo"
          "   secs")


@dataclass
class Answered:
    """What the SMTP server received for one round."""

    replies: Counter[str]  # each reply: by how many different emails it was answered
    resent: int  # emails received more than once (the same answer or digest sent again)
    answers: int  # different answers, alone
    digests: int  # different digests


def answered(servers: Servers, number: int) -> Answered:
    """A resent email is the same message again (its Message-ID); a digest counts as one."""
    mails = [email.message_from_bytes(m.content) for m in servers.sink.received()
             if any(to.startswith(f"round{number}-") for to in m.rcpt_tos)]
    copies = Counter(str(m["Message-ID"]) for m in mails)
    unique = list({str(m["Message-ID"]): m for m in mails}.values())
    digests = [m for m in unique if m[RESPONDER_HEADER] == DIGEST]
    alone = [m for m in unique if m[RESPONDER_HEADER] != DIGEST]
    replies = Counter(str(m["In-Reply-To"]) for m in alone)
    for digest in digests:
        replies.update(str(digest["References"]).split())
    return Answered(replies, sum(n - 1 for n in copies.values()), len(alone), len(digests))


def another_fault(servers: Servers, rng: random.Random, error_rate: float) -> None:
    """One of the other faults (``--more-faults``), for a second or three."""
    what = rng.choice(["halo-slow", "smtp", "imap-restart", "calm"])
    if what == "halo-slow":
        servers.halo.faults.latency = 2.5  # past the client's timeout: maybe-applied POSTs
    elif what == "smtp":
        servers.sink.refuse_next(rng.randint(3, 20))
    elif what == "imap-restart":
        servers.dovecot.restart()
    time.sleep(rng.uniform(1.0, 3.0))
    servers.halo.faults.latency = 0.0
    servers.halo.faults.error_rate = error_rate


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def can_rename_host() -> bool:
    """Whether a process can be given a host name of its own here (root, ``unshare``)."""
    try:
        done = subprocess.run(["unshare", "--uts", "hostname", "chaos-probe"],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def kill_during_a_pass(servers: Servers, service: Service, rng: random.Random,
                       scale: float, new_host: float) -> str:
    """``kill -9`` now, or with a decision POST or an answer's "250" held in flight."""
    how = rng.choice(["plain", "post in flight", "answer in flight"])
    if how == "post in flight":  # killed with Halo changed and the ledger not yet
        servers.halo.faults.delay_after_apply = 3.0
        posts = servers.halo.count("POST", "/api/ticketapproval")
        wait_until(lambda: servers.halo.count("POST", "/api/ticketapproval") > posts, 10.0)
        time.sleep(rng.uniform(0.0, 1.0))
    elif how == "answer in flight":  # a slow server: killed after a few went, or the first
        servers.sink.delay = rng.uniform(0.05, 0.5)
        sent = len(servers.sink.received())
        wait_until(lambda: len(servers.sink.received()) > sent, 10.0)
        time.sleep(rng.uniform(0.0, 1.5))
    service.kill()
    servers.halo.faults.delay_after_apply = 0.0
    servers.sink.delay = 0.0
    time.sleep(rng.uniform(0.0, 0.5 * scale))
    if rng.random() < new_host:  # back as a recreated container: another host name
        service.start(hostname=f"chaos-{rng.randrange(16**8):08x}")
        return how + ", new host"
    service.start()
    return how


def run_round(servers: Servers, number: int, args: argparse.Namespace,
              rng: random.Random, tmp: Path) -> RoundResult:
    started = time.monotonic()
    scale = args.scale
    first = FIRST_TICKET + number * 1000
    tickets = list(range(first, first + args.replies))
    per = max(args.per_approver, 1)

    def approver(ticket_id: int) -> str:
        return f"round{number}-approver{(ticket_id - first) // per}@example.com"

    halo, dovecot = servers.halo, servers.dovecot
    for ticket_id in tickets:
        halo.add_ticket(ticket_id, f"Chaos {ticket_id}",
                        [{"emailaddress": approver(ticket_id), "seq": 1, "actionnumber": 1}])
    state = tmp / f"round{number}"
    state.mkdir()
    harness = Harness(dovecot, halo, servers.sink, state)
    harness.overrides = {
        "halo": {"timeout": 2.0, "max_retries": 1},
        "service": {"retry_seconds": args.retry_seconds * scale,
                    "claim_timeout_seconds": args.claim_timeout_seconds},
        "imap": {"timeout": 5.0},
        "security": {"digest_minutes": args.digest_seconds * scale / 60},
    }
    config = harness.write_config(state / "config.toml")
    service = Service(config, state / "responder.log")
    halo.faults.error_rate = args.halo_error_rate

    def feed() -> None:
        for ticket_id in tickets:
            word = rng.choice(["Approve", "Reject - not now", "approved, thanks"])
            raw = gmail_reply(approver(ticket_id), ticket_id, word,
                              msgid=f"<chaos{ticket_id}@example.com>")
            for _ in range(40):  # Dovecot may be restarting (--more-faults)
                try:
                    harness.deliver(raw)
                    break
                except Exception:
                    time.sleep(0.25)
            time.sleep(args.feed_seconds * scale / len(tickets))

    try:
        return watch_round(servers, number, args, rng, harness, service, tickets, feed, started)
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.kill()  # interrupted: no responder left behind


def watch_round(servers: Servers, number: int, args: argparse.Namespace,
                rng: random.Random, harness: Harness, service: Service, tickets: list[int],
                feed: Callable[[], None], started: float) -> RoundResult:
    """Feed the replies, kill and restart, then wait and count."""
    halo, scale = servers.halo, args.scale
    feed_seconds = args.feed_seconds * scale
    duplicates_before = halo.duplicate_decisions
    requests_before = len(halo.requests)
    service.start()
    fed = threading.Event()

    def feeding() -> None:
        feed()
        fed.set()

    threading.Thread(target=feeding, daemon=True).start()
    # Kills while replies arrive and while the digests go out after them.
    span = feed_seconds + 2 * args.digest_seconds * scale
    for at in sorted(rng.uniform(0.5, span) for _ in range(args.kills)):
        while args.more_faults and at - (time.monotonic() - started) > 1.0:
            another_fault(servers, rng, args.halo_error_rate)
        time.sleep(max(at - (time.monotonic() - started), 0))
        kill_during_a_pass(servers, service, rng, scale, args.new_host)
    fed.wait()
    restarted = time.monotonic()  # the last restart and the last reply are behind us

    def decided() -> int:
        return sum(halo.approver(t, 1)["result"] is not None for t in tickets)

    expected = {f"<chaos{t}@example.com>" for t in tickets}
    while time.monotonic() - restarted < args.wait_seconds * scale:
        if (decided() == len(tickets) and not harness.folder("INBOX")
                and expected <= set(answered(servers, number).replies)):
            break
        time.sleep(0.5)
    time.sleep(min(2.0, scale * 5))  # an answer sent twice would arrive now
    service.stop()
    halo.faults.clear()
    servers.sink._refusals.clear()
    got = answered(servers, number)
    return RoundResult(
        number=number,
        replies=len(tickets),
        decided=decided(),
        inbox=len(harness.folder("INBOX")),
        unanswered=len(expected - set(got.replies)),
        doubled=got.resent,
        twice=sum(n - 1 for n in got.replies.values() if n > 1),
        kills=service.kills,
        answers=got.answers,
        digests=got.digests,
        duplicate_posts=halo.duplicate_decisions - duplicates_before,
        halo_requests=len(halo.requests) - requests_before,
        seconds=time.monotonic() - started,
        log=service.log,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--replies", type=int, default=40, help="replies per round")
    parser.add_argument("--per-approver", type=int, default=40,
                        help="replies per approver (the hourly answer limit is 10)")
    parser.add_argument("--more-faults", action="store_true",
                        help="between the kills, also slow Halo past its timeout, SMTP "
                             "refusals and Dovecot restarts")
    parser.add_argument("--kills", type=int, default=4, help="kill -9 and restart, per round")
    parser.add_argument("--halo-error-rate", type=float, default=0.25,
                        help="share of Halo requests answered 500")
    parser.add_argument("--digest-seconds", type=float, default=15.0,
                        help="[security] digest_minutes, in seconds (before --scale)")
    parser.add_argument("--retry-seconds", type=float, default=5.0,
                        help="[service] retry_seconds (before --scale)")
    parser.add_argument("--claim-timeout-seconds", type=float, default=600.0,
                        help="[service] claim_timeout_seconds (not scaled)")
    parser.add_argument("--feed-seconds", type=float, default=30.0,
                        help="how long the replies take to arrive (before --scale)")
    parser.add_argument("--wait-seconds", type=float, default=150.0,
                        help="the fixed wait after the last restart (before --scale)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every duration above: 0.2 for rounds of ~15 s")
    parser.add_argument("--new-host", type=float, default=0.5,
                        help="share of restarts under a new host name, as a recreated "
                             "container (needs root and unshare; else 0)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--halo-behaviour", choices=sorted(BEHAVIOURS), default="default",
                        help="how the stand-in Halo acts where real Halo is unconfirmed")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy each failed round's responder log into this folder")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    if args.new_host > 0 and not can_rename_host():
        print("note: cannot give a process its own host name here (root and unshare "
              "needed): every restart keeps this host's name", flush=True)
        args.new_host = 0.0
    results: list[RoundResult] = []
    with (
        Dovecot() as dovecot,
        SmtpSink() as sink,
        StandinHalo(seed=args.seed, behaviour=args.halo_behaviour) as halo,
        tempfile.TemporaryDirectory(prefix="chaos-") as tmp,
    ):
        servers = Servers(dovecot, sink, halo)
        print(HEADER, flush=True)
        for number in range(1, args.rounds + 1):
            result = run_round(servers, number, args, rng, Path(tmp))
            results.append(result)
            print(result.line(), flush=True)
            if not result.ok and args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                kept = args.keep_logs / f"round{number}.log"
                kept.write_bytes(result.log.read_bytes())
    failed = [r.number for r in results if not r.ok]
    print(
        f"summary: {len(results)} rounds, {len(results) - len(failed)} ok; "
        f"decided {sum(r.decided for r in results)}/{sum(r.replies for r in results)}, "
        f"left in the inbox {sum(r.inbox for r in results)}, "
        f"unanswered {sum(r.unanswered for r in results)}, "
        f"doubled {sum(r.doubled for r in results)} in {sum(r.kills for r in results)} kills "
        f"(worst round {max((r.doubled for r in results), default=0)}), "
        f"replies answered by two different emails {sum(r.twice for r in results)}, "
        f"duplicate POSTs {sum(r.duplicate_posts for r in results)}"
        + (f"; failed rounds: {', '.join(map(str, failed))}" if failed else ""),
        flush=True,
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
