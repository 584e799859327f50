"""Suites: a YAML list of (task, systems) pairs run over seeds, then one leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from talkwalk_bench.errors import SpecError, UnknownNameError
from talkwalk_bench.paths import tasks_dir
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.yamlio import load_model


class SuiteRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    systems: list[str]
    system_args: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    dataset: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0])
    runs: list[SuiteRun]


def suite_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted((tasks_dir() / "suites").glob("*.yaml"))}


def load_suite(ref: str) -> Suite:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_model(Suite, p, SpecError)
    files = suite_files()
    if ref not in files:
        names = sorted(files)
        raise UnknownNameError(f"unknown suite '{ref}'.{did_you_mean(ref, names)} Known suites: {', '.join(names)}")
    return load_model(Suite, files[ref], SpecError)
