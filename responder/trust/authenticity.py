"""Whether a reply provably comes from the domain in its From: address.

Anyone can type any From: address, so the responder acts only on evidence that the
From: domain itself vouched for the message: DMARC pass, or a passing DKIM signature
whose signing domain is aligned with the From: domain. SPF alone never counts (it
vouches for the envelope sender, which need not be the From: domain).
``dmarc=bestguesspass`` and ``compauth=pass`` (Exchange Online's reputation verdicts)
are recorded as evidence but never decide.

The evidence comes from the ``Authentication-Results`` headers (RFC 8601, read by
``authresults.read``) that our own receiving server added, from Exchange Online's
internal-submission stamp (``exchange_internal``), or from our own DKIM verification
(``verify_dkim``). Everything here is pure except ``verify_dkim``, which may ask DNS.

Which Authentication-Results headers are our server's: three profiles
---------------------------------------------------------------------
``exchange-online`` (Microsoft 365) and ``mx.google.com`` (Gmail / Google Workspace):
only the literal topmost Authentication-Results counts. Exchange Online writes no
authserv-id, so position is the only anchor; ``mx.google.com`` is written by Google on
the *sending* path too, so its id alone proves nothing. If the topmost header is not the
profile's (another id, or for Exchange Online any id at all) or cannot be read, nothing
from the headers counts: we never fall through to a lower header, which the sender may
have written.

Any other id (a server of your own, "pinned"): headers are prepended as mail travels,
and a sender can write any header, including one claiming our server's id. So, reading
all header fields from the top:

1. fields before the first Authentication-Results carrying a trusted authserv-id are
   skipped (later hops: delivery agents, filters, other servers' results);
2. the *block* is the run of consecutive Authentication-Results fields carrying a
   trusted id that starts there; it ends at the first field of any other kind.
   Trusted-id headers below that point were already in the message when it reached
   us, and are ignored;
3. within the block, the topmost header that reports a method decides it: a forged
   ``dkim=pass`` under the real ``dkim=fail`` cannot override it, and a ``dmarc=fail``
   for the From: domain vetoes any DKIM pass read from the headers.

A header that does not parse is ignored, with a detail line. If its first word is a
trusted id it ends the block where it stands: we cannot tell which results below it
it would have overridden, so none of them count.

What a DKIM pass covers
-----------------------
DKIM verifies the *lowest* instance of each signed header (RFC 6376 5.4.2) and says
nothing about headers it does not sign. ``message.repeated_headers`` refuses a second
Subject/Date/Message-ID outright; here, when the trust rests on a DKIM signature, the
Subject, Date and Message-ID the responder reads must be among the headers it signs
(``h=``), and it must sign the whole body (no ``l=``). Otherwise a genuinely signed
"APPROVE" could be replayed with a new ticket, date or Message-ID.
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import dkim
import dkim.util
from publicsuffix2 import PublicSuffixList

from responder.config import SecuritySettings
from responder.trust.authresults import NO_ID, Header, Unreadable, read

_AR_HEADER = "authentication-results"
AUTHAS_HEADER = "X-MS-Exchange-Organization-AuthAs"
# The id given to results written without one, as Microsoft 365 writes them.
EXCHANGE_ONLINE = "exchange-online"
GMAIL = "mx.google.com"
TOPMOST_ONLY = frozenset({EXCHANGE_ONLINE, GMAIL})  # profiles where only the top header counts
SIGNED_FOR_READING = ("Subject", "Date", "Message-ID")  # what ticket, age and key come from


@dataclass(frozen=True)
class DkimResult:
    """One DKIM-Signature as our own verification found it."""

    domain: str
    selector: str
    passed: bool
    reason: str
    signed: tuple[str, ...] = ()  # the header names in h=, lower-case
    partial_body: bool = False  # l= given: the signature covers only part of the body


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    method: str  # "dmarc", "dkim", "dkim-verified", "exchange-internal", "policy-off", "none"
    reason: str  # one human line for the ledger and ``explain``
    details: tuple[str, ...] = ()  # the results considered, for explain/audit


@dataclass(frozen=True)
class _Result:
    """One result clause of a trusted header, reduced to what the judgement needs."""

    method: str
    result: str
    domain: str  # header.d for dkim, header.from for dmarc, smtp.mailfrom's for spf
    text: str
    b: str = ""  # header.b: the start of the signature a dkim result is about


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


def _domain_of(method: str, header: Any) -> str:
    name = _named_domain(method, header)
    return "" if name == "none" else name  # Exchange Online writes "header.d=none"


def _named_domain(method: str, header: Any) -> str:
    if method == "dmarc":
        return normalise_domain(header.prop("header.from"))
    if method == "dkim":
        signer = header.prop("header.d") or header.prop("header.i")
        return normalise_domain(signer.rpartition("@")[2])
    if method == "spf":
        return normalise_domain(header.prop("smtp.mailfrom").rpartition("@")[2])
    return ""


def report_of(header: Header) -> _Report:
    """A header as the judgement sees it; no authserv-id reads as ``exchange-online``."""
    results = tuple(
        _Result(r.method, r.result, _domain_of(r.method, r), r.text, r.prop("header.b"))
        for r in header.results
    )
    return _Report(header.authserv_id or EXCHANGE_ONLINE, results)


def _first_word(value: str) -> str:
    """The authserv-id of a header we cannot read, as far as one can tell."""
    first = value.split(";", 1)[0].strip()
    if "=" in first:
        return EXCHANGE_ONLINE
    words = first.split()
    return normalise_domain(words[0]) if words else ""


def topmost(fields: Iterable[tuple[str, str]]) -> str | None:
    """The value of the topmost Authentication-Results field, None when there is none."""
    return next((v for n, v in fields if n.strip().lower() == _AR_HEADER), None)


def describe(value: str) -> str:
    """Who wrote a header, in words: for notes and ``check --sample``."""
    try:
        header = read(value)
    except Unreadable as exc:
        return f"unreadable ({exc})"
    if header.authserv_id == NO_ID:
        return "no authserv-id (Exchange Online)"
    if header.authserv_id == EXCHANGE_ONLINE:  # the profile's name, written by someone else
        return f'a header naming "{EXCHANGE_ONLINE}" (Exchange Online names none)'
    return header.authserv_id


@dataclass(frozen=True)
class _Block:
    """Our server's headers, and a line for each header set aside and why."""

    reports: tuple[_Report, ...]
    notes: tuple[str, ...]


