"""Rubrics as data: a prompt template and the JSON answer it expects, versioned.

A rubric's answer is parsed strictly: a score rubric needs an integer
``score`` inside its scale, a choice rubric a ``choice`` among its choices.
Anything else is a parse failure (retried by the client, then recorded as a
failure, never as a score). One exception: an answer cut off by the token
limit after its first field was complete (``{"score": 1, "reason": "1.1.1...``,
as small models ramble) keeps that field, marked ``cut_off``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from talkwalk_bench.errors import BenchError, SpecError
from talkwalk_bench.yamlio import load_model

RUBRICS_DIR = Path(__file__).resolve().parent / "rubrics"


class ParseError(ValueError):
    """The judge's answer is not the JSON the rubric asks for."""


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    kind: Literal["score", "choice", "text"]
    system: str
    template: str
    scale: tuple[int, int] | None = None
    choices: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> Rubric:
        if self.kind == "score" and (self.scale is None or self.scale[0] >= self.scale[1]):
            raise ValueError("a score rubric needs scale: [low, high] with low < high")
        if self.kind == "choice" and not self.choices:
            raise ValueError("a choice rubric needs choices: [...]")
        return self

    @property
    def field(self) -> str:
        return {"score": "score", "choice": "choice", "text": "utterance"}[self.kind]

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"

    def messages(self, **variables: Any) -> list[dict[str, str]]:
        try:
            system = self.system.format(**variables)
            user = self.template.format(**variables)
        except KeyError as exc:
            raise BenchError(f"rubric {self.name}: template variable {exc} not provided") from None
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def parse(self, text: str | None) -> dict[str, Any]:
        """The answer as ``{"score": int}``, ``{"choice": str}`` (+ ``reason``) or ``{"utterance": str}``; raises ParseError."""
        cut_off = False
        try:
            obj = extract_json(text or "")
        except ParseError:
            obj = _cut_off(text or "", self.field)
            if obj is None:
                raise
            cut_off = True
        if self.field not in obj:
            raise ParseError(f"JSON answer lacks '{self.field}'")
        value = obj[self.field]
        reason = obj.get("reason")
        reason = str(reason)[:300] if reason is not None else None
        if self.kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise ParseError("utterance is empty or not a string")
            return {"utterance": " ".join(value.split())[:300]}
        if self.kind == "score":
            assert self.scale is not None
            if isinstance(value, bool):
                raise ParseError("score is a boolean")
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value.strip())
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ParseError(f"score {value!r} is not an integer")
            lo, hi = self.scale
            if not lo <= value <= hi:
                raise ParseError(f"score {value} outside {lo}-{hi}")
            return {"score": value, "reason": reason, **({"cut_off": True} if cut_off else {})}
        assert self.choices is not None
        if not isinstance(value, str):
            raise ParseError(f"choice {value!r} is not a string")
        by_lower = {c.lower(): c for c in self.choices}
        v = value.strip().strip('"').lower()
        if v not in by_lower:
            raise ParseError(f"choice {value!r} not one of {', '.join(self.choices)}")
        return {"choice": by_lower[v], "reason": reason, **({"cut_off": True} if cut_off else {})}


def _cut_off(text: str, field: str) -> dict[str, Any] | None:
    """The first field of a JSON answer that was cut off after it: ``{"score": 3, "reason": "...`` -> {"score": 3}."""
    m = re.match(r'\s*\{\s*"' + re.escape(field) + r'"\s*:\s*(-?\d+|"[^"\n]*")\s*,', text)
    if m is None:
        return None
    return {field: json.loads(m.group(1))}


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a reply (bare, fenced, or embedded in prose)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for i, ch in enumerate(cand):
            if ch != "{":
                continue
            try:
                obj, _ = decoder.raw_decode(cand[i:])
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ParseError("no JSON object in the answer")


def rubric_names() -> list[str]:
    return sorted(p.stem for p in RUBRICS_DIR.glob("*.yaml"))


def load_rubric(ref: str) -> Rubric:
    """A bundled rubric by name, or a path to a rubric YAML file."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_model(Rubric, p, SpecError)
    path = RUBRICS_DIR / f"{ref}.yaml"
    if not path.exists():
        raise SpecError(f"unknown rubric '{ref}'; known: {', '.join(rubric_names())}, or pass a rubric YAML path")
    return load_model(Rubric, path, SpecError)
