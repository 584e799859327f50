"""Model files are read with torch.load's weights-only unpickler: every torch this project
allows has it as the default, so a tampered cache file cannot run code."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_ONLY_DEFAULT = Version("2.6")  # the first torch whose torch.load defaults to weights_only=True


def _torch_requirements() -> list[Requirement]:
    text = (ROOT / "pyproject.toml").read_text()
    return [Requirement(m) for m in re.findall(r'"(torch(?:[<>=!~][^"]*)?)"', text)]


def test_every_allowed_torch_loads_weights_only_by_default():
    reqs = _torch_requirements()
    assert reqs, "pyproject.toml names torch"
    for req in reqs:
        spec: SpecifierSet = req.specifier
        older = [v for v in ("2.1", "2.4", "2.5", "2.5.1") if spec.contains(v, prereleases=True)]
        assert not older, f"{req} allows torch {older[0]}, where torch.load unpickles arbitrary objects by default"


def test_installed_torch_if_any_is_new_enough():
    try:
        import torch
    except ImportError:
        return
    assert Version(torch.__version__.split("+")[0]) >= WEIGHTS_ONLY_DEFAULT