def trusted_block(fields: Sequence[tuple[str, str]], trusted: frozenset[str]) -> _Block:
    """The headers of our own server, under the profiles ``trusted`` names."""
    topmost_only = trusted & TOPMOST_ONLY
    pinned = trusted - TOPMOST_ONLY
    if topmost_only:
        value = topmost(fields)
        if value is None:
            return _Block((), ("no Authentication-Results at all",))
        try:
            header = read(value)
        except Unreadable as exc:
            note = (f"the topmost Authentication-Results is unreadable ({exc}), so nothing "
                    f"below it counts: {value[:120]!r}")
            return _Block((), (note,))
        report = report_of(header)
        if _written_by(header, topmost_only):
            stray = tuple(f"stray token in {report.authserv_id}'s header: {t}"
                          for t in dict.fromkeys(header.stray))
            return _Block((report,), stray)
        if not pinned:
            names = " or ".join(sorted(topmost_only))
            note = (f"the topmost Authentication-Results is from {describe(value)}, not "
                    f"{names}; headers below it do not count")
            return _Block((), (note,))
    return _pinned_block(fields, pinned)


def _written_by(header: Header, profiles: frozenset[str]) -> bool:
    """Exchange Online's header names no authserv-id: one that names "exchange-online" is
    somebody else's; Gmail's names ``mx.google.com``."""
    if header.authserv_id == NO_ID:
        return EXCHANGE_ONLINE in profiles
    return header.authserv_id in profiles - {EXCHANGE_ONLINE}


def _pinned_block(fields: Iterable[tuple[str, str]], trusted: frozenset[str]) -> _Block:
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
            report = report_of(read(value))
            authserv_id = report.authserv_id
        except Unreadable as exc:
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


# -- Exchange Online's internal submissions --------------------------------------------


@dataclass(frozen=True)
class _Internal:
    verdict: Verdict | None
    refusal: str  # why an internal claim was not accepted; "" when none was made
    lines: tuple[str, ...]  # the AuthAs headers seen, for explain


