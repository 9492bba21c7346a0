"""The overview's 30-day chart as plain geometry: stacked bars for an inline SVG.

No script and no chart library: the template draws one ``<rect>`` per bar segment, with
a ``<title>`` that a browser shows on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT, AXIS = 720, 180, 20  # the plot's size and the room left for labels below
COLOURS = {
    "approved": "#2e7d32",
    "rejected": "#c62828",
    "unmatched": "#f9a825",
    "quarantined": "#6a1b9a",
    "failed": "#37474f",
    "ignored": "#90a4ae",
}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    labels: list[tuple[float, str]]  # x, text under the axis (every 7th day)
    peak: int  # the tallest day's total, written at the top
    width: int = WIDTH
    height: int = HEIGHT + AXIS
    baseline: int = HEIGHT


def stacked(days: Sequence[tuple[date, dict[str, int]]]) -> Chart:
    """One stacked bar per day, scaled to the busiest day."""
    peak = max((sum(counts.values()) for _, counts in days), default=0)
    slot = WIDTH / max(len(days), 1)
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for i, (day, counts) in enumerate(days):
        x, top = i * slot + slot * 0.1, float(HEIGHT)
        for group, count in counts.items():
            if not count:
                continue
            height = (HEIGHT - 10) * count / peak
            top -= height
            bars.append(Bar(round(x, 1), round(top, 1), round(slot * 0.8, 1), round(height, 1),
                            COLOURS.get(group, "#000"), f"{day:%a %d %b}: {count} {group}"))
        if (len(days) - 1 - i) % 7 == 0:  # weekly, ending on today
            labels.append((round(x, 1), f"{day:%d %b}"))
    return Chart(bars, labels, peak)
