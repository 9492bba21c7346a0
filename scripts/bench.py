"""Benchmark the responder against a real Dovecot, a real SMTP server and the stand-in Halo.

    python scripts/bench.py [--latency 0.1] [--backlog 40] [--push-samples 10]
                            [--attachments 30] [--attachment-mb 2] [--naive-poll 5] [--quick]
    python scripts/bench.py --graph [--backlog 40] [--graph-samples 6]
                            [--attachments 30] [--graph-attachment-mb 20] [--quick]
    python scripts/bench.py --drain 1000 [--drain-scale 10] [--latency 0.1]

Runs the same scenarios twice, in the shipped configuration ("tuned": IMAP IDLE, every
decision of a pass in one POST, the POST's answer as confirmation) and in a naive one
(polling every --naive-poll seconds, one POST per decision, a re-read after each), and
prints one table side by side, with the command that produced it:

- push latency: ``Responder.run(stop)`` waits in the background; replies are APPENDed one
  at a time over another IMAP connection; timed from just before the APPEND to the POST's
  arrival at the stand-in Halo (which adds --latency seconds to every call);
- a backlog of --backlog replies (one ticket each) handled by one pass: Halo calls per
  decision (token requests excluded), 429s, wall time;
- peak RSS of a child process running one pass over --attachments replies carrying an
  --attachment-mb MB attachment each, next to the RSS of the same process idle;
- CPU time of ``responder.reading.message.analyse`` per message over the shared corpus.

``--graph`` prints the Microsoft Graph figures instead (``scripts/bench_graph.py``):
arrival-to-decision latency at the default 10 s poll, Graph calls per decision, peak RSS
with 20 MB attachments.

``--drain N`` measures only the backlog drain: N replies (one ticket each) waiting when
``responder run`` starts, the shipped budget (300 requests per 300 s) with the stand-in
Halo enforcing the same limit (429 beyond it). Every time constant (the window, the pass
deadline, batch_seconds) is divided by --drain-scale so that the run takes minutes, not
a quarter of an hour; the request counts per window are unchanged. It prints decisions
per window in the steady state against the ideal (one read per ticket plus a share of a
batched POST: limit / (1 + 1/batch_size)), the whole drain against its ideal time, and
the seconds from start to the first decision.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from responder.config import parse_settings  # noqa: E402
from responder.halo.standin import StandinHalo  # noqa: E402
from responder.reading.message import analyse  # noqa: E402
from responder.service import responder  # noqa: E402
from tests.harness import Harness, gmail_reply, reply  # noqa: E402
from tests.servers import Dovecot, SmtpSink  # noqa: E402

MODES = {
    "tuned": {"imap": {"idle": True}, "halo": {"batch_decisions": True, "confirm": "response"}},
    "naive": {"imap": {"idle": False}, "halo": {"batch_decisions": False, "confirm": "reread"}},
}
QUICK = {"backlog": 8, "push_samples": 3, "attachments": 5, "attachment_mb": 1, "naive_poll": 2}
DEFAULTS = {
    "backlog": 40,
    "push_samples": 10,
    "attachments": 30,
    "attachment_mb": 2,
    "naive_poll": 5.0,
}


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the mail and the tickets ---------------------------------------------------------------


def approver(n: int) -> str:
    return f"approver{n}@example.com"


def add_tickets(halo: StandinHalo, first: int, count: int) -> list[int]:
    ids = list(range(first, first + count))
    for ticket_id in ids:
        halo.add_ticket(
            ticket_id,
            f"Bench ticket {ticket_id}",
            [
                {"emailaddress": approver(ticket_id), "seq": 1, "actionnumber": 1},
            ],
        )
    return ids


def with_attachment(ticket_id: int, size: int, rng: random.Random) -> bytes:
    """A Gmail-style approval with a ``size``-byte binary attachment (base64 on the wire)."""
    blob = base64.encodebytes(rng.randbytes(size)).decode()
    body = (
        "--bench-boundary\n"
        'Content-Type: text/plain; charset="utf-8"\n\n'
        "Approve\n\nOn Sat, 28 Nov 2026 at 08:55, Service Desk wrote:\n> Please approve.\n"
        "--bench-boundary\n"
        'Content-Type: application/octet-stream; name="quote.bin"\n'
        'Content-Disposition: attachment; filename="quote.bin"\n'
        "Content-Transfer-Encoding: base64\n\n"
        f"{blob}"
        "--bench-boundary--\n"
    )
    return reply(
        approver(ticket_id),
        f"Re: Approval required [ID:{ticket_id}]",
        body,
        content_type='multipart/mixed; boundary="bench-boundary"',
    )


def posts_for(halo: StandinHalo) -> dict[int, float]:
    """ticket id -> arrival time of the first successful POST deciding it."""
    seen: dict[int, float] = {}
    for r in list(halo.requests):
        if r.matches("POST", "/api/ticketapproval") and r.status == 200:
            for entry in r.body or []:
                seen.setdefault(int(entry["ticket_id"]), r.at)
    return seen


@dataclass
class Calls:
    gets: int = 0
    posts: int = 0
    tokens: int = 0
    other: int = 0
    throttled: int = 0  # 429 answers

    @classmethod
    def of(cls, halo: StandinHalo) -> Calls:
        calls = cls()
        for r in list(halo.requests):
            calls.throttled += r.status == 429
            if r.path.lower().endswith("/token"):
                calls.tokens += 1
            elif r.method == "GET" and r.path.lower().startswith("/api/tickets/"):
                calls.gets += 1
            elif r.matches("POST", "/api/ticketapproval"):
                calls.posts += 1
            else:
                calls.other += 1
        return calls

    @property
    def api(self) -> int:
        return self.gets + self.posts + self.other


@dataclass
class Backlog:
    calls: Calls = field(default_factory=Calls)
    decided: int = 0
    seconds: float = 0.0


@dataclass
class Drain:
    replies: int
    decided: int
    window: float  # seconds (scaled)
    limit: int
    batch_size: int
    calls: Calls
    first: float  # seconds from start to the first decision
    took: float  # seconds from the first Halo request to the last decision
    times: list[float]  # each decision, seconds from the first Halo request
    requests: list[int]  # Halo requests answered in each window from the first

    @property
    def ideal_per_window(self) -> float:
        """One read per ticket plus a share of a batched POST, at the budget's limit."""
        return self.limit / (1 + 1 / self.batch_size)

    @property
    def per_window(self) -> list[int]:
        """Decisions posted in each window from the first Halo request."""
        return _per_window(self.times, self.window)

    @property
    def full_windows(self) -> float:
        """Mean decisions of the windows the drain filled (all but its last)."""
        full = self.per_window[:-1]
        return statistics.mean(full) if full else math.nan

    @property
    def ideal_took(self) -> float:
        """Seconds the whole drain needs at best: under a sliding window, each `limit`
        requests go one window after the `limit` before them."""
        needed = math.ceil(self.replies * (1 + 1 / self.batch_size)) + 1  # and one token
        return (needed - 1) // self.limit * self.window