def exchange_internal(
    fields: Sequence[tuple[str, str]], domain: str, settings: SecuritySettings
) -> _Internal:
    """Trust Exchange Online's own submission authentication, under every condition:

    exactly one ``X-MS-Exchange-Organization-AuthAs`` (Exchange's header firewall strips
    it from mail arriving from outside, and writes one), saying ``Internal``; the From
    domain one of ``internal_domains``; and the topmost Authentication-Results absent or
    Exchange's own internal stamp (``dkim=none ... dmarc=none``, nothing else).
    """
    values = [v for n, v in fields if n.strip().lower() == AUTHAS_HEADER.lower()]
    lines = tuple(f"{AUTHAS_HEADER}: {' '.join(v.split())[:60]}" for v in values)
    if not values:
        return _Internal(None, "", lines)
    if not settings.exchange_internal:
        hint = ("set [security] exchange_internal = true (docs/security.md) to trust "
                "it" if len(values) == 1 and values[0].strip().lower() == "internal" else "")
        return _Internal(None, f"{AUTHAS_HEADER}: {values[0].strip()[:40]} seen; {hint}"
                         if hint else "", lines)

    def refuse(why: str) -> _Internal:
        return _Internal(None, why, lines)

    if len(values) > 1:
        return refuse(f"{len(values)} {AUTHAS_HEADER} headers (Exchange writes one; "
                      "another was put in the message)")
    said = " ".join(values[0].split())
    if said.lower() != "internal":
        return refuse(f"{AUTHAS_HEADER} is {said[:40]!r}, not Internal (mail from outside "
                      "the tenant, or Direct Send)")
    internal = {normalise_domain(d) for d in settings.internal_domains}
    if domain not in internal:
        return refuse(f"{AUTHAS_HEADER}: Internal, but {domain} is not one of "
                      "[security] internal_domains")
    problem = _not_the_internal_stamp(fields, domain)
    if problem:
        return refuse(problem)
    reason = (f"submitted inside the Exchange Online tenant ({AUTHAS_HEADER}: Internal) "
              f"from {domain}")
    return _Internal(Verdict(True, "exchange-internal", reason), "", lines)


def _not_the_internal_stamp(fields: Sequence[tuple[str, str]], domain: str) -> str:
    """'' when the topmost Authentication-Results is absent or Exchange's internal stamp."""
    value = topmost(fields)
    if value is None:
        return ""
    try:
        header = read(value)
    except Unreadable as exc:
        return f"the topmost Authentication-Results is unreadable ({exc})"
    methods = sorted(r.method for r in header.results)
    plain = all(r.result == "none" for r in header.results)
    dmarc_from = {normalise_domain(r.prop("header.from")) for r in header.results
                  if r.method == "dmarc"}
    if header.authserv_id == NO_ID and methods == ["dkim", "dmarc"] and plain \
            and dmarc_from == {domain}:
        return ""
    seen = "; ".join(r.text for r in header.results)
    return ("the topmost Authentication-Results is not Exchange Online's internal stamp "
            f"(dkim=none, dmarc=none for {domain}): {seen[:160]}")


# -- what a DKIM pass covers ----------------------------------------------------------


@dataclass(frozen=True)
class _Signature:
    domain: str
    b: str
    signed: frozenset[str]
    partial_body: bool


def _tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return {bytes(k): bytes(v) for k, v in dkim.util.parse_tag_value(value).items()}
    except Exception:  # dkimpy raises assorted errors on malformed tag lists
        return {}


def _signed_names(h: bytes) -> tuple[str, ...]:
    names = (n.strip().lower() for n in h.decode("ascii", "replace").split(":"))
    return tuple(n for n in names if n)


def signatures(fields: Iterable[tuple[str, str]]) -> list[_Signature]:
    """The DKIM-Signature headers of a message, as far as they can be read."""
    found = []
    for name, value in fields:
        if name.strip().lower() != "dkim-signature":
            continue
        tags = _tags("".join(value.split()).encode("ascii", "replace"))
        if b"d" in tags and b"h" in tags:
            domain = normalise_domain(tags[b"d"].decode("ascii", "replace"))
            b = tags.get(b"b", b"").decode("ascii", "replace")
            found.append(_Signature(domain, b, frozenset(_signed_names(tags[b"h"])), b"l" in tags))
    return found


def _covering(
    fields: Sequence[tuple[str, str]],
    verdict: Verdict,
    block: _Block,
    own: Sequence[DkimResult],
    domain: str,
) -> tuple[list[frozenset[str]], bool] | str | None:
    """The header sets of the signatures the trust rests on (and if one is partial);
    None when it rests on no signature; a reason when the signature cannot be found."""
    if verdict.method == "dkim-verified":
        passed = [r for r in own if r.passed and aligned(r.domain, domain)]
        return [frozenset(r.signed) for r in passed], any(r.partial_body for r in passed)
    if verdict.method not in ("dkim", "dmarc"):
        return None
    sigs = signatures(fields)
    _, dkims = _decisive(block.reports, "dkim")
    passes = [r for r in dkims if r.result == "pass" and aligned(r.domain, domain)]
    if passes:
        found = [s for s in sigs if any(s.domain == r.domain and s.b.startswith(r.b)
                                        for r in passes)]
        if not found:
            return (f"dkim=pass for {passes[0].domain}, but the message has no DKIM-Signature "
                    "of it to show which headers it covers")
    else:  # a DMARC pass with no DKIM pass shown: SPF, unless an aligned signature exists
        found = [s for s in sigs if aligned(s.domain, domain)]
        if not found:
            return None
    return [s.signed for s in found], any(s.partial_body for s in found)


