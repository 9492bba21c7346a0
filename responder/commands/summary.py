"""One line that sums up a pass, as ``once`` and ``demo`` print it."""

from __future__ import annotations

from typing import Any


def counts(messages: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in messages:
        counts[m["outcome"]] = counts.get(m["outcome"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def once_summary(messages: list[dict[str, Any]], sent: int, unsent: int,
                 errors: list[str], digests: int = 0) -> str:
    """``3 messages: 2 approved, 1 pending (Halo unavailable); 2 answers sent``; a digest
    is one email answering several replies, so it is named: ``(1 a digest)``."""
    parts = []
    for outcome, n in counts(messages).items():
        part = f"{n} {outcome}"
        if outcome in ("pending", "failed"):  # why, in short: the reason up to its detail
            causes = {m["reason"].split(":")[0].split(",")[0].strip()
                      for m in messages if m["outcome"] == outcome}
            part += f" ({', '.join(sorted(causes))})"
        parts.append(part)
    n = len(messages)
    line = f"{n} message{'' if n == 1 else 's'}"
    line += f": {', '.join(parts)}" if parts else ""
    line += f"; {sent} answer{'' if sent == 1 else 's'} sent"
    if digests:
        line += f" ({digests} {'a digest' if digests == 1 else 'of them digests'})"
    if unsent:
        line += f", {unsent} not sent yet (retried next pass)"
    if errors:
        line += f"; the pass failed: {'; '.join(errors)}"
    return line
