"""Run the reply-extraction checks over the shared corpus and print a tally per source.

    python scripts/corpus.py [--corpus PATH] [--verbose]

The checks are those of ``tests/test_corpus.py`` (both use ``tests/corpus_cases.py``).
Prints ``source  matched/total`` per source, a total line and timing; exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.corpus_cases import SOURCES, Outcome, corpus_path, load_cases, run_case


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", help="corpus folder (default: $RESPONDER_CORPUS or ../shared/corpus)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show each failure")
    args = parser.parse_args(argv)
    corpus = corpus_path(args.corpus)
    if corpus is None or not corpus.is_dir():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 0
    outcomes = [run_case(case) for case in load_cases(corpus)]
    for source in SOURCES:
        mine = [o for o in outcomes if o.case.source == source]
        print(f"{source:30} {_tally(mine)}")
    print(f"{'total':30} {_tally(outcomes)}")
    _print_timing(outcomes)
    for outcome in outcomes:
        if not outcome.ok and args.verbose:
            print(f"FAIL {outcome.case.key}: " + "; ".join(outcome.failures))
    return 0


def _tally(outcomes: list[Outcome]) -> str:
    """matched/total, and how many of those compare the reply text (the rest: no crash)."""
    texts = [o for o in outcomes if o.case.checks]
    return (f"{sum(o.ok for o in outcomes)}/{len(outcomes)}"
            f"  (reply text {sum(o.ok for o in texts)}/{len(texts)},"
            f" no-crash only {len(outcomes) - len(texts)})")


def _print_timing(outcomes: list[Outcome]) -> None:
    timed = [o for o in outcomes if o.reply is not None]
    if not timed:
        return
    median_ms = statistics.median(o.seconds for o in timed) * 1000
    slowest = max(timed, key=lambda o: o.seconds)
    print(
        f"median {median_ms:.2f} ms per message; slowest {slowest.seconds * 1000:.1f} ms "
        f"({slowest.case.key}, {slowest.size} bytes)"
    )


if __name__ == "__main__":
    sys.exit(main())
