"""YAML loading into strict pydantic models, with errors that name the file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from talkwalk_bench.errors import SpecError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of declarations and records read from files: an unknown key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (first on line {first.line + 1}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """Parse YAML safely, refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: Path, error: type[Exception] = SpecError) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return load_yaml_text(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}{where}: not valid YAML ({problem}); fix the syntax there") from None


def _one_line(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]


def first_error(exc: ValidationError) -> str:
    """One line: 'field.path: message' for the first validation error (+ how many more)."""
    errs = exc.errors()
    e = errs[0]
    # a key may hold any character, a line break included: shown escaped, so the error stays one line
    loc = ".".join(_one_line(str(p)) for p in e["loc"]) or "(top level)"
    msg = _one_line(e["msg"])
    if e["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling"
    elif e["type"] == "missing":
        msg = "required key is missing; add it"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{more}"


def validate(model: type[M], data: Any, path: Path | str, error: type[Exception] = SpecError) -> M:
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{path}: {first_error(exc)}") from None


def load_model(model: type[M], path: Path, error: type[Exception] = SpecError) -> M:
    return validate(model, read_yaml(path, error), path, error)
