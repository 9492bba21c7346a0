"""The shared third-party corpus (read in place from $RESPONDER_CORPUS, never copied).

Every fixture with an expected reply text must give that text (whitespace-normalised);
every raw message must be read without an exception. Where an upstream expectation
differs from ours on purpose, ``corpus_cases.DELIBERATE_DIFFERENCES`` (the one table of
them) says why and gives our own expected value, which is asserted instead.
"""

from __future__ import annotations

import time

import pytest

from responder.reading.decision import read_decision
from tests.corpus_cases import (
    DELIBERATE_DIFFERENCES,
    Case,
    corpus_for_tests,
    load_cases,
    run_case,
)

pytestmark = pytest.mark.corpus

try:
    CORPUS, WHY_NOT = corpus_for_tests()
except FileNotFoundError as missing:  # asked for, or CI: an error, not a skip
    pytest.fail(str(missing), pytrace=False)
if CORPUS is None:
    pytest.skip(WHY_NOT, allow_module_level=True)
CASES = load_cases(CORPUS)


@pytest.mark.parametrize("case", CASES, ids=[case.key for case in CASES])
def test_fixture(case: Case) -> None:
    outcome = run_case(case)
    assert outcome.ok, f"{case.key}: " + "; ".join(outcome.failures)


def test_every_deliberate_difference_names_a_fixture() -> None:
    keys = {case.key for case in CASES}
    assert set(DELIBERATE_DIFFERENCES) <= keys


def test_most_fixtures_have_a_text_check() -> None:
    checked = [case for case in CASES if case.checks]
    assert len(checked) >= 150


@pytest.mark.parametrize("name", ["email_long_quote.txt", "pathological.txt"])
def test_performance_traps_take_well_under_a_second(name: str) -> None:
    case = next(c for c in CASES if c.key == f"email_reply_parser/test/emails/{name}")
    started = time.thread_time()  # CPU time: a busy machine slows the clock, not the work
    outcome = run_case(case)
    assert outcome.ok
    assert time.thread_time() - started < 1.0  # a blow-up; scripts/corpus.py prints figures


def test_no_fixture_reads_as_a_decision() -> None:
    """None of these messages says APPROVE or REJECT first: none may be acted on."""
    replies = [(c.key, run_case(c).reply) for c in CASES]
    decided = [key for key, r in replies if r and read_decision(r.text).decision is not None]
    assert decided == []
