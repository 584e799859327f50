"""Task specs: strict YAML declarations (unknown keys rejected) with an ``include:`` base."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from talkwalk_bench.errors import SpecError, UnknownNameError
from talkwalk_bench.paths import safe_name, tasks_dir
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.yamlio import Strict, read_yaml, validate


class SplitSpec(Strict):
    kind: Literal["loo"] = "loo"
    stage: Literal["test", "valid"] = "test"


class BootstrapSpec(Strict):
    n_resamples: int = Field(2000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)


class GateSpec(Strict):
    metrics: list[str] = Field(default_factory=list)  # empty: the main score
    tolerance: float = Field(0.02, ge=0.0)  # absolute, unless a calibrated file overrides it


class TaskSpec(Strict):
    name: str
    version: int = 1
    description: str = ""
    family: str
    dataset: str = "ml-100k"
    split: SplitSpec = Field(default_factory=SplitSpec)
    k: list[int] = Field(default_factory=lambda: [10])
    metrics: list[str] = Field(default_factory=list)
    main_score: str
    episodes: dict[str, Any] = Field(default_factory=dict)  # family-specific, validated by the family
    batch_size: int = Field(256, ge=1)
    bootstrap: BootstrapSpec = Field(default_factory=BootstrapSpec)
    gate: GateSpec = Field(default_factory=GateSpec)

    @field_validator("name")
    @classmethod
    def _file_name(cls, v: str) -> str:
        return safe_name(v, "task name")  # it names the run's output folder

    @field_validator("k")
    @classmethod
    def _positive_k(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("k must be a non-empty list of positive cutoffs")
        return sorted(set(v))

    @model_validator(mode="after")
    def _gate_default(self) -> TaskSpec:
        if not self.gate.metrics:
            self.gate.metrics = [self.main_score]
        return self

    @property
    def k_max(self) -> int:
        return max(self.k)

    def spec_hash(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_with_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise SpecError(f"{path}: include cycle ({' -> '.join(str(p) for p in seen + (path,))}); remove one include")
    data = read_yaml(path, SpecError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    inc = data.pop("include", None)
    if inc is None:
        return data
    if not isinstance(inc, str):
        raise SpecError(f"{path}: include: expected a file name, found {type(inc).__name__}")
    base = _read_with_includes((path.parent / inc).resolve(), seen + (path,))
    return _merge(base, data)


def spec_files() -> dict[str, Path]:
    """Task name -> spec file, for every spec in the tasks folder."""
    folder = tasks_dir()
    out = {}
    for p in sorted(folder.glob("*.yaml")):
        if p.name.startswith("_"):
            continue  # shared bases, only included
        out[p.stem] = p
    return out


def load_spec_file(path: Path) -> TaskSpec:
    data = _read_with_includes(Path(path).resolve())
    spec = validate(TaskSpec, data, path, SpecError)
    from talkwalk_bench.tasks.base import FAMILIES  # a spec names a family that must exist

    if spec.family not in FAMILIES:
        names = FAMILIES.names()
        raise SpecError(f"{path}: family: unknown family '{spec.family}'.{did_you_mean(spec.family, names)} Known: {', '.join(names)}")
    family = FAMILIES.get(spec.family)
    family.parse_params(spec, path)
    family.check_metrics(spec, path)
    return spec


def load_spec(ref: str) -> tuple[TaskSpec, Path]:
    """A task name (from the tasks folder) or a path to a YAML spec."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_spec_file(p), p
    files = spec_files()
    if ref not in files:
        names = sorted(files)
        raise UnknownNameError(f"unknown task '{ref}'.{did_you_mean(ref, names)} Known tasks: {', '.join(names)}; or pass a spec file path")
    return load_spec_file(files[ref]), files[ref]
