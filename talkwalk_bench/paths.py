"""Where the harness finds its declarations (tasks, cards, suites) and writes runs."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def tasks_dir() -> Path:
    """Task specs, dataset cards and suites: $TALKWALK_TASKS_DIR or the project's tasks/."""
    return Path(os.environ.get("TALKWALK_TASKS_DIR", PROJECT_DIR / "tasks"))


def runs_dir() -> Path:
    """Default output folder for runs: $TALKWALK_RUNS_DIR or ./runs."""
    return Path(os.environ.get("TALKWALK_RUNS_DIR", "runs"))


def cache_dir() -> Path:
    """Trained-model cache: $TALKWALK_CACHE_DIR or ~/.cache/talkwalk-bench."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "talkwalk-bench"
    return Path(os.environ.get("TALKWALK_CACHE_DIR", default))
