"""The shared third-party corpus as test cases: load fixtures, translate their checks, run them.

Used by ``tests/test_corpus.py`` and ``scripts/corpus.py`` so that both run the same
checks. Each upstream suite asserts things in its own terms (fragments, hidden flags,
visible text); only what speaks about "the new text a person wrote" is translated here:
equality (whitespace-normalised), starts-with, contains / not-contains, regexes on the
first fragment, and "a later hidden fragment's text is not in our new text".
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

from responder.reading.body import decode_text
from responder.reading.message import analyse
from responder.reading.reply import Reply

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
ENV_VAR = "RESPONDER_CORPUS"

SOURCES = (
    "email_reply_parser",
    "zapier-email-reply-parser",
    "crisp-oss-email-reply-parser",
    "talon",
    "gitlab",
    "mail-parser",
)

# Where an upstream expectation differs from ours on purpose: fixture -> (why, our checks).
# Our checks replace the upstream ones, so these fixtures still fail when we regress.
_KEEP_NAME_SIGNATURE = (
    "talon's classifier strips a trailing name/contact block; we strip only '--' signatures "
    "and mobile footers (the decision word is at the top, a name block cannot change it)"
)
_GREETING_ABOVE = (
    "upstream's first fragment is the greeting alone; a greeting alone above the quote is no "
    "answer (The Bat! writes one above its quote), so the reply written below the quote is "
    "read too, as upstream shows it among the visible fragments"
)
_BELOW_A_GREETING = (
    ("startswith", "Hi,\n\nYou can list the keys for the bucket"),
    ("contains", "would do it."),
    ("not_contains", "Hi folks"),
)
_GITLAB_COMMANDS = "GitLab strips its /quick-action lines; we have no commands and keep them"
_DASH_NAME = (
    "github treats a '-Name' line as a signature; crisp (email_1, email_3) keeps it; we keep "
    "it (it cannot hold a decision word that matters, and cutting at '-word' lines is risky)"
)
DELIBERATE_DIFFERENCES: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "talon/tests/fixtures/standard_replies/iphone.eml": (
        "talon keeps 'Sent from my iPhone' at this stage; we strip mobile footers",
        (("equals", "Hello"),),
    ),
    "talon/tests/fixtures/standard_replies/sparrow.eml": (
        "talon keeps the '-- ' signature and 'Sent with Sparrow'; we strip both",
        (("equals", "Hello"),),
    ),
    "email_reply_parser/test/emails/email_1_1.txt": (
        _DASH_NAME,
        (
            ("startswith", "Hi folks"),
            ("contains", "-Abhishek Kona"),
            ("not_contains", "riak-users"),
        ),
    ),
    "email_reply_parser/test/emails/email_1_3.txt": (
        _DASH_NAME,
        (("equals", "Oh thanks.\n\nHaving the function would be great.\n\n-Abhishek Kona"),),
    ),
    "talon/tests/fixtures/reply-separated-by-hr.html": (
        "talon drops the whole block holding the <hr>, with the name 'Bob' above the rule; "
        "we cut at the <hr> itself and keep what was written before it",
        (("equals", "Hi there Bob"),),
    ),
    "email_reply_parser/test/emails/email_1_2.txt": (_GREETING_ABOVE, _BELOW_A_GREETING),
    "zapier-email-reply-parser/test/emails/email_1_2.txt": (_GREETING_ABOVE, _BELOW_A_GREETING),
    "crisp-oss-email-reply-parser/test/fixtures/email_2.txt": (
        _GREETING_ABOVE,
        (*_BELOW_A_GREETING, ("original_regex", "Hi folks"),
         ("original_regex", "riak-users mailing list")),
    ),
    "gitlab/spec/fixtures/emails/commands_in_reply.eml": (
        _GITLAB_COMMANDS,
        (("equals", "Cool!\n\n/close\n/todo"),),
    ),
    "gitlab/spec/fixtures/emails/commands_only_reply.eml": (
        _GITLAB_COMMANDS,
        (("equals", "/close\n/unsubscribe"),),
    ),
    "gitlab/spec/fixtures/emails/update_commands_only_reply.eml": (
        _GITLAB_COMMANDS,
        (("equals", "/close"),),
    ),
    "talon/tests/fixtures/signature/emails/stripped/jeff_body": (
        _KEEP_NAME_SIGNATURE,
        (("endswith", "Stavros Xxxxxx\nvia mobile"),),
    ),
    "talon/tests/fixtures/signature/emails/stripped/johndoeexamplecom_body": (
        _KEEP_NAME_SIGNATURE,
        (("endswith", "#sig#www.example.com"),),
    ),
    "talon/tests/fixtures/signature/emails/stripped/long_body": (
        _KEEP_NAME_SIGNATURE,
        (("endswith", "www.example.com"),),
    ),
    "talon/tests/fixtures/signature/emails/stripped/short_url_body": (
        _KEEP_NAME_SIGNATURE,
        (("endswith", "Thank you,\nNoam"),),
    ),
    "talon/tests/fixtures/signature/emails/stripped/sparse_body": (
        _KEEP_NAME_SIGNATURE,
        (("endswith", "http://www.example.com/in/xxx"),),
    ),
}


@dataclass(frozen=True)
class Case:
    """One fixture and the checks on what we extract from it."""

    source: str
    fixture: str  # source-relative path
    path: Path
    kind: str  # "body" (text/plain body), "html" (HTML body) or "message" (RFC 822)
    checks: tuple[tuple[str, str], ...] = ()
    deliberate: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}/{self.fixture}"


@dataclass(frozen=True)
class Outcome:
    case: Case
    reply: Reply | None
    failures: tuple[str, ...]
    seconds: float
    size: int = field(default=0)

    @property
    def ok(self) -> bool:
        return not self.failures


SKIPPED = "corpus tests skipped"  # the start of the one line a run without it prints


def corpus_for_tests() -> tuple[Path | None, str]:
    """The corpus folder for the tests, or (None, why they are skipped).

    A fresh clone has no ``../shared/corpus``: its tests are skipped, saying how to run
    them. Where the corpus is asked for (``$RESPONDER_CORPUS`` set to a folder) or
    required (``CI=true``), a missing folder is an error instead.
    """
    corpus = corpus_path()
    if corpus is None:
        return None, f"{SKIPPED}: {ENV_VAR}=none"
    if corpus.is_dir():
        return corpus, ""
    asked = bool(os.environ.get(ENV_VAR))
    if asked or os.environ.get("CI", "").lower() == "true":
        why = f"{ENV_VAR} is set" if asked else "CI=true requires the corpus"
        raise FileNotFoundError(f"corpus folder {corpus} is missing ({why}); set {ENV_VAR} "
                                "to its path (or to 'none')")
    return None, (f"{SKIPPED}: no corpus at {corpus}; to run them, set "
                  f"{ENV_VAR}=/path/to/corpus (CI=true requires it)")


def corpus_path(explicit: str | None = None) -> Path | None:
    """The corpus folder: explicit, else $RESPONDER_CORPUS, else ../shared/corpus; 'none' = off."""
    value = explicit or os.environ.get(ENV_VAR) or str(DEFAULT_CORPUS)
    if value.strip().lower() == "none":
        return None
    path = Path(value)
    return path if path.is_absolute() else (REPO / path).resolve()


def load_cases(corpus: Path) -> list[Case]:
    """Every fixture of every source, with its translated checks (possibly none)."""
    cases = [
        *_reply_parser_cases(corpus, "email_reply_parser"),
        *_reply_parser_cases(corpus, "zapier-email-reply-parser"),
        *_crisp_cases(corpus),
        *_talon_cases(corpus),
        *_gitlab_cases(corpus),
        *_raw_cases(corpus, "mail-parser", "tests/mails"),
    ]
    return [_apply_deliberate(case) for case in cases]


def _apply_deliberate(case: Case) -> Case:
    override = DELIBERATE_DIFFERENCES.get(case.key)
    if override is None:
        return case
    why, checks = override
    return Case(case.source, case.fixture, case.path, case.kind, checks, why)


def run_case(case: Case) -> Outcome:
    """Extract the reply of one fixture and check it; an exception is a failure too."""
    raw = case.path.read_bytes()
    started = time.perf_counter()
    try:
        reply = extract(raw, case.kind)
    except Exception as exc:
        return Outcome(case, None, (f"raised {type(exc).__name__}: {exc}",), 0.0, len(raw))
    seconds = time.perf_counter() - started
    failures = tuple(f for check in case.checks if (f := _failure(reply, *check)) is not None)
    return Outcome(case, reply, failures, seconds, len(raw))


def extract(raw: bytes, kind: str) -> Reply:
    """What ``responder explain --json`` reports: the message through ``analyse``.

    Bodies-only fixtures are first wrapped in a message of their own (UTF-8, text/plain
    or text/html), as a mail client would send them.
    """
    if kind != "message":
        text, _ = decode_text(raw, "utf-8")
        subtype = "html" if kind == "html" else "plain"
        raw = MIMEText(text, subtype, "utf-8").as_bytes()
    facts = analyse(raw)
    return Reply(facts.reply_text, facts.forwarded, facts.original, None)


def normalise(text: str) -> str:
    return " ".join(text.split())


def _failure(reply: Reply, kind: str, value: str) -> str | None:
    """None when the check holds, else a one-line description of the failure."""
    got = normalise(reply.text)
    want = normalise(value)
    held = {
        "equals": lambda: got == want,
        "equals_nows": lambda: "".join(got.split()) == "".join(want.split()),
        "startswith": lambda: got.startswith(want),
        "endswith": lambda: got.endswith(want),
        "contains": lambda: want in got,
        "not_contains": lambda: want not in got,
        "regex": lambda: re.search(value, reply.text) is not None,
        "not_regex": lambda: re.search(value, reply.text, re.MULTILINE) is None,
        "original_regex": lambda: re.search(value, reply.original) is not None,
        "nonempty": lambda: bool(got),
    }[kind]()
    return None if held else f"{kind} {value[:80]!r}: got {reply.text[:160]!r}"


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _strings(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]


def _reply_parser_cases(corpus: Path, source: str) -> Iterator[Case]:
    """github/email_reply_parser and its zapier port: visible text and fragment checks."""
    expected = _read_json(corpus / source / "EXPECTED.json")
    by_fixture = {case["fixture"]: case for case in expected["cases"]}
    for path in sorted((corpus / source / "test" / "emails").glob("*.txt")):
        fixture = str(path.relative_to(corpus / source))
        spec = by_fixture.get(fixture, {})
        checks = list(_visible_checks(spec))
        checks += _fragment_checks(spec, spec.get("hidden"), spec.get("quoted"))
        if not checks and spec.get("fragment_count") == 1:
            checks.append(("equals", path.read_text(encoding="utf-8", errors="replace")))
        yield Case(source, fixture, path, "body", tuple(checks))


def _visible_checks(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key in ("parse_reply_equals", "reply_stripped_equals", "visible_text_equals"):
        if key in spec:
            yield "equals", spec[key]
    for value in _strings(spec.get("parse_reply_not_contains", [])):
        yield "not_contains", value
    for value in _strings(spec.get("reply_contains", [])):
        yield "contains", value


def _fragment_checks(
    spec: dict[str, Any], hidden: list[bool] | None, quoted: list[bool] | None
) -> list[tuple[str, str]]:
    """Fragment 0 (when not a quote) is our new text; a hidden later fragment is not in it."""
    checks: list[tuple[str, str]] = []
    first_is_quote = bool(quoted and quoted[0])
    for key, value in spec.items():
        match = re.fullmatch(r"fragment_(\d+)_(equals|starts_with|starts_with_regex|contains)", key)
        if not match:
            continue
        index, how = int(match.group(1)), match.group(2)
        for text in _strings(value):
            if index == 0 and not first_is_quote:
                kind = {
                    "equals": "equals",
                    "starts_with": "startswith",
                    "contains": "contains",
                    "starts_with_regex": "regex",
                }[how]
                checks.append((kind, text))
            elif index > 0 and (hidden is None or hidden[index]) and len(text.strip()) >= 4:
                kind = "not_regex" if how == "starts_with_regex" else "not_contains"
                checks.append((kind, text))
    return checks


def _crisp_cases(corpus: Path) -> Iterator[Case]:
    source = "crisp-oss-email-reply-parser"
    expected = _read_json(corpus / source / "EXPECTED.json")
    common = expected["COMMON_FIRST_FRAGMENT"]
    specs: dict[str, list[dict[str, Any]]] = {}
    for spec in expected["cases"]:
        specs.setdefault(spec["fixture"], []).append(spec)
    for path in sorted((corpus / source / "test" / "fixtures").glob("*.txt")):
        fixture = str(path.relative_to(corpus / source))
        checks: list[tuple[str, str]] = []
        for spec in specs.get(fixture, []):
            checks += _crisp_checks(spec, common, path)
        yield Case(source, fixture, path, "body", tuple(dict.fromkeys(checks)))


def _crisp_checks(spec: dict[str, Any], common: str, path: Path) -> list[tuple[str, str]]:
    hidden: list[bool] | None = spec.get("fragment_hidden_list")
    flags = {(f["fragment"], f["flag"]): f["value"] for f in spec.get("fragment_flags", [])}
    checks = list(_visible_checks(spec))
    for key in ("first_fragment_equals", "first_fragment_trimmed_equals"):
        if key in spec:
            checks.append(("equals", common if spec[key] == "COMMON_FIRST_FRAGMENT" else spec[key]))
    for regex in spec.get("regex_checks", []):
        target, pattern, positive = regex["target"], regex["pattern"], regex["expected_match"]
        if target == "quoted":
            checks.append(("original_regex", pattern))
        elif target == "fragment_0":
            checks.append(("regex" if positive else "not_regex", pattern))
        else:
            index = int(target.rsplit("_", 1)[1])
            is_hidden = (hidden[index] if hidden and index < len(hidden) else None) or flags.get(
                (index, "hidden")
            )
            if is_hidden and positive:
                checks.append(("not_regex", pattern))
    if spec.get("fragment_count") == 1 and not any(kind == "equals" for kind, _ in checks):
        checks.append(("equals", path.read_text(encoding="utf-8", errors="replace")))
    return checks


def _talon_cases(corpus: Path) -> Iterator[Case]:
    source = "talon"
    root = corpus / source
    expected = _read_json(root / "EXPECTED.json")
    standard = expected["standard_replies"]["expected"]
    for path in sorted((root / "tests/fixtures/standard_replies").glob("*.eml")):
        yield Case(
            source,
            str(path.relative_to(root)),
            path,
            "message",
            (("equals", standard.get(path.name, "Hello")),),
        )
    html_text = expected["html_replies"]["expected_text"]
    for path in sorted((root / "tests/fixtures/html_replies").glob("*.html")):
        yield Case(source, str(path.relative_to(root)), path, "html", (("equals_nows", html_text),))
    fixtures = root / "tests/fixtures"
    yield Case(
        source,
        "tests/fixtures/OLK_SRC_BODY_SECTION.html",
        fixtures / "OLK_SRC_BODY_SECTION.html",
        "html",
        (("equals", "Reply"),),
    )
    yield Case(
        source,
        "tests/fixtures/reply-separated-by-hr.html",
        fixtures / "reply-separated-by-hr.html",
        "html",
        (("equals_nows", "Hithere"),),
    )
    yield Case(
        source,
        "tests/fixtures/reply-quotations-share-block.eml",
        fixtures / "reply-quotations-share-block.eml",
        "message",
        (("nonempty", ""), ("not_contains", "From")),
    )
    stripped = fixtures / "signature/emails/stripped"
    for body in sorted(stripped.glob("*_body")):
        signature = body.with_name(body.name.replace("_body", "_signature"))
        text = body.read_text(encoding="utf-8", errors="replace").strip()
        sig = signature.read_text(encoding="utf-8", errors="replace").strip()
        want = text[: len(text) - len(sig)] if sig and text.endswith(sig) else text
        yield Case(source, str(body.relative_to(root)), body, "body", (("equals", want),))
    for path in sorted((fixtures / "signature/emails/P").iterdir()):
        yield Case(source, str(path.relative_to(root)), path, "body")


def _gitlab_cases(corpus: Path) -> Iterator[Case]:
    source = "gitlab"
    root = corpus / source
    expected = {c["fixture"]: c for c in _read_json(root / "EXPECTED.json")["cases"]}
    keys = {
        "new_text": "equals",
        "expected_reply": "equals",
        "expected_reply_trimmed": "equals",
        "new_text_starts_with": "startswith",
        "new_text_decoded_starts_with": "startswith",
        "new_text_contains": "contains",
    }
    for path in sorted((root / "spec/fixtures/emails").glob("*.eml")):
        fixture = str(path.relative_to(root))
        spec = expected.get(fixture, {})
        checks = tuple((kind, spec[key]) for key, kind in keys.items() if key in spec)
        yield Case(source, fixture, path, "message", checks)


def _raw_cases(corpus: Path, source: str, folder: str) -> Iterator[Case]:
    """Raw messages without expected text: they must be read without an exception."""
    for path in sorted((corpus / source / folder).iterdir()):
        if path.is_file():
            yield Case(source, str(path.relative_to(corpus / source)), path, "message")
