"""Versioned result files: one JSON per run plus a JSONL of per-episode records.

The schema version is the first field of every result. Writes are atomic
(temporary file + rename), so a crash never leaves a half-written result, and
one run at a time holds a result path (``OutputLock``), so two runs never mix
their result and episode files.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import socket
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from talkwalk_bench.errors import BenchError, ResultFileError
from talkwalk_bench.yamlio import Strict, first_error

SCHEMA_VERSION = 1
TRACKED_PACKAGES = ("talkwalk-bench", "numpy", "scipy", "pandas", "torch", "recbole", "faiss-cpu", "transformers", "sentence-transformers", "peft", "openai")


INVALID_PREFIX = "invalid: not a finite number"


class MetricEntry(Strict):
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    reason: str | None = None  # why the value is n/a
    chance: float | None = None  # the metric's value for a system that ignores the request

    @model_validator(mode="after")
    def _finite(self) -> MetricEntry:
        # NaN/inf is no score: it would rank first or pass a gate by accident, so it is
        # recorded as n/a with the reason and every reader treats it as missing.
        if self.value is not None and not math.isfinite(self.value):
            self.reason = f"{INVALID_PREFIX} (value was {self.value})" + (f"; {self.reason}" if self.reason else "")
            self.value = None
        for attr in ("ci_low", "ci_high", "chance"):
            v = getattr(self, attr)
            if v is not None and not math.isfinite(v):
                setattr(self, attr, None)
        return self

    @property
    def invalid(self) -> bool:
        return self.value is None and (self.reason or "").startswith(INVALID_PREFIX)


class SystemInfo(Strict):
    name: str
    version: str = "0"
    args: dict[str, Any] = Field(default_factory=dict)
    capabilities: list[str] = Field(default_factory=list)
    oracle: bool = False


class TaskInfo(Strict):
    name: str
    version: int
    family: str
    spec_hash: str
    main_score: str
    spec_path: str | None = None


class DatasetInfo(Strict):
    name: str
    fingerprint: str
    n_users: int
    n_items: int
    n_interactions: int
    path: str | None = None
    # per card attribute: items whose value is missing, unknown or not a number (count, examples, the rule)
    unknown_values: dict[str, Any] | None = None


class Result(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    # degraded: it ran, but a part it depends on (the judge) gave no usable answer
    status: Literal["started", "success", "degraded", "error"]
    error: str | None = None
    run_id: str
    created_at: str
    finished_at: str | None = None
    system: SystemInfo
    task: TaskInfo
    dataset: DatasetInfo
    protocol: dict[str, Any]
    seed: int
    env: dict[str, Any]
    metrics: dict[str, MetricEntry] = Field(default_factory=dict)
    n_episodes: int = 0
    n_failed: int = 0
    # --limit N: only the first N of the task's episodes ran (a quick try, not comparable with full runs)
    limit: int | None = None
    episodes_file: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    extras: dict[str, Any] = Field(default_factory=dict)
    # what the system said of its own fit (its ``fit_info``: epochs run, training seconds, whether the
    # model came from its cache, ...); None when it says nothing or in results written before it was recorded
    fit: dict[str, Any] | None = None
    # the code that made the numbers: {revision, dirty_files, files: {relpath: sha256[:16]}, code_hash,
    # dataset_fingerprint} (talkwalk_bench/provenance.py); None in results written before it was recorded
    provenance: dict[str, Any] | None = None

    def main_value(self) -> float | None:
        m = self.metrics.get(self.task.main_score)
        return m.value if m else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    """HEAD, ``-dirty`` when anything but run outputs (results/, runs/, leaderboards/) is modified or untracked."""
    from talkwalk_bench.provenance import revision

    return revision()


def environment() -> dict[str, Any]:
    pkgs = {}
    for name in TRACKED_PACKAGES:
        try:
            pkgs[name] = version(name)
        except PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "packages": pkgs,
        "git_revision": git_revision(),
    }


def episodes_path(result_path: Path) -> Path:
    return result_path.with_name(result_path.stem + ".episodes.jsonl")


def check_writable(path: Path) -> None:
    """Fail early, before any training, if the output cannot be written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchError(f"{path}: output is not writable ({exc.strerror or exc}); choose another --output") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; outputs are read by others (CI, leaderboards) like any file
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_result(path: Path, result: Result) -> None:
    atomic_write_text(path, result.model_dump_json(indent=2) + "\n")


def read_result(path: str | Path) -> Result:
    """Read and validate a result; a one-line error names the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultFileError(f"{path}: result file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: cannot read result ({exc}); is it a result JSON?") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: corrupt result (invalid JSON at line {exc.lineno}, column {exc.colno}); rerun to regenerate it") from None
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: not a result file (top level is {type(data).__name__}, expected an object)")
    if not looks_like_result(data):
        raise ResultFileError(f"{path}: not a result file (no schema_version, status or metrics); "
                              "pass a result JSON written by `talkwalk-bench run`")
    sv = data.get("schema_version")
    if sv != SCHEMA_VERSION:
        raise ResultFileError(
            f"{path}: schema_version is {sv!r}, this talkwalk-bench reads version {SCHEMA_VERSION}; "
            "rerun the task with this version to regenerate the result"
        )
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        raise ResultFileError(f"{path}: invalid result: {first_error(exc)}; rerun to regenerate it") from None


def looks_like_result(data: Any) -> bool:
    """A JSON object with any of the keys every result version has (else it is some other JSON)."""
    return isinstance(data, dict) and any(k in data for k in ("schema_version", "status", "metrics", "run_id"))


def read_episodes(path: Path) -> list[dict[str, Any]]:
    """Per-episode records; a torn last line (crash mid-write) is ignored, other damage is an error."""
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines):
                break  # the write that was interrupted
            raise ResultFileError(f"{path}:{i}: corrupt episode record; delete the file to start over") from None
    return records


class EpisodeWriter:
    """Appends records as JSON lines, flushed and fsynced per batch."""

    def __init__(self, path: Path, keep: list[dict[str, Any]]) -> None:
        self.path = path
        # rewrite what we keep (drops failed/torn records of an earlier attempt)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
        self._fh = path.open("a", encoding="utf-8")

    def write(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self._fh.write(json.dumps(r) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def lock_path(result_path: Path) -> Path:
    return result_path.with_name(f".{result_path.name}.lock")


class OutputLock:
    """An exclusive lock on one result path, held for the whole run.

    Two runs writing one ``--output`` at once would interleave their result and
    episode files; the second fails at once with a message naming the holder.
    It is an ``flock`` on a hidden file beside the result, so the kernel drops
    it when the holder dies, ``kill -9`` included.
    """

    def __init__(self, result_path: Path, holder: dict[str, Any] | None = None) -> None:
        self.result_path = Path(result_path)
        self.path = lock_path(self.result_path)
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(), **(holder or {})}
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise BenchError(f"{self.path}: cannot lock the output ({exc.strerror}); choose another --output") from None
                holder = _read_holder(fd)
                os.close(fd)
                raise BenchError(f"{self.result_path}: another run is writing this result ({holder}); "
                                 "wait for it to finish or choose another --output") from None
            # a holder that finished unlinks the file; a lock on that old inode guards nothing
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self.holder).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it, so no one else's lock is removed
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "holder unknown"
    what = " ".join(str(info[k]) for k in ("system", "task") if info.get(k))
    return f"pid {info['pid']} on {info.get('host', '?')}" + (f", {what}" if what else "") + f", since {info.get('since', '?')}"