def unsigned_reading(
    fields: Sequence[tuple[str, str]],
    verdict: Verdict,
    block: _Block,
    own: Sequence[DkimResult],
    domain: str,
) -> str | None:
    """Why the headers the responder reads are not all covered by the DKIM signature the
    trust rests on; None when they are (or when the trust rests on no signature)."""
    covering = _covering(fields, verdict, block, own, domain)
    if covering is None or isinstance(covering, str):
        return covering
    sets, partial = covering
    if partial:
        return f"the DKIM signature of {domain} covers only part of the body (l=)"
    covered = frozenset.intersection(*sets) if sets else frozenset()
    present = {n.strip().lower() for n, _ in fields}
    missing = [n for n in SIGNED_FOR_READING if n.lower() in present and n.lower() not in covered]
    if not missing:
        return None
    return (f"the DKIM signature of {domain} does not cover {', '.join(missing)}: "
            "they could have been changed after signing")


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


def _seen(block: _Block, from_domain: str) -> str:
    _, dmarc = _decisive(block.reports, "dmarc")
    _, dkims = _decisive(block.reports, "dkim")
    _, comp = _decisive(block.reports, "compauth")
    seen = [f"{r.method}={r.result}" + (f" {r.domain}" if r.domain else "")
            for r in (*dmarc, *dkims)]
    if any(r.result == "bestguesspass" for r in dmarc):
        seen.append("bestguesspass means no DMARC record, not a DMARC pass")
    seen += [f"compauth={r.result} (recorded, not decisive)" for r in comp]
    return ", ".join(seen)


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
        why = f" ({block.notes[0]})" if block.notes and "topmost" in block.notes[0] else ""
        return f"no Authentication-Results from a trusted server ({servers}){why}{checked}"
    seen = _seen(block, from_domain)
    _, dmarc = _decisive(block.reports, "dmarc")
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
    """Trust the sender only on proof from our own server's results, Exchange Online's
    internal stamp, or our own DKIM check; and only what that proof covers."""
    if settings.policy == "off":
        return Verdict(True, "policy-off", "authentication checks are off (policy = off)")
    domain = normalise_domain(from_domain)
    if not domain:
        return Verdict(False, "none", "no From: domain to authenticate")
    fields = [(str(k), str(v)) for k, v in headers.items()]
    trusted = frozenset(normalise_domain(i) for i in settings.trusted_authserv_id)
    block = trusted_block(fields, trusted)
    internal = exchange_internal(fields, domain, settings)
    details = (_header_lines(block.reports) + block.notes + internal.lines
               + _dkim_lines(dkim_results))
    verdict = (_from_headers(block, domain, settings.policy) or internal.verdict
               or _from_own_check(dkim_results, domain))
    if verdict is not None:
        unsigned = unsigned_reading(fields, verdict, block, dkim_results, domain)
        if unsigned:
            return Verdict(False, "none", unsigned, details)
        return Verdict(verdict.trusted, verdict.method, verdict.reason, details)
    reason = _why_not(block, domain, settings, own=bool(dkim_results))
    if internal.refusal:
        reason += f"; not trusted as internal: {internal.refusal}"
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
    tags = _tags(b"".join(signature.split()))
    signed, partial = _signed_names(tags.get(b"h", b"")), b"l" in tags
    kwargs = {"dnsfunc": dnsfunc} if dnsfunc is not None else {}
    try:
        passed = bool(dkim.DKIM(raw, logger=logger).verify(idx=idx, **kwargs))
    except Exception as exc:  # dkimpy raises on malformed signatures, keys and DNS
        return DkimResult(domain, selector, False, f"{type(exc).__name__}: {exc}", signed, partial)
    if passed:
        return DkimResult(domain, selector, True, "signature verified", signed, partial)
    why = "; ".join(collect.messages) or "bad signature"
    return DkimResult(domain, selector, False, why, signed, partial)


def verify_dkim(raw: bytes, dnsfunc: Callable[..., bytes | None] | None = None) -> list[DkimResult]:
    """Verify every DKIM-Signature in ``raw``; never raises (a broken one is a failure).

    ``dnsfunc(name, timeout=...)`` returns the TXT record for ``name``; the default
    asks DNS through dkimpy.
    """
    try:
        fields = dkim.DKIM(raw).headers
    except Exception:
        return []
    found = [bytes(v) for k, v in fields if bytes(k).lower() == b"dkim-signature"]
    return [_verify_one(raw, i, sig, dnsfunc) for i, sig in enumerate(found)]
