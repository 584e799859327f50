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


def result_path(root: Path, task: str, system: str, dataset: str, seed: int) -> Path:
    """Where a run's result lives, for ``run``, ``matrix`` and ``suite`` alike: ROOT/TASK/SYSTEM__DATASET__seedN.json."""
    return Path(root) / task / f"{system}__{dataset}__seed{seed}.json"


def legacy_result_paths(root: Path, task: str, system: str, seed: int) -> list[Path]:
    """Names earlier versions wrote (``suite`` left out the dataset); still read so old folders resume."""
    return [Path(root) / task / f"{system}__seed{seed}.json"]


def cache_dir() -> Path:
    """Trained-model cache: $TALKWALK_CACHE_DIR or ~/.cache/talkwalk-bench."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "talkwalk-bench"
    return Path(os.environ.get("TALKWALK_CACHE_DIR", default))


def safe_name(value: str, what: str) -> str:
    """A name used as a file or folder name: no separators, no ``..``, nothing hidden or empty."""
    bad = (not value or value in (".", "..") or value.startswith(".") or "/" in value or "\\" in value
           or "\0" in value or any(ord(c) < 32 for c in value))
    if bad:
        raise ValueError(f"{what} {value!r} is used as a file name: use letters, digits, '-', '_' or '.' "
                         "(no '/', '\\\\', leading '.' or '..')")
    return value


def inside(path: Path, root: Path, what: str = "output") -> Path:
    """``path``, after checking it stays under ``root`` (names from specs must not climb out of it)."""
    from talkwalk_bench.errors import BenchError

    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise BenchError(f"{path}: {what} would be written outside {root}; check the task, suite and system names")
    return path
