"""``responder check --sample FILE ...``: does the trust config fit this tenant's real mail?

The admin saves a real internal and a real external reply (an .eml from Outlook or
Gmail). For each, this shows the authentication evidence the responder sees, the
verdict under the current ``[security]`` settings, and which profile the sample fits;
where the samples contradict the config, it says which settings they fit. Pure (bytes
and settings in, a report out); no DNS, so our own DKIM check is not run here.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
from dataclasses import dataclass, field
from typing import Any

from responder.config import SecuritySettings
from responder.reading.message import read_sender, repeated_headers
from responder.trust.authenticity import (
    AUTHAS_HEADER,
    EXCHANGE_ONLINE,
    GMAIL,
    Verdict,
    describe,
    judge,
    normalise_domain,
    signatures,
    topmost,
)
from responder.trust.authresults import NO_ID, Unreadable, read

INTERNAL = "exchange-internal"  # the profile of a sample Exchange marked internal
NOTHING = "none"  # a sample no profile can authenticate from its headers


@dataclass(frozen=True)
class Sample:
    """What one saved message shows, and how the current config judges it."""

    name: str
    sender: str | None
    topmost: str  # who wrote the topmost Authentication-Results, in words
    topmost_results: tuple[str, ...]
    authas: tuple[str, ...]
    arc: bool
    dkim: tuple[str, ...]
    repeated: tuple[str, ...]
    fits: str  # exchange-online, exchange-internal, mx.google.com, another id, or none
    verdict: Verdict

    @property
    def profile(self) -> str:
        """The profile to trust: Exchange Online also for mail Exchange marked internal."""
        return EXCHANGE_ONLINE if self.fits == INTERNAL else self.fits

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "verdict"}
        data["verdict"] = {"trusted": self.verdict.trusted, "method": self.verdict.method,
                           "reason": self.verdict.reason}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


@dataclass
class Fit:
    """The settings the samples fit, and where the current config contradicts them."""

    trusted_authserv_id: list[str] = field(default_factory=list)
    exchange_internal: bool = False
    internal_domains: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)

    def settings(self) -> SecuritySettings:
        """The fit as ``[security]`` settings (the config's other keys at their defaults)."""
        return SecuritySettings(trusted_authserv_id=tuple(self.trusted_authserv_id),
                                exchange_internal=self.exchange_internal,
                                internal_domains=tuple(self.internal_domains))

    def toml(self) -> list[str]:
        lines = ["[security]", "trusted_authserv_id = [" + ", ".join(
            f'"{i}"' for i in self.trusted_authserv_id) + "]"]
        if self.exchange_internal:
            lines += ["exchange_internal = true", "internal_domains = [" + ", ".join(
                f'"{d}"' for d in self.internal_domains) + "]"]
        return lines


def read_sample(name: str, raw: bytes, settings: SecuritySettings) -> Sample:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    fields = [(str(k), str(v)) for k, v in msg.items()]
    sender, _ = read_sender(msg)
    domain = sender.rpartition("@")[2] if sender else ""
    top = topmost(fields)
    results: tuple[str, ...] = ()
    if top is not None:
        with contextlib.suppress(Unreadable):
            results = tuple(r.text for r in read(top).results)
    authas = tuple(" ".join(v.split()) for n, v in fields if n.lower() == AUTHAS_HEADER.lower())
    dkim = tuple(f"d={s.domain} h={':'.join(sorted(s.signed))}" + (" l=" if s.partial_body else "")
                 for s in signatures(fields))
    repeated = repeated_headers(msg)
    if repeated:
        verdict = Verdict(False, "none", f"more than one {', '.join(repeated)} header: quarantined")
    elif not domain:
        verdict = Verdict(False, "none", "no single From: address")
    else:
        verdict = judge(msg, domain, settings)
    return Sample(
        name=name,
        sender=sender,
        topmost="absent" if top is None else describe(top),
        topmost_results=results,
        authas=authas,
        arc=any(n.lower() == "arc-authentication-results" for n, _ in fields),
        dkim=dkim,
        repeated=repeated,
        fits=_profile(top, authas),
        verdict=verdict,
    )


def _profile(top: str | None, authas: tuple[str, ...]) -> str:
    """The profile whose assumptions one sample fits."""
    internal = len(authas) == 1 and authas[0].lower() == "internal"
    if top is None:
        return INTERNAL if internal else NOTHING
    try:
        header = read(top)
    except Unreadable:
        return NOTHING
    if header.authserv_id != NO_ID:
        return header.authserv_id
    stamp = sorted(f"{r.method}={r.result}" for r in header.results) == ["dkim=none", "dmarc=none"]
    return INTERNAL if internal and stamp else EXCHANGE_ONLINE


def fit(samples: list[Sample], settings: SecuritySettings) -> Fit:
    """The settings every sample fits, and each way the current config contradicts them."""
    found = Fit()
    trusted = {normalise_domain(i) for i in settings.trusted_authserv_id}
    for sample in samples:
        profile = sample.profile
        if profile != NOTHING and profile not in found.trusted_authserv_id:
            found.trusted_authserv_id.append(profile)
        if sample.fits == INTERNAL:
            found.exchange_internal = True
            domain = (sample.sender or "").rpartition("@")[2]
            if domain and domain not in found.internal_domains:
                found.internal_domains.append(domain)
        found.contradictions += _contradictions(sample, settings, trusted)
    if EXCHANGE_ONLINE in found.trusted_authserv_id and GMAIL in found.trusted_authserv_id:
        found.contradictions.append("the samples come from both Exchange Online and Gmail: "
                                    "save them from the approvals mailbox itself")
    return found


def _contradictions(sample: Sample, settings: SecuritySettings, trusted: set[str]) -> list[str]:
    said: list[str] = []
    profile = sample.profile
    if sample.fits == NOTHING:
        own = (" (it is DKIM-signed: the service's own DKIM check, not run here, may)"
               if sample.dkim else "")
        said.append(f"{sample.name}: its topmost Authentication-Results is {sample.topmost}; "
                    f"no profile can authenticate it from its headers{own}")
    elif profile not in trusted:
        said.append(f"{sample.name}: stamped by {profile}, which trusted_authserv_id does "
                    "not name")
    if sample.fits == INTERNAL and not settings.exchange_internal:
        said.append(f"{sample.name}: Exchange marked it internal, and exchange_internal is off")
    domain = normalise_domain((sample.sender or "").rpartition("@")[2])
    internal = {normalise_domain(d) for d in settings.internal_domains}
    if sample.fits == INTERNAL and settings.exchange_internal and domain not in internal:
        said.append(f"{sample.name}: {domain} is not in internal_domains")
    return said


def report_lines(samples: list[Sample], found: Fit) -> list[str]:
    """The text ``responder check --sample`` prints."""
    lines: list[str] = []
    for s in samples:
        lines += [
            f"sample {s.name}",
            f"  from            {s.sender or '-'}",
            f"  topmost A-R     {s.topmost}",
            *(f"                  {r}" for r in s.topmost_results),
            f"  AuthAs          {', '.join(s.authas) or '-'}",
            f"  ARC-A-R         {'present (never counts)' if s.arc else '-'}",
            f"  DKIM-Signature  {'; '.join(s.dkim) or '-'}",
            *([f"  repeated        {', '.join(s.repeated)}"] if s.repeated else []),
            f"  fits profile    {s.fits}",
            f"  verdict         {'trusted' if s.verdict.trusted else 'NOT trusted'}"
            f" ({s.verdict.method}): {s.verdict.reason}",
        ]
    if not found.contradictions:
        lines.append("config: the samples fit the current [security] settings")
        return lines
    lines.append("config: the samples contradict the current [security] settings:")
    lines += [f"  - {c}" for c in found.contradictions]
    if found.trusted_authserv_id:
        lines.append("they fit:")
        lines += [f"  {line}" for line in found.toml()]
    return lines
