"""Whether a reply provably comes from the domain in its From: address.

Anyone can type any From: address, so the responder acts only on evidence that the
From: domain itself vouched for the message: DMARC pass, or a passing DKIM signature
whose signing domain is aligned with the From: domain. SPF alone never counts (it
vouches for the envelope sender, which need not be the From: domain).

The evidence comes from the ``Authentication-Results`` headers (RFC 8601) that our own
receiving server added, or from our own DKIM verification (``verify_dkim``) where the
server adds none. Everything here is pure except ``verify_dkim``, which may ask DNS.

Which Authentication-Results headers are our server's
-----------------------------------------------------
Headers are prepended as mail travels, and a sender can write any header, including
one that claims our server's authserv-id. So, reading all header fields from the top:

1. fields before the first Authentication-Results carrying a trusted authserv-id are
   skipped (later hops: delivery agents, filters, other servers' results);
2. the *block* is the run of consecutive Authentication-Results fields carrying a
   trusted id that starts there; it ends at the first field of any other kind
   (a Received:, another server's results, anything). Trusted-id headers below that
   point were already in the message when it reached us, and are ignored;
3. within the block, the topmost header that reports a method decides it: a forged
   ``dkim=pass`` placed directly under the real header cannot override the real
   ``dkim=fail``, and a ``dmarc=fail`` for the From: domain vetoes any DKIM pass read
   from the headers (the two contradict each other, so one was forged).

A header that does not parse is ignored, with a detail line. If its first word is a
trusted id it ends the block where it stands: we cannot tell which results below it
it would have overridden, so none of them count.

All this is sound only when the trusted server always adds its results (and ideally
removes forged ones, as RFC 8601 section 5 asks); configure its id only then.

Microsoft 365 (Exchange Online Protection) writes its results without an authserv-id
(``Authentication-Results: spf=pass (sender IP is ...) ...;dmarc=pass action=none
header.from=example.com;compauth=pass reason=100``), which RFC 8601 does not allow. Such
a header is read as written by ``exchange-online`` (``EXCHANGE_ONLINE``), and so counts
only where ``trusted_authserv_id`` names that id, under the same rules as any other.
"""

from __future__ import annotations

import email.message
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import authres
import authres.dmarc
import dkim
import dkim.util
from publicsuffix2 import PublicSuffixList

from responder.config import SecuritySettings

_AR_HEADER = "authentication-results"
_FEATURES = authres.FeatureContext(authres.dmarc)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# The id given to results written without one, as Microsoft 365 writes them.
EXCHANGE_ONLINE = "exchange-online"
# A header whose first clause is already "method=result" names no authserv-id.
_NO_AUTHSERV_ID = re.compile(r"^\s*[A-Za-z0-9_-]+\s*=")


@dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature as our own verification found it."""

    domain: str
    selector: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    method: str  # "dmarc", "dkim", "dkim-verified", "policy-off", "none"
    reason: str  # one human line for the ledger and ``explain``
    details: tuple[str, ...] = ()  # the results considered, for explain/audit


@dataclass(frozen=True)
class _Result:
    """One result clause of a trusted header, reduced to what the judgement needs."""

    method: str
    result: str
    domain: str  # header.d for dkim, header.from for dmarc; "" where absent
    text: str


@dataclass(frozen=True)
class _Report:
    """One Authentication-Results header added by a trusted server."""

    authserv_id: str
    results: tuple[_Result, ...]


# -- domains ------------------------------------------------------------------------


def normalise_domain(domain: str) -> str:
    """Lower-case, without a trailing dot, in A-labels: how DKIM ``d=`` writes it."""
    name = domain.strip().rstrip(".").lower()
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organisational_domain(domain: str) -> str | None:
    """The registered domain (RFC 7489 3.2): the public suffix plus one label.

    ``None`` for a name that is not a domain at all (empty labels). A name that is
    itself a public suffix is its own organisational domain, so it aligns only with
    itself.
    """
    name = normalise_domain(domain)
    labels = name.split(".")
    if not name or "" in labels:
        return None
    suffix = str(_suffixes().get_tld(name) or labels[-1])
    depth = suffix.count(".") + 1
    return ".".join(labels[-(depth + 1) :]) if len(labels) > depth else name


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment: both names share one organisational domain."""
    org = organisational_domain(from_domain)
    return org is not None and org == organisational_domain(signing_domain)


# -- reading Authentication-Results ---------------------------------------------------


def _property(result: Any, ptype: str, name: str) -> str:
    for prop in getattr(result, "properties", ()):
        if prop.type == ptype and prop.name == name and prop.value:
            return str(prop.value)
    return ""


