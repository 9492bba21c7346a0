"""The overview's 30-day chart as plain geometry: stacked bars for an inline SVG.

No script and no chart library: the template draws one ``<rect>`` per bar segment, with
a ``<title>`` that a browser shows on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 720, 180  # the plot's size
TOP, AXIS, SIDE = 18, 20, 24  # room for the peak above, the dates below, a date's half aside
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
    labels: list[tuple[float, str]]  # x (the text's middle), under the axis (every 7th day)
    peak: int  # the tallest day's total, written above the plot
    width: int = SIDE + WIDTH + SIDE
    height: int = TOP + HEIGHT + AXIS
    baseline: int = TOP + HEIGHT


def stacked(days: Sequence[tuple[date, dict[str, int]]]) -> Chart:
    """One stacked bar per day, scaled to the busiest day; every label inside the picture."""
    peak = max((sum(counts.values()) for _, counts in days), default=0)
    slot = WIDTH / max(len(days), 1)
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for i, (day, counts) in enumerate(days):
        x, top = SIDE + i * slot + slot * 0.1, float(TOP + HEIGHT)
        for group, count in counts.items():
            if not count:
                continue
            height = HEIGHT * count / peak
            top -= height
            bars.append(Bar(round(x, 1), round(top, 1), round(slot * 0.8, 1), round(height, 1),
                            COLOURS.get(group, "#000"), f"{day:%a %d %b}: {count} {group}"))
        if (len(days) - 1 - i) % 7 == 0:  # weekly, ending on today
            labels.append((round(x + slot * 0.4, 1), f"{day:%d %b}"))
    return Chart(bars, labels, peak)
