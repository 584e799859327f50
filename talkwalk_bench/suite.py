"""Suites: a YAML list of (task, systems) pairs run over seeds, then one leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from talkwalk_bench.errors import BenchError, SpecError, UnknownNameError
from talkwalk_bench.paths import safe_name, tasks_dir
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.yamlio import load_model


class SuiteRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    systems: list[str]
    system_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[int] | None = None  # this run's seeds; default: the suite's

    @field_validator("seeds")
    @classmethod
    def _run_seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(s < 0 or s >= 2**32 for s in v)):
            raise ValueError("seeds must be a non-empty list of whole numbers from 0 to 2**32 - 1")
        return v

    @field_validator("task")
    @classmethod
    def _task_file_name(cls, v: str) -> str:
        p = Path(v)
        safe_name(p.stem if p.suffix in (".yaml", ".yml") else v, "task name")  # it names a results folder
        return v

    @field_validator("systems")
    @classmethod
    def _file_names(cls, v: list[str]) -> list[str]:
        return [safe_name(s, "system name") for s in v]  # each names a result file

    @property
    def task_dir(self) -> str:
        """The folder of this task's results: the task name, or a spec file's stem."""
        p = Path(self.task)
        return p.stem if p.suffix in (".yaml", ".yml") else self.task


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    dataset: str | None = None
    seeds: list[int] = Field(default_factory=lambda: [0])
    runs: list[SuiteRun]

    @field_validator("name")
    @classmethod
    def _file_name(cls, v: str) -> str:
        return safe_name(v, "suite name")  # it names the default output folder

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or any(s < 0 or s >= 2**32 for s in v):
            raise ValueError("seeds must be a non-empty list of whole numbers from 0 to 2**32 - 1")
        return v


def check_references(suite: Suite, where: str | Path = "") -> None:
    """What a suite names exists: each task loads (its metrics checked), each system is registered, each
    system_args entry belongs to one of the run's systems and has the factory's types."""
    from talkwalk_bench.registry import SYSTEMS, resolve_system_args
    from talkwalk_bench.tasks.spec import load_spec

    prefix = f"{where or suite.name}: "
    for i, run in enumerate(suite.runs):
        try:
            load_spec(run.task)
            for system in run.systems:
                SYSTEMS.entry(system)
            for system, args in run.system_args.items():
                if system not in run.systems:
                    raise SpecError(f"system_args names '{system}', which this run does not list in systems")
                resolve_system_args(system, args)
        except BenchError as exc:
            raise SpecError(f"{prefix}runs[{i}] ({run.task}): {exc}") from None


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