def _domain_of(result: Any, method: str) -> str:
    if method == "dmarc":
        return normalise_domain(_property(result, "header", "from"))
    if method == "dkim":
        signer = _property(result, "header", "d") or _property(result, "header", "i")
        return normalise_domain(signer.rpartition("@")[2])
    return ""


def _reduce(result: Any) -> _Result:
    method = str(result.method).lower()
    return _Result(method, str(result.result).lower(), _domain_of(result, method), str(result))


def _parse(value: str) -> _Report:
    """Parse one header value; raises whatever authres raises on text it cannot read."""
    value = _FOLD.sub("", value).replace("\r", "").replace("\n", " ")
    if _NO_AUTHSERV_ID.match(value):  # Microsoft 365's form, often with a trailing ";"
        value = f"{EXCHANGE_ONLINE}; " + value.rstrip().rstrip(";")
    header = _FEATURES.parse_value(value)
    results = tuple(_reduce(r) for r in header.results)
    return _Report(str(header.authserv_id).lower(), results)


def _first_word(value: str) -> str:
    """The authserv-id of a header authres cannot read, as far as one can tell."""
    if _NO_AUTHSERV_ID.match(value):
        return EXCHANGE_ONLINE
    words = value.split(";", 1)[0].split()
    return normalise_domain(words[0]) if words else ""


@dataclass(frozen=True)
class _Block:
    """Our server's headers, and a line for each header set aside and why."""

    reports: tuple[_Report, ...]
    notes: tuple[str, ...]


def trusted_block(fields: Iterable[tuple[str, str]], trusted: frozenset[str]) -> _Block:
    """The topmost run of trusted Authentication-Results (see the module docstring)."""
    reports: list[_Report] = []
    notes: list[str] = []
    started = ended = False
    for name, value in fields:
        if name.strip().lower() != _AR_HEADER:
            ended = ended or started
            continue
        report: _Report | None = None
        try:
            report = _parse(value)
            authserv_id = report.authserv_id
        except Exception as exc:  # authres raises assorted errors on hostile text
            authserv_id = _first_word(value)
            notes.append(f"unreadable Authentication-Results ignored ({exc}): {value[:120]!r}")
        if authserv_id not in trusted:
            ended = ended or started
            if report is not None:
                notes.append(f"ignored: Authentication-Results from untrusted {authserv_id}")
        elif ended:
            notes.append(f"ignored: {authserv_id} header below our server's own: {value[:120]!r}")
        elif report is None:  # we cannot tell what it overrides, so nothing below counts
            started = ended = True
        else:
            started = True
            reports.append(report)
    return _Block(tuple(reports), tuple(notes))


def _decisive(reports: Sequence[_Report], method: str) -> tuple[str, tuple[_Result, ...]]:
    """The results for one method from the topmost report that has any; lower ones lose."""
    for report in reports:
        found = tuple(r for r in report.results if r.method == method)
        if found:
            return report.authserv_id, found
    return "", ()


# -- judging ------------------------------------------------------------------------


def _header_lines(reports: Sequence[_Report]) -> tuple[str, ...]:
    return tuple(f"{rep.authserv_id}: {r.text}" for rep in reports for r in rep.results)


def _dkim_lines(results: Sequence[DkimResult]) -> tuple[str, ...]:
    return tuple(
        f"own DKIM check: d={r.domain} s={r.selector} "
        + ("pass" if r.passed else f"fail ({r.reason})")
        for r in results
    )


def _from_headers(block: _Block, from_domain: str, policy: str) -> Verdict | None:
    """A trusting verdict from our server's results, or None when they do not prove it."""
    dmarc_id, dmarc = _decisive(block.reports, "dmarc")
    for r in dmarc:
        if policy == "require" and r.result == "pass" and r.domain == from_domain:
            return Verdict(True, "dmarc", f"dmarc=pass for {from_domain} ({dmarc_id})")
    if any(r.result == "fail" and r.domain == from_domain for r in dmarc):
        return None  # a DKIM pass below contradicts our server's own DMARC verdict
    dkim_id, dkims = _decisive(block.reports, "dkim")
    for r in dkims:
        if r.result == "pass" and aligned(r.domain, from_domain):
            reason = f"dkim=pass for {r.domain}, aligned with {from_domain} ({dkim_id})"
            return Verdict(True, "dkim", reason)
    return None


def _from_own_check(results: Sequence[DkimResult], from_domain: str) -> Verdict | None:
    for r in results:
        if r.passed and aligned(r.domain, from_domain):
            reason = f"own DKIM check passed for {r.domain}, aligned with {from_domain}"
            return Verdict(True, "dkim-verified", reason)
    return None


