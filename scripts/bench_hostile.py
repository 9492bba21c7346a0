"""How fast hostile mail is read: the worst seconds per MB over crafted inputs (issue 19).

    python scripts/bench_hostile.py [--mb 1.5] [--worker]

Builds each shape an attacker may send, at about --mb MB of text (the default message
size limit is 2 MB), next to ordinary mail, and prints the CPU seconds
``responder.reading.message.analyse`` takes for each, per MB, and what it made of the message.
With --worker each is also read the way the service reads it, in the worker process
(``responder.analysis``), and the wall time of that is shown beside. The last lines
give the worst crafted input and the slowest ordinary mail. Goal: no input slower than
1 s per MB.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from responder.analysis import Analyser  # noqa: E402
from responder.config import ParsingSettings  # noqa: E402
from responder.reading.message import Facts, analyse  # noqa: E402
from tests.clients import outlook_desktop  # noqa: E402
from tests.harness import gmail_reply, reply  # noqa: E402

HEAD = (b"From: Alice <alice@example.com>\r\nTo: approvals@example.com\r\n"
        b"Subject: Re: Approval required [ID:1234]\r\nMessage-ID: <bench@example.com>\r\n")
Shape = Callable[[int], bytes]
HEADER_FIT = 250_000  # header shapes are built this large at most: a larger block is refused


def fit(size: int) -> int:
    return min(size, HEADER_FIT)


def plain(body: bytes, head: bytes = HEAD) -> bytes:
    return head + b"\r\n" + b"Approve\r\n\r\n" + body


def lines(line: bytes, size: int) -> bytes:
    return line * max(1, size // len(line))


def nested(depth: int, tail: bytes) -> bytes:
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (i, i)
                       for i in range(depth))
    return HEAD + opening + b"Content-Type: text/plain\r\n\r\nApprove\r\n" + tail


def html(body: bytes) -> bytes:
    return HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Approve" + body


def folded_words(size: int) -> bytes:
    word = b"=?utf-8?q?" + b"a" * 60 + b"?="
    return b"\r\n ".join([word] * max(1, size // (len(word) + 3)))


CRAFTED: dict[str, Shape] = {
    # the three of issue 19
    "display name, one unbroken run": lambda n: (
        b"From: " + b"a" * fit(n) + b" <alice@example.com>\r\n" + HEAD[HEAD.index(b"To:"):]
        + b"\r\nApprove\r\n"),
    "display name, folded encoded-words": lambda n: (
        b"From: " + folded_words(fit(n)) + b" <alice@example.com>\r\n" + HEAD[HEAD.index(b"To:"):]
        + b"\r\nApprove\r\n"),
    "display name, 'a@' run": lambda n: (
        b'From: "' + b"a@" * (fit(n) // 2) + b'" <alice@example.com>\r\n'
        + HEAD[HEAD.index(b"To:"):] + b"\r\nApprove\r\n"),
    "quote lines of '@' ending ':'": lambda n: plain(lines(b"@" * 399 + b":\r\n", n)),
    "quote lines of 'a@' ending ':'": lambda n: plain(lines(b"a@" * 150 + b":\r\n", n)),
    "quote lines '<' + '@'s": lambda n: plain(lines(b"<" + b"@" * 398 + b":\r\n", n)),
    "49 nested multiparts, blank lines": lambda n: nested(49, lines(b"\r\n", n)),
    "49 nested multiparts, quoted lines": lambda n: nested(49, lines(b"> quoted text\r\n", n)),
    "8 nested multiparts, 'x' lines": lambda n: nested(8, lines(b"x\n", n)),
    "8 nested multiparts, 40-byte lines": lambda n: nested(8, lines(b"x" * 38 + b"\r\n", n)),
    "3 nested multiparts, blank lines": lambda n: nested(3, lines(b"\n", n)),
    "50 sibling multiparts": lambda n: HEAD + b"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
    + b"".join(b"--o\r\nContent-Type: multipart/alternative; boundary=s%d\r\n\r\n--s%d\r\n"
               b"Content-Type: text/plain\r\n\r\nApprove\r\n--s%d--\r\n" % (i, i, i)
               for i in range(49)) + lines(b"--o not quite\r\n", n),
    # header blocks (at most HEADER_FIT bytes; one over the limit of 256 KB, refused)
    "header block of 1.5 MB (refused)": lambda n: (
        lines(b"X-A: b\r\n", n) + HEAD + b"\r\nApprove\r\n"),
    "header block of 1 KB fields": lambda n: (
        lines(b"X-Filler: " + b"v" * 1000 + b"\r\n", fit(n)) + HEAD + b"\r\nApprove\r\n"),
    "header block of short fields": lambda n: (
        lines(b"X-A: b\r\n", fit(n)) + HEAD + b"\r\nApprove\r\n"),
    "one folded Subject": lambda n: (
        b"From: alice@example.com\r\nSubject: Re: [ID:1234]" + lines(b"\r\n Re: aw: x", fit(n))
        + b"\r\n\r\nApprove\r\n"),
    "Subject of unclosed encoded-words": lambda n: (
        b"From: alice@example.com\r\nSubject: " + b"=?utf-8?q?" * (fit(n) // 10)
        + b"\r\n\r\nApprove\r\n"),
    "Subject of 'Re: ' prefixes": lambda n: (
        b"From: alice@example.com\r\nSubject: " + b"Re: " * (fit(n) // 4)
        + b"[ID:1]\r\n\r\nApprove\r\n"),
    "Subject of '[EXTERNAL] ' tags": lambda n: (
        b"From: alice@example.com\r\nSubject: " + b"[EXTERNAL] " * (fit(n) // 11)
        + b"[ID:1]\r\n\r\nApprove\r\n"),
    "References of many ids": lambda n: (
        HEAD + b"References:" + lines(b" <a@b>", fit(n)) + b"\r\n\r\nApprove\r\n"),
    # bodies
    "one line of 'a', no newline": lambda n: plain(b"a" * n),
    "lines of spaces then 'x'": lambda n: plain(lines(b" " * 300 + b"x\r\n", n)),
    "lines of tabs then ':'": lambda n: plain(lines(b"\t" * 300 + b":\r\n", n)),
    "lines of dashes then '!'": lambda n: plain(lines(b"-" * 399 + b"!\r\n", n)),
    "lines of '=' (rules)": lambda n: plain(lines(b"=" * 400 + b"\r\n", n)),
    "lines of underscores then ':'": lambda n: plain(lines(b"_" * 399 + b":\r\n", n)),
    "lines of 'On 1 ... wrote' no colon": lambda n: plain(lines(b"On 1 " + b"x " * 190
                                                                 + b"wrote\r\n", n)),
    "lines of '**From:**' fields": lambda n: plain(lines(b"** " * 100 + b"From:\r\n", n)),
    "flowed lines ending in spaces": lambda n: (
        HEAD + b"Content-Type: text/plain; format=flowed; delsp=yes\r\n\r\nApprove\r\n"
        + lines(b"x \r\n", n)),
    "base64 text part of garbage": lambda n: (
        HEAD + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + lines(b"QUJD" * 19 + b"\r\n", n)),
    "HTML of paragraphs": lambda n: html(lines(b"<p>x", n)),
    "HTML of nested divs": lambda n: html(lines(b"<div>", n)),
    "HTML table cells": lambda n: html(b"<table>" + lines(b"<tr><td>x</td>", n)),
    "HTML of attributes": lambda n: html(b"<div " + lines(b'a="b" ', n) + b">"),
    "HTML of quote markers": lambda n: html(lines(b'<blockquote type="cite">', n)),
}


def ordinary(size: int) -> dict[str, bytes]:
    thread = "".join(f"> line {i} of the original approval request, quoted\n"
                     for i in range(size // 50))
    return {
        "Gmail reply (small)": gmail_reply("alice@example.com", 1234, "Approve"),
        "Outlook desktop reply (HTML)": outlook_desktop("alice@example.com", "Approve"),
        "reply quoting a long thread": gmail_reply(
            "alice@example.com", 1234, "Approve\n\nThanks.\n\n" + thread),
        "reply with a long note": reply("alice@example.com", "Re: Approval [ID:1234]",
                                        "Approve\n\n" + "A sentence of the note. " * (size // 24)),
    }


def cpu(raw: bytes, parsing: ParsingSettings) -> tuple[float, Facts]:
    started = time.thread_time()
    facts = analyse(raw, parsing)
    return time.thread_time() - started, facts


def what(facts: Facts) -> str:
    if facts.unreadable:
        return f"unreadable: {facts.unreadable}"
    if facts.suspicious:
        return f"suspicious: {facts.suspicious[0]}"
    return f"read: {facts.decision.value if facts.decision else 'no decision'}"


@dataclass(frozen=True)
class Row:
    name: str
    mb: float
    seconds: float

    @property
    def per_mb(self) -> float:
        return self.seconds / self.mb


def row(name: str, raw: bytes, parsing: ParsingSettings, worker: Analyser | None) -> Row:
    seconds, facts = cpu(raw, parsing)
    wall = ""
    if worker is not None:
        started = time.monotonic()
        worker.analyse(raw, parsing)
        wall = f"{time.monotonic() - started:8.3f}"
    result = Row(name, len(raw) / 1e6, seconds)
    print(f"{name:38s} {result.mb:6.3f} {seconds:8.3f} {result.per_mb:8.3f} {wall:>8s}  "
          f"{what(facts)[:64]}", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1.5, help="size of each crafted input")
    parser.add_argument("--worker", action="store_true",
                        help="also time each through the worker process (wall seconds)")
    args = parser.parse_args(argv)
    size = int(args.mb * 1_000_000)
    parsing = ParsingSettings(max_message_bytes=max(2_000_000, size + 100_000),
                              analysis_timeout_seconds=60)
    worker = Analyser() if args.worker else None
    print("$ python scripts/bench_hostile.py " + shlex.join(argv or sys.argv[1:]))
    print(f"{'input':38s} {'MB':>6s} {'CPU s':>8s} {'s/MB':>8s} {'worker s':>8s}  outcome")
    try:
        if worker is not None:
            worker.analyse(gmail_reply("a@example.com", 1, "Approve"), parsing)  # started
        crafted = [row(name, shape(size), parsing, worker) for name, shape in CRAFTED.items()]
        print()
        usual = [row(name, raw, parsing, worker) for name, raw in ordinary(size).items()]
    finally:
        if worker is not None:
            worker.close()
    print()
    worst = max(crafted, key=lambda r: r.per_mb)
    print(f"worst crafted input: {worst.per_mb:.3f} s/MB ({worst.name}, {worst.mb:.2f} MB)")
    big = [r for r in usual if r.mb >= 1]
    small = [r for r in usual if r.mb < 1]
    if big:
        slowest = max(big, key=lambda r: r.per_mb)
        print(f"ordinary mail of 1 MB or more: at most {slowest.per_mb:.3f} s/MB ({slowest.name})")
    if small:
        slowest = max(small, key=lambda r: r.seconds)
        print(f"ordinary small mail: at most {slowest.seconds * 1000:.1f} ms a message "
              f"({slowest.name})")

if __name__ == "__main__":
    main()