def _per_window(times: list[float], window: float) -> list[int]:
    counts = [0] * (int(max(times, default=0) // window) + 1)
    for t in times:
        counts[int(t // window)] += 1
    return counts


def drain_table(args: argparse.Namespace, d: Drain) -> list[str]:
    scale = args.drain_scale
    rows = [
        ("replies decided", f"{d.decided} / {d.replies}", ""),
        ("decisions per full window", f"{d.full_windows:.1f}",
         f"ideal {d.ideal_per_window:.1f} ({d.full_windows / d.ideal_per_window:.0%})"),
        ("decisions in each window", " ".join(map(str, d.per_window)), ""),
        ("whole drain, in windows", f"{d.took / d.window:.2f}",
         f"ideal {d.ideal_took / d.window:.2f} ({d.ideal_took / d.took:.0%} of ideal pace)"),
        ("seconds to the first decision", f"{d.first:.2f}", "goal <= 5"),
        ("Halo calls: reads / POSTs / tokens", f"{d.calls.gets} / {d.calls.posts} / "
         f"{d.calls.tokens}", ""),
        ("429 answers", f"{d.calls.throttled}", "goal 0"),
        ("Halo requests in each window", " ".join(map(str, d.requests)), f"limit {d.limit}"),
    ]
    out = [f"  (budget {d.limit} per {d.window * scale:g} s scaled to {d.window:g} s "
           f"(--drain-scale {scale:g}); batch_size {d.batch_size}; latency {args.latency:g} s "
           f"per Halo call; {os.cpu_count()} CPUs)",
           f"{'metric':<38}{'measured':>14}  vs"]
    out += [f"{label:<38}{value:>14}  {note}".rstrip() for label, value, note in rows]
    return out


@dataclass
class ModeResult:
    push: list[float] = field(default_factory=list)
    backlog: Backlog = field(default_factory=Backlog)
    tight: Backlog = field(default_factory=Backlog)  # the same under a tight budget
    throttled: int = 0
    rss: dict[str, Any] = field(default_factory=dict)


# --- the scenarios ---------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args: argparse.Namespace, dovecot: Dovecot, sink: SmtpSink, state: Path
    ) -> None:
        self.args = args
        self.dovecot = dovecot
        self.sink = sink
        self.state = state
        self.rng = random.Random(7)

    def standin(self) -> StandinHalo:
        halo = StandinHalo().start()
        halo.faults.latency = self.args.latency
        return halo

    def fill(self, harness: Harness, messages: Iterable[bytes]) -> None:
        """Put the backlog in the inbox over one IMAP connection."""
        appender = self.dovecot.connect(harness.user)
        try:
            for raw in messages:
                appender.append("INBOX", raw)
        finally:
            appender.logout()

    def harness(
        self, mode: str, halo: StandinHalo, budget: tuple[int, float] | None = None
    ) -> Harness:
        overrides = json.loads(json.dumps(MODES[mode]))
        if mode == "naive":
            overrides["imap"]["poll_seconds"] = self.args.naive_poll
        if budget is not None:
            overrides["halo"].update(requests_per_window=budget[0], window_seconds=budget[1])
        harness = Harness(self.dovecot, halo, self.sink, self.state, overrides=overrides)
        configured = harness.settings.halo
        # Halo's own limit set to exactly our configured budget: any 429 is our doing.
        halo.faults.rate_limit(configured.requests_per_window, configured.window_seconds)
        return harness

    async def push(self, mode: str, result: ModeResult) -> None:
        halo = self.standin()
        try:
            harness = self.harness(mode, halo)
            samples = self.args.push_samples + 1  # the first one warms up (token, TCP)
            ids = add_tickets(halo, 5000, samples)
            appender = self.dovecot.connect(harness.user)
            period = self.args.naive_poll if mode == "naive" else 0.5
            try:
                async with responder(harness.settings) as worker:
                    stop = asyncio.Event()
                    task = asyncio.create_task(worker.run(stop))
                    await asyncio.sleep(0.5)
                    for index, ticket_id in enumerate(ids):
                        # A random phase against the poll ticks, and time to get back to waiting.
                        await asyncio.sleep(0.3 + self.rng.uniform(0, period))
                        raw = gmail_reply(approver(ticket_id), ticket_id, "Approve")
                        started = await asyncio.to_thread(_append, appender, raw)
                        arrived = await _until_posted(halo, ticket_id, task, timeout=60)
                        if index:
                            result.push.append(arrived - started)
                        log(
                            f"{mode} push {index}: {arrived - started:.3f} s"
                            + (" (warm-up, not counted)" if not index else "")
                        )
                    stop.set()
                    await asyncio.wait_for(task, 30)
            finally:
                appender.logout()
            result.throttled += Calls.of(halo).throttled
        finally:
            halo.stop()

    async def backlog(
        self, mode: str, result: ModeResult, budget: tuple[int, float] | None = None
    ) -> None:
        halo = self.standin()
        try:
            harness = self.harness(mode, halo, budget)
            ids = add_tickets(halo, 10_000, self.args.backlog)
            self.fill(harness, (gmail_reply(approver(i), i, "Approve") for i in ids))
            async with responder(harness.settings) as worker:
                started = time.perf_counter()
                passed = await worker.run_once()
                seconds = time.perf_counter() - started
            done = Backlog(
                Calls.of(halo), sum(r.outcome == "approved" for r in passed.reports), seconds
            )
            if budget is None:
                result.backlog = done
            else:
                result.tight = done
            result.throttled += done.calls.throttled
            log(
                f"{mode} backlog (budget {budget or 'default'}): {done.decided}/{len(ids)} "
                f"approved in {seconds:.2f} s, {done.calls}"
            )
        finally:
            halo.stop()

    async def drain(self) -> Drain:
        """A backlog of --drain replies under the default budget, scaled in time."""
        args = self.args
        scale = args.drain_scale
        halo = self.standin()
        try:
            limit, window = 300, 300.0 / scale
            overrides = {"halo": {"requests_per_window": limit, "window_seconds": window,
                                  "pass_deadline_seconds": 10.0 / scale,
                                  "batch_seconds": 2.0 / scale}}
            harness = Harness(self.dovecot, halo, self.sink, self.state, overrides=overrides)
            settings = harness.settings
            halo.faults.rate_limit(limit, window)
            ids = add_tickets(halo, 30_000, args.drain)
            self.fill(harness, (gmail_reply(approver(i), i, "Approve") for i in ids))
            log(f"drain: {len(ids)} replies waiting; budget {limit} per {window:g} s")
            async with responder(settings) as worker:
                stop = asyncio.Event()
                started = time.monotonic()
                task = asyncio.create_task(worker.run(stop))
                limit_s = 60 + 4 * window * len(ids) / limit
                while len(posts_for(halo)) < len(ids) and not task.done():
                    if time.monotonic() - started > limit_s:
                        log("drain: gave up waiting")
                        break
                    await asyncio.sleep(0.2)
                stop.set()
                await asyncio.wait_for(task, 60)
            decided = sorted(posts_for(halo).values())
            calls = Calls.of(halo)
            first_request = min(r.at for r in halo.requests)
            result = Drain(len(ids), len(decided), window, limit,
                           settings.halo.batch_size, calls,
                           decided[0] - started if decided else math.nan,
                           decided[-1] - first_request if decided else math.nan,
                           [t - first_request for t in decided],
                           _per_window([r.at - first_request for r in halo.requests
                                        if r.status == 200], window))
            log(f"drain: {result.decided}/{result.replies} decided, {calls}")
            return result
        finally:
            halo.stop()

    def rss(self, mode: str, result: ModeResult) -> None:
        halo = self.standin()
        try:
            harness = self.harness(mode, halo)
            ids = add_tickets(halo, 20_000, self.args.attachments)
            size = int(self.args.attachment_mb * 1024 * 1024)
            self.fill(harness, (with_attachment(i, size, self.rng) for i in ids))
            child = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--rss-child"],
                input=json.dumps(harness.config()),
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if child.returncode != 0:
                raise RuntimeError(f"rss child failed: {child.stderr[-2000:]}")
            result.rss = json.loads(child.stdout.strip().splitlines()[-1])
            result.throttled += Calls.of(halo).throttled
            log(f"{mode} rss: {result.rss}")
        finally:
            halo.stop()


def _append(client: Any, raw: bytes) -> float:
    started = time.monotonic()
    client.append("INBOX", raw)
    return started


async def _until_posted(
    halo: StandinHalo, ticket_id: int, task: asyncio.Task[None], timeout: float
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at = posts_for(halo).get(ticket_id)
        if at is not None:
            return at
        if task.done():
            task.result()
            raise RuntimeError("the responder stopped")
        await asyncio.sleep(0.005)
    raise RuntimeError(f"ticket {ticket_id} not decided within {timeout:g} s")


# --- the child process for peak RSS ---------------------------------------------------------


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def rss_child() -> int:
    """One pass with the config read from stdin; prints a JSON line with RSS figures (kB)."""
    settings = parse_settings(json.loads(sys.stdin.read()))
    idle_kb = _status_kb("VmRSS")  # everything imported, nothing done yet

    async def one_pass() -> dict[str, Any]:
        async with responder(settings) as worker:
            fetched: list[int] = []
            sizes: list[int] = []
            mailbox: Any = worker.mailbox

            def counting(fetch: Any) -> Any:
                async def wrapped(*args: Any, **kwargs: Any) -> Any:
                    got = await fetch(*args, **kwargs)
                    fetched.extend(len(i.raw) for i in got)
                    sizes.extend(i.size for i in got)
                    return got

                return wrapped

            for name in ("fetch_new", "claim_new"):  # whichever the worker uses
                if hasattr(mailbox, name):
                    setattr(mailbox, name, counting(getattr(mailbox, name)))
            passed = await worker.run_once()
        return {
            "approved": sum(r.outcome == "approved" for r in passed.reports),
            "messages": len(passed.reports),
            "fetched_bytes": sum(fetched),
            "mailbox_bytes": sum(sizes),
        }

    out = asyncio.run(one_pass())
    out.update(idle_kb=idle_kb, peak_kb=_status_kb("VmHWM"))
    print(json.dumps(out))
    return 0


# --- analysis cost --------------------------------------------------------------------------


def analysis_cost() -> dict[str, Any]:
    """Median CPU ms of ``analyse`` per corpus message (each the median of 5 runs)."""
    from tests.corpus_cases import corpus_path, load_cases

    corpus = corpus_path()
    raws: list[tuple[str, bytes]] = []
    if corpus is not None and corpus.is_dir():
        for case in load_cases(corpus):
            raw = case.path.read_bytes()
            if case.kind != "message":  # bodies only: wrapped as a mail client sends them
                text = raw.decode("utf-8", "replace")
                raw = MIMEText(text, "html" if case.kind == "html" else "plain", "utf-8").as_bytes()
            raws.append((case.key, raw))
    per: list[tuple[float, str]] = []
    for key, raw in raws:
        runs = []
        for _ in range(5):
            started = time.process_time()
            analyse(raw)
            runs.append(time.process_time() - started)
        per.append((statistics.median(runs) * 1000, key))
    scaling = _scaling()
    if not per:
        return {"count": 0, "scaling": scaling}
    ms = sorted(m for m, _ in per)
    slowest = max(per)
    return {
        "count": len(per),
        "median": statistics.median(ms),
        "p95": _pct(ms, 95),
        "max": slowest[0],
        "slowest": slowest[1],
        "scaling": scaling,
    }


def _scaling() -> float:
    """CPU time of a reply with 8x the quoted text over that of the base size (linear: ~8)."""

    def cost(lines: int) -> float:
        quoted = "".join(
            f"> line {i} of the original approval request text\n" for i in range(lines)
        )
        raw = gmail_reply("a@example.com", 1, "Approve\n\n" + "Thanks.\n" * 5 + quoted)
        runs = []
        for _ in range(3):
            started = time.process_time()
            analyse(raw)
            runs.append(time.process_time() - started)
        return min(runs)

    return cost(16_000) / cost(2_000)


# --- the table -------------------------------------------------------------------------------


def _pct(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ratio(naive: float, tuned: float) -> str:
    if not tuned or math.isnan(tuned) or math.isnan(naive):
        return ""
    return f"{naive / tuned:.1f}x"


def table(
    args: argparse.Namespace, results: dict[str, ModeResult], analysis: dict[str, Any]
) -> list[str]:
    t, n = results["tuned"], results["naive"]
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, tv: float, nv: float, fmt: str, ratio: bool = True) -> None:
        rows.append((label, format(tv, fmt), format(nv, fmt), _ratio(nv, tv) if ratio else ""))

    tp, np_ = sorted(t.push), sorted(n.push)
    add(
        f"push latency p50, s ({len(tp)} replies)",
        statistics.median(tp) if tp else math.nan,
        statistics.median(np_) if np_ else math.nan,
        ".2f",
    )
    add("push latency p95, s", _pct(tp, 95), _pct(np_, 95), ".2f")
    per = [r.backlog.calls.api / max(r.backlog.decided, 1) for r in (t, n)]
    add(f"backlog {args.backlog}: Halo calls per decision", per[0], per[1], ".3f")
    rows.append(
        (
            "  GET ticket / POST (token requests)",
            *(
                f"{r.backlog.calls.gets} / {r.backlog.calls.posts} ({r.backlog.calls.tokens})"
                for r in (t, n)
            ),
            "",
        )
    )
    rows.append(
        (
            "  decided",
            f"{t.backlog.decided}/{args.backlog}",
            f"{n.backlog.decided}/{args.backlog}",
            "",
        )
    )
    add(f"backlog {args.backlog}: wall time, s", t.backlog.seconds, n.backlog.seconds, ".2f")
    limit, window = args.tight_budget
    add(
        f"  same under a budget of {limit}/{window:g} s, s", t.tight.seconds, n.tight.seconds, ".2f"
    )
    rows.append(
        (
            "  decided / 429s under that budget",
            *(f"{r.tight.decided}/{args.backlog} / {r.tight.calls.throttled}" for r in (t, n)),
            "",
        )
    )
    rows.append(
        ("429s from Halo, all runs (limit = our budget)", str(t.throttled), str(n.throttled), "")
    )
    mb = 1024.0
    add(
        f"peak RSS, pass over {args.attachments} x {args.attachment_mb:g} MB attach., MB",
        t.rss.get("peak_kb", 0) / mb,
        n.rss.get("peak_kb", 0) / mb,
        ".1f",
        ratio=False,
    )
    add(
        "  RSS of the same process idle, MB",
        t.rss.get("idle_kb", 0) / mb,
        n.rss.get("idle_kb", 0) / mb,
        ".1f",
        ratio=False,
    )
    rows.append(
        (
            "  text fetched / stored in mailbox",
            *(
                f"{r.rss.get('fetched_bytes', 0) / 1024:.0f} KB / "
                f"{r.rss.get('mailbox_bytes', 0) / 2**20:.0f} MB"
                for r in (t, n)
            ),
            "",
        )
    )
    if analysis.get("count"):
        same = "(same code)"
        rows.append(
            (
                f"analyse CPU ms/msg, median ({analysis['count']} corpus msgs)",
                f"{analysis['median']:.2f}",
                same,
                "",
            )
        )
        rows.append(("  p95 / max ms", f"{analysis['p95']:.2f} / {analysis['max']:.1f}", same, ""))
    rows.append(
        (
            "  cost of 8x the quoted text (linear = ~8)",
            f"{analysis['scaling']:.1f}x",
            "(same code)",
            "",
        )
    )
    header = ("metric", "tuned", f"naive (poll {args.naive_poll:g} s)", "naive/tuned")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        out.append("  ".join(cells).rstrip())
    return out


# --- main ------------------------------------------------------------------------------------


def _budget(text: str) -> tuple[int, float]:
    limit, _, window = text.partition("/")
    return int(limit), float(window)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--latency",
        type=float,
        default=0.1,
        help="seconds the stand-in Halo adds to every call (default 0.1)",
    )
    parser.add_argument("--backlog", type=int, help="replies in the backlog pass (40)")
    parser.add_argument("--push-samples", type=int, help="replies timed one at a time (10)")
    parser.add_argument("--attachments", type=int, help="replies with attachments (30)")
    parser.add_argument("--attachment-mb", type=float, help="attachment size in MB (2)")
    parser.add_argument("--naive-poll", type=float, help="poll interval of the naive run (5)")
    parser.add_argument(
        "--tight-budget",
        type=_budget,
        default=(20, 2.0),
        metavar="N/SECONDS",
        help="a tight Halo request budget for a second backlog run (20/2)",
    )
    parser.add_argument("--drain", type=int, metavar="N",
                        help="only the backlog drain: N replies under the default budget")
    parser.add_argument("--drain-scale", type=float, default=10.0,
                        help="divide the budget window and deadlines by this (10)")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    parser.add_argument("--graph", action="store_true",
                        help="the Microsoft Graph figures instead (scripts/bench_graph.py)")
    parser.add_argument("--graph-samples", type=int, default=None,
                        help="--graph: replies timed at the 10 s poll (6; quick 3)")
    parser.add_argument("--graph-attachment-mb", type=float, default=20.0,
                        help="--graph: attachment size in MB (20)")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name, value in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


async def run_all(args: argparse.Namespace) -> dict[str, ModeResult]:
    results = {mode: ModeResult() for mode in MODES}
    with (
        Dovecot() as dovecot,
        SmtpSink() as sink,
        tempfile.TemporaryDirectory(prefix="responder-bench-") as state,
    ):
        bench = Bench(args, dovecot, sink, Path(state))
        for mode in MODES:
            await bench.backlog(mode, results[mode])
            await bench.backlog(mode, results[mode], args.tight_budget)
            await asyncio.to_thread(bench.rss, mode, results[mode])
            await bench.push(mode, results[mode])
    return results


async def run_drain(args: argparse.Namespace) -> Drain:
    with (
        Dovecot() as dovecot,
        SmtpSink() as sink,
        tempfile.TemporaryDirectory(prefix="responder-bench-") as state,
    ):
        return await Bench(args, dovecot, sink, Path(state)).drain()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        return rss_child()
    if args.graph:
        return graph_main(args)
    started = time.monotonic()
    if args.drain:
        drained = asyncio.run(run_drain(args))
        command = "python " + shlex.join([os.path.relpath(sys.argv[0], Path.cwd()),
                                          *sys.argv[1:]])
        print(f"$ {command}")
        for line in drain_table(args, drained):
            print(line)
        print(f"  total bench time {time.monotonic() - started:.0f} s")
        return 0
    results = asyncio.run(run_all(args))
    log("analysing the corpus")
    analysis = analysis_cost()
    log(f"analysis: slowest {analysis.get('slowest')} ({analysis.get('max', 0):.1f} ms)")
    command = "python " + shlex.join([os.path.relpath(sys.argv[0], Path.cwd()), *sys.argv[1:]])
    print(f"$ {command}")
    print(
        f"  (latency {args.latency:g} s per Halo call, backlog {args.backlog}, push samples "
        f"{args.push_samples}, {args.attachments} x {args.attachment_mb:g} MB attachments, "
        f"naive poll {args.naive_poll:g} s; {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]})"
    )
    print(
        "  tuned: IMAP IDLE, one POST per pass, POST answer confirms;"
        " naive: polling, one POST per decision, re-read after each"
    )
    for line in table(args, results, analysis):
        print(line)
    print(f"  total bench time {time.monotonic() - started:.0f} s")
    return 0


def graph_main(args: argparse.Namespace) -> int:
    import bench_graph  # scripts/ is on sys.path when run as a script

    if args.graph_samples is None:
        args.graph_samples = 3 if args.quick else 6
    if args.quick:
        args.graph_attachment_mb = min(args.graph_attachment_mb, 5.0)
    started = time.monotonic()
    lines = asyncio.run(bench_graph.figures(args))
    command = "python " + shlex.join([os.path.relpath(sys.argv[0], Path.cwd()), *sys.argv[1:]])
    print(f"$ {command}")
    print(f"  ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    for line in lines:
        print(line)
    print(f"  total bench time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
