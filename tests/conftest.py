"""Shared fixtures: a tiny atomic dataset a reader can open, and isolated run/cache folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    # runs never land in the checkout during tests; model caches are shared per session
    monkeypatch.setenv("TALKWALK_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    if "TALKWALK_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("TALKWALK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model-cache"))


@pytest.fixture
def tiny_dataset() -> Path:
    """A 4-user, 6-item dataset in atomic format (tests/fixtures/tiny)."""
    return FIXTURES / "tiny"
