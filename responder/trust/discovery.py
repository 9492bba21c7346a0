"""Which trust profile a mailbox's own mail fits: ``check --discover`` and ``init``.

The header blocks of the newest messages in the watched folder (read without a trace by
the mailbox's ``peek_headers``) are read one by one as ``check --sample`` reads a saved
file (``responder.trust.samples``); the profile most of them fit is proposed as a
``[security]`` block, with the evidence. Pure: header bytes and settings in, a report out.

Discovery proposes, the admin decides: mail whose topmost Authentication-Results was
written by someone else than the mailbox's own server (a relay, or a forger on a server
that does not remove such headers) would show as another profile, so mixed evidence is
said aloud and never chosen silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from responder.config import SecuritySettings
from responder.terminal import printable
from responder.trust.authenticity import EXCHANGE_ONLINE, GMAIL
from responder.trust.samples import INTERNAL, NOTHING, Fit, Sample, fit, read_sample

PROFILE_NAMES = {EXCHANGE_ONLINE: "Exchange Online", GMAIL: "Gmail / Google Workspace"}
# What may be proposed: a host name. The authserv-id comes from a header anyone can write,
# and the proposal goes into a config file: nothing else ever reaches it.
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}\.){0,10}[a-z0-9-]{1,63}")


@dataclass(frozen=True)
class Discovery:
    """What the newest messages show, and the ``[security]`` block they fit."""

    samples: tuple[Sample, ...]
    profile: str  # exchange-online, mx.google.com, another authserv-id, or "none"
    proposal: Fit  # the block proposed (empty when no profile fits)
    counts: tuple[tuple[str, int], ...]  # every profile seen, most frequent first
    trusted_under_proposal: int  # how many of the messages that proposal would trust
    fits_config: bool  # the current settings trust the proposal, and it trusts some mail
    # per message: why the proposal (the current settings when none) would not trust it
    refusals: tuple[str | None, ...] = ()

    @property
    def none_trusted(self) -> bool:
        """A profile fits, yet not one message would be trusted: every reply quarantined."""
        return bool(self.samples) and self.profile != NOTHING and not self.trusted_under_proposal

    def main_refusal(self) -> str:
        """The most frequent reason a message would not be trusted ("" when none)."""
        ranked = Counter(r for r in self.refusals if r).most_common(1)
        return ranked[0][0] if ranked else ""

    @property
    def mixed(self) -> bool:
        """More than one server stamped the newest messages: the admin must choose."""
        return len([p for p, _ in self.counts if p != NOTHING]) > 1

    def block(self) -> dict[str, Any]:
        """The proposal as the ``[security]`` table of a config."""
        table: dict[str, Any] = {"trusted_authserv_id": list(self.proposal.trusted_authserv_id)}
        if self.proposal.exchange_internal:
            table |= {"exchange_internal": True,
                      "internal_domains": list(self.proposal.internal_domains)}
        return table

    def as_json(self) -> dict[str, Any]:
        return {"messages": [s.as_json() for s in self.samples], "profile": self.profile,
                "counts": dict(self.counts), "mixed": self.mixed,
                "security": self.proposal.toml() if self.proposal.trusted_authserv_id else [],
                "trusted_under_proposal": self.trusted_under_proposal,
                "not_trusted": {s.name: r for s, r in zip(self.samples, self.refusals,
                                                          strict=True) if r},
                "fits_config": self.fits_config}


def _profile_of(sample: Sample) -> str:
    return sample.profile if _HOST.fullmatch(sample.profile) else NOTHING


def discover(headers: list[bytes], current: SecuritySettings) -> Discovery:
    """Read each header block (newest first) and propose the profile most of them fit."""
    samples = tuple(read_sample(f"#{n}", raw, current) for n, raw in enumerate(headers, 1))
    counts = Counter(_profile_of(s) for s in samples)
    ranked = sorted(counts.items(), key=lambda kv: (kv[0] == NOTHING, -kv[1]))
    profile = ranked[0][0] if ranked else NOTHING
    chosen = [s for s in samples if _profile_of(s) == profile]
    proposal = fit(chosen, SecuritySettings()) if profile != NOTHING else Fit()
    proposal.contradictions = []  # against an empty config: every sample "contradicts" it
    proposal.internal_domains = [d for d in proposal.internal_domains if _HOST.fullmatch(d)]
    proposal.exchange_internal = bool(proposal.internal_domains)
    proposed = proposal.settings()
    verdicts = ([read_sample(s.name, raw, proposed).verdict
                 for s, raw in zip(samples, headers, strict=True)]
                if profile != NOTHING else [s.verdict for s in samples])
    trusted = sum(v.trusted for v in verdicts) if profile != NOTHING else 0
    refusals = tuple(None if v.trusted else v.reason for v in verdicts)
    return Discovery(samples, profile, proposal, tuple(ranked), trusted,
                     _fits(current, proposal) and trusted > 0, refusals)


def _fits(current: SecuritySettings, proposal: Fit) -> bool:
    if current.policy == "off" or not proposal.trusted_authserv_id:
        return False
    named = {i.strip().lower() for i in current.trusted_authserv_id}
    domains = {d.strip().lower() for d in current.internal_domains}
    return (set(proposal.trusted_authserv_id) <= named
            and (not proposal.exchange_internal or current.exchange_internal)
            and set(proposal.internal_domains) <= domains)


def evidence_line(sample: Sample, width: int = 28, refusal: str | None = None) -> str:
    """One message in one line: who it is from, who stamped it, what it found, and
    (``refusal``) why it would not be trusted."""
    results = " ".join(r.split()[0] for r in sample.topmost_results if r.split()) or "-"
    internal = ", AuthAs Internal" if sample.fits == INTERNAL else ""
    why = f"; NOT TRUSTED: {_shown(refusal, 200)}" if refusal else ""
    return (f"  {sample.name:>3}  {_shown(sample.sender or '-', width):{width}}  "
            f"{_shown(sample.topmost, 40)}: {_shown(results, 60)}{internal}{why}")


def _shown(text: str, width: int) -> str:
    """Header text made safe for a terminal: control characters shown escaped."""
    return printable(text[:width])


def report_lines(found: Discovery, where: str) -> list[str]:
    """What ``check --discover`` prints: the evidence, the proposal, how the config fares."""
    n = len(found.samples)
    if not n:
        return [f"no messages in {where} to discover from: deliver a real reply there "
                "(or save one and use --sample), or choose the profile yourself"]
    lines = [f"the newest {n} message{'' if n == 1 else 's'} in {where} "
             "(read-only: nothing flagged, claimed or moved):"]
    width = min(max(len(s.sender or "-") for s in found.samples), 32)
    lines.append(f"  {'':>3}  {'from':{width}}  topmost Authentication-Results: results")
    refusals = found.refusals or (None,) * n
    lines += [evidence_line(s, width, r) for s, r in zip(found.samples, refusals, strict=True)]
    seen = ", ".join(f"{count} {_name(p)}" for p, count in found.counts)
    lines.append(f"stamped by: {seen}")
    if found.profile == NOTHING:
        lines.append("no profile fits: none of these messages carries Authentication-Results "
                     "a profile can trust (is a spam filter or relay in front of the server?)")
        return lines
    if found.mixed:
        lines.append("MIXED: more than one server stamped these messages; trust only the one "
                     "that delivers into this mailbox (the others may be relays or forgeries)")
    lines.append(f"they fit {_name(found.profile)}; {found.trusted_under_proposal} of {n} "
                 "would be trusted under:")
    lines += [f"  {line}" for line in found.proposal.toml()]
    if found.none_trusted:
        why = _shown(found.main_refusal(), 200)
        lines.append(f"NOT ONE of the {n} message{'' if n == 1 else 's'} would be trusted under "
                     f"it: every reply like them would be quarantined ({why}); fix what the "
                     "reason on each line says before trusting this")
        return lines
    if found.trusted_under_proposal < n:
        lines.append(f"{n - found.trusted_under_proposal} of {n} would not be trusted: the "
                     "reason is on each line marked NOT TRUSTED")
    lines.append("the current config already trusts this" if found.fits_config else
                 "the current config does not trust this yet: put the block above in it")
    return lines


def _name(profile: str) -> str:
    if profile == NOTHING:
        return "no trusted stamp"
    return PROFILE_NAMES.get(profile, f"the server {profile}")


def trust_summary(security: SecuritySettings) -> tuple[bool, str]:
    """``check``'s trust line: without any trusted stamp, unsigned replies are quarantined."""
    if security.policy == "off":
        return True, 'policy = "off": every sender is taken at their word (set on purpose)'
    if not security.trusted_authserv_id:
        return False, ("no [security] trusted_authserv_id: only replies whose DKIM signature "
                       "the responder verifies itself can be trusted, every other reply is "
                       "quarantined; find yours with: responder check --config CONFIG "
                       '--discover (or set policy = "off" on purpose behind a trusted relay)')
    named = ", ".join(_name(i.strip().lower()) for i in security.trusted_authserv_id)
    internal = (f"; Exchange internal mail from {', '.join(security.internal_domains)}"
                if security.exchange_internal else "")
    return True, f"policy {security.policy}, trusting {named}{internal}"
