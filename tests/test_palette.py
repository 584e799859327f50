"""System colours stay apart for normal vision and under simulated red-green colour-vision deficiency."""

from __future__ import annotations

import itertools

import numpy as np

from talkwalk_bench.palette import MARKERS, PALETTE, colours_for, markers_for

# Machado, Oliveira & Fernandes (2009), severity 1, on linear RGB
DEUTAN = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]])
PROTAN = np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]])


def _linear(hex_colour: str) -> np.ndarray:
    c = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


def _lab(rgb: np.ndarray) -> np.ndarray:
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_pair_of_colours_differs_for_normal_and_red_green_deficient_vision():
    for sim in (np.eye(3), DEUTAN, PROTAN):
        labs = [_lab(np.clip(sim @ _linear(c), 0, 1)) for c in PALETTE]
        worst = min(np.linalg.norm(a - b) for a, b in itertools.combinations(labs, 2))
        assert worst > 13, f"two colours are within deltaE {worst:.1f}"


def test_thirteen_systems_get_thirteen_colours_and_markers_repeat_only_with_new_colours():
    systems = [f"s{i}" for i in range(13)]
    assert len(set(colours_for(systems).values())) == 13 == len(PALETTE)
    many = [f"s{i}" for i in range(20)]
    pairs = {(colours_for(many)[s], markers_for(many)[s]) for s in many}
    assert len(pairs) == 20 and len(MARKERS) == 11
