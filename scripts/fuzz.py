"""Fuzz ``responder.reading.message.analyse`` with mutations of the malformed-mail corpus.

Seeds: ``mail-parser/tests/mails`` in the shared corpus ($RESPONDER_CORPUS, default
../shared/corpus), read in place. Each try mutates a seed (bit flips, byte runs,
truncation, boundary corruption, deeper nesting, huge quoted blocks, broken charsets)
and checks that analyse() returns, within ``--slow`` seconds, without raising.

    python scripts/fuzz.py [--seconds 60 | --count N] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from responder.reading.message import analyse  # noqa: E402
from tests.corpus_cases import corpus_path  # noqa: E402

Mutation = Callable[[random.Random, bytes], bytes]


def flip_bits(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 32)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def splice_garbage(rng: random.Random, raw: bytes) -> bytes:
    at = rng.randint(0, len(raw))
    return raw[:at] + rng.randbytes(rng.randint(1, 4096)) + raw[at:]


def truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randint(0, len(raw))]


def corrupt_boundaries(rng: random.Random, raw: bytes) -> bytes:
    choices = [b"", b"--", b"x" * 200, b"\x00", b'"', b"--b--"]
    return re.sub(
        rb'boundary="?([^";\r\n]+)"?',
        lambda m: b'boundary="' + rng.choice(choices) + b'"',
        raw,
        flags=re.I,
    )


def nest(rng: random.Random, raw: bytes) -> bytes:
    depth = rng.randint(10, 3000)
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (i, i)
        for i in range(depth)
    )
    return b"From: a@example.com\r\nSubject: Re: [ID:7]\r\nMIME-Version: 1.0\r\n" + head + raw


def quote_flood(rng: random.Random, raw: bytes) -> bytes:
    line = rng.choice([b"> ", b">>>>>>>> ", b"> On Mon wrote:\r\n> ", b"|"])
    return raw + b"\r\n" + (line + b"quoted text\r\n") * rng.randint(1000, 100_000)


def break_charsets(rng: random.Random, raw: bytes) -> bytes:
    name = rng.choice([b"x-bogus", b"utf-7", b"utf-16", b"", b"\xff", b"cp65001"])
    out = re.sub(rb"charset=\"?[\w-]+\"?", b"charset=" + name, raw, flags=re.I)
    return re.sub(
        rb"Content-Transfer-Encoding: *\w+",
        b"Content-Transfer-Encoding: " + rng.choice([b"base64", b"x-uue", b"quoted"]),
        out,
        flags=re.I,
    )


MUTATIONS: list[Mutation] = [
    flip_bits,
    splice_garbage,
    truncate,
    corrupt_boundaries,
    nest,
    quote_flood,
    break_charsets,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=None, help="tries (instead of --seconds)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow", type=float, default=5.0, help="a try slower than this fails")
    parser.add_argument("--corpus", default=None)
    args = parser.parse_args(argv)
    corpus = corpus_path(args.corpus)
    folder = corpus / "mail-parser" / "tests" / "mails" if corpus else None
    if folder is None or not folder.is_dir():
        print(f"no seeds: {folder} is missing (set RESPONDER_CORPUS)", file=sys.stderr)
        return 2
    seeds = [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
    rng = random.Random(args.seed)
    tried = failures = 0
    slowest = 0.0
    deadline = time.monotonic() + args.seconds
    while (tried < args.count) if args.count is not None else (time.monotonic() < deadline):
        raw = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            raw = rng.choice(MUTATIONS)(rng, raw)
        started = time.monotonic()
        try:
            facts = analyse(raw)
            assert facts.key, "no key to record the message under"
            took = time.monotonic() - started
            slowest = max(slowest, took)
            if took > args.slow:
                raise AssertionError(f"took {took:.1f} s ({len(raw)} bytes)")
        except Exception:
            failures += 1
            if failures <= 5:
                print(f"failure on try {tried}:", traceback.format_exc(limit=3), file=sys.stderr)
        tried += 1
    print(f"seeds              {len(seeds)}")
    print(f"messages tried     {tried}")
    print(f"failures           {failures}")
    print(f"slowest (s)        {slowest:.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