def _why_not(block: _Block, from_domain: str, settings: SecuritySettings, own: bool) -> str:
    """One line telling the admin why the sender is not trusted."""
    needed = "aligned DKIM pass" if settings.policy == "dkim-only" else "DMARC or aligned DKIM pass"
    if not settings.trusted_authserv_id:
        if own:
            return (
                f"no {needed} for {from_domain}: own DKIM check found no aligned valid "
                "signature, and no [security] trusted_authserv_id is set"
            )
        return (
            f"cannot authenticate {from_domain}: set [security] trusted_authserv_id to the "
            "authserv-id your mail server writes in Authentication-Results, or "
            'policy = "off" behind a trusted relay'
        )
    if not block.reports:
        servers = ", ".join(settings.trusted_authserv_id)
        checked = "; own DKIM check found no aligned valid signature" if own else ""
        return f"no Authentication-Results from a trusted server ({servers}){checked}"
    _, dmarc = _decisive(block.reports, "dmarc")
    _, dkims = _decisive(block.reports, "dkim")
    seen = ", ".join(
        f"{r.method}={r.result}" + (f" {r.domain}" if r.domain else "") for r in (*dmarc, *dkims)
    )
    if any(r.result == "pass" and r.domain == from_domain for r in dmarc) and not own:
        seen += "; dmarc=pass alone is not enough under policy dkim-only"
    return f"no {needed} for {from_domain} ({seen or 'no dmarc or dkim results'})"


def judge(
    headers: email.message.Message,
    from_domain: str,
    settings: SecuritySettings,
    *,
    dkim_results: Sequence[DkimResult] = (),
) -> Verdict:
    """Trust the sender only on proof from our own server's results or our own DKIM check."""
    if settings.policy == "off":
        return Verdict(True, "policy-off", "authentication checks are off (policy = off)")
    domain = normalise_domain(from_domain)
    if not domain:
        return Verdict(False, "none", "no From: domain to authenticate")
    trusted = frozenset(normalise_domain(i) for i in settings.trusted_authserv_id)
    block = trusted_block(((str(k), str(v)) for k, v in headers.items()), trusted)
    details = _header_lines(block.reports) + block.notes + _dkim_lines(dkim_results)
    verdict = _from_headers(block, domain, settings.policy) or _from_own_check(dkim_results, domain)
    if verdict is not None:
        return Verdict(verdict.trusted, verdict.method, verdict.reason, details)
    reason = _why_not(block, domain, settings, own=bool(dkim_results))
    return Verdict(False, "none", reason, details)


# -- our own DKIM verification (the one place that may do DNS) -------------------------


class _Collect(logging.Handler):
    """Keeps what dkimpy logs, which is the only place it says why a key failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _tag(signature: bytes, tag: bytes) -> str:
    try:
        value = dkim.util.parse_tag_value(signature).get(tag, b"")
    except Exception:
        return ""
    return bytes(value).decode("ascii", "replace").strip()


def _verify_one(raw: bytes, idx: int, signature: bytes, dnsfunc: Any) -> DkimResult:
    collect = _Collect()
    logger = logging.Logger("responder.dkim", logging.WARNING)  # private, never propagates
    logger.addHandler(collect)
    domain, selector = normalise_domain(_tag(signature, b"d")), _tag(signature, b"s")
    kwargs = {"dnsfunc": dnsfunc} if dnsfunc is not None else {}
    try:
        passed = bool(dkim.DKIM(raw, logger=logger).verify(idx=idx, **kwargs))
    except Exception as exc:  # dkimpy raises on malformed signatures, keys and DNS
        return DkimResult(domain, selector, False, f"{type(exc).__name__}: {exc}")
    if passed:
        return DkimResult(domain, selector, True, "signature verified")
    return DkimResult(domain, selector, False, "; ".join(collect.messages) or "bad signature")


def verify_dkim(raw: bytes, dnsfunc: Callable[..., bytes | None] | None = None) -> list[DkimResult]:
    """Verify every DKIM-Signature in ``raw``; never raises (a broken one is a failure).

    ``dnsfunc(name, timeout=...)`` returns the TXT record for ``name``; the default
    asks DNS through dkimpy.
    """
    try:
        fields = dkim.DKIM(raw).headers
    except Exception:
        return []
    signatures = [bytes(v) for k, v in fields if bytes(k).lower() == b"dkim-signature"]
    return [_verify_one(raw, i, sig, dnsfunc) for i, sig in enumerate(signatures)]
