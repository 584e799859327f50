"""Colours for systems on plots and pages: colour-blind-safe, distinct, the same system always the same colour.

Okabe & Ito's core colours, completed greedily from Paul Tol's sets and
matplotlib's tab10 so that the smallest CIE76 colour difference between any
two of the 13 stays above 13 for normal vision and under simulated
deuteranopia and protanopia (tests/test_palette.py). Past 13 systems the
colours repeat; plots also vary the marker (``MARKERS``), so no two systems
are drawn alike.
"""

from __future__ import annotations

PALETTE = [
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#000000",  # black
    "#332288",  # indigo
    "#88CCEE",  # light cyan
    "#DDCC77",  # sand
    "#882255",  # wine
    "#FFAABB",  # pink
    "#8C564B",  # brown
    "#999933",  # olive
]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*"]  # 11, coprime with 13: (colour, marker) pairs repeat only after 143 systems


def colours_for(systems: list[str]) -> dict[str, str]:
    """Colour per system in the given order (sort it once, so every page agrees)."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(systems)}


def markers_for(systems: list[str]) -> dict[str, str]:
    return {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(systems)}
