"""Persistent judge cache: one sqlite file, keyed by (endpoint, model, rubric version, prompt hash).

Only successful judgments are stored, so a rerun retries earlier failures
and never pays for earlier successes. A file that is not a readable cache is
renamed aside (``*.corrupt-<time>``) and a fresh one is built; the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from talkwalk_bench.paths import cache_dir

log = logging.getLogger(__name__)

SCHEMA = "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, endpoint TEXT, model TEXT, rubric TEXT, value TEXT NOT NULL, created REAL)"


def default_cache_path() -> Path:
    return cache_dir() / "judge" / "cache.sqlite"


def cache_key(endpoint: str, model: str, rubric_id: str, temperature: float, messages: list[dict[str, str]]) -> str:
    prompt = json.dumps({"messages": messages, "temperature": temperature}, sort_keys=True)
    prompt_hash = hashlib.sha256(prompt.encode()).hexdigest()
    return hashlib.sha256(f"{endpoint}\x00{model}\x00{rubric_id}\x00{prompt_hash}".encode()).hexdigest()


class JudgeCache:
    """Thread-safe; one connection guarded by a lock (sqlite writes are tiny)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.set_aside: Path | None = None
        self._lock = threading.Lock()
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.path.replace(aside)
            self.set_aside = aside
            log.warning("judge cache %s is not readable (%s); moved to %s and rebuilt", self.path, exc, aside)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            conn.execute(SCHEMA)
            conn.execute("SELECT count(*) FROM judgments").fetchone()
            conn.commit()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            try:
                row = self._conn.execute("SELECT value FROM judgments WHERE key = ?", (key,)).fetchone()
            except sqlite3.DatabaseError as exc:
                log.warning("judge cache read failed (%s); treating as a miss", exc)
                return None
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any], *, endpoint: str, model: str, rubric: str) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?)",
                    (key, endpoint, model, rubric, json.dumps(value), time.time()),
                )
                self._conn.commit()
            except sqlite3.DatabaseError as exc:
                log.warning("judge cache write failed (%s); the judgment is not cached", exc)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
