"""Systems, task families and datasets by name.

Systems and task families come in through entry points, the bundled ones
exactly as a third party's: ``talkwalk_bench.systems`` (name -> a factory
``f(**args) -> Recommender``, or a module whose ``@register_system``
decorators register it) and ``talkwalk_bench.tasks`` (name -> a ``Family``
subclass). The harness never imports a system package by name. A factory
keeps its heavy imports (torch, recbole, faiss, transformers) inside its
body, so listing names stays instant.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from talkwalk_bench.errors import BenchError, UnknownNameError

T = TypeVar("T")
ENTRY_POINT_GROUP = "talkwalk_bench.systems"
TASKS_ENTRY_POINT_GROUP = "talkwalk_bench.tasks"


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object, with a helpful error for unknown names."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loader = loader
        self._loaded = False

    def add(self, name: str, obj: T, description: str = "", **tags: Any) -> None:
        if name in self._entries and self._entries[name].obj is not obj:
            raise BenchError(f"{self.kind} '{name}' is registered twice; rename one of them")
        self._entries[name] = Entry(name, obj, description, dict(tags))

    def _ensure_loaded(self) -> None:
        if not self._loaded and self._loader is not None:
            self._loaded = True
            self._loader()

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._ensure_loaded()
        for name in sorted(self._entries):
            yield self._entries[name]

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            names = sorted(self._entries)
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, names)} "
                f"Known {self.kind}s: {', '.join(names) or '(none)'}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries


def load_entry_points(registry: Registry[Any], group: str, broken: Callable[[str, str, Exception], Any]) -> None:
    """Load every entry point of ``group`` into ``registry``.

    Loading the target usually registers it (and its siblings in the same
    module) through a decorator; a target that did not register itself is
    added under the entry point's name. A plugin that fails to import is
    listed with an entry that explains, so it cannot hide the others.
    """
    for ep in entry_points(group=group):
        if ep.name in registry._entries:
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            registry.add(ep.name, broken(ep.name, ep.value, exc), "failed to load")
            continue
        if ep.name in registry._entries:
            continue
        if inspect.ismodule(obj):
            registry.add(ep.name, broken(ep.name, ep.value, LookupError(f"module {obj.__name__} registers no {registry.kind} "
                                                                         f"named '{ep.name}'")), "failed to load")
        else:
            registry.add(ep.name, obj, (obj.__doc__ or "").strip().split("\n")[0])


def _load_systems() -> None:
    load_entry_points(SYSTEMS, ENTRY_POINT_GROUP, _broken_factory)


def _broken_factory(name: str, target: str, exc: Exception) -> Callable[..., Any]:
    def factory(**_: Any) -> Any:
        raise BenchError(
            f"system '{name}' (entry point {target}) failed to import: {exc}; "
            "reinstall the package that provides it"
        )

    return factory


SYSTEMS: Registry[Callable[..., Any]] = Registry("system", _load_systems)


def register_system(
    name: str, *, description: str = "", oracle: bool = False, **tags: Any
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Register a factory ``f(**args) -> Recommender`` under ``name``.

    The factory's keyword defaults are the system's documented arguments; they
    and any overrides are written into every result.
    """

    def deco(factory: Callable[..., T]) -> Callable[..., T]:
        doc = description or (factory.__doc__ or "").strip().split("\n")[0]
        SYSTEMS.add(name, factory, doc, oracle=oracle, **tags)
        return factory

    return deco


def register_variant(
    name: str, builder: Callable[..., T], *, like: Callable[..., Any], defaults: Mapping[str, Any] | None = None,
    description: str = "", **tags: Any,
) -> Callable[..., T]:
    """Register ``name`` as a variant of a system: the arguments of ``like`` with other defaults.

    The variant's documented arguments are ``like``'s (so ``-S`` and the
    result record work as for any system) with ``defaults`` replacing some
    of their defaults; building it calls ``builder(name, **args)``. This keeps
    variants that differ only in defaults from repeating the whole signature.
    """
    overrides = dict(defaults or {})
    sig = inspect.signature(like)
    unknown = sorted(set(overrides) - set(sig.parameters))
    if unknown:
        raise BenchError(f"variant '{name}' overrides unknown argument(s) {', '.join(unknown)} of {like.__name__}")
    params = [p.replace(default=overrides[p.name]) if p.name in overrides else p for p in sig.parameters.values()]

    def factory(**args: Any) -> T:
        return builder(name, **args)

    factory.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = like.__doc__
    factory.__talkwalk_builder__ = builder  # type: ignore[attr-defined]  # its code is the variant's (provenance)
    register_system(name, description=description, **tags)(factory)
    return factory


def system_defaults(name: str) -> dict[str, Any]:
    """The documented arguments of a system's factory, with their defaults."""
    factory = SYSTEMS.get(name)
    out: dict[str, Any] = {}
    for p in inspect.signature(factory).parameters.values():
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            out[p.name] = None if p.default is inspect.Parameter.empty else p.default
    return out


def resolve_system_args(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``-S key=value`` overrides into the defaults, rejecting unknown keys and values of the wrong type.

    The factory's signature is the one place a system's arguments are
    written: each override is checked and converted against its annotation
    (or, unannotated, the type of its default), so ``-S epochs=abc`` stops
    before any work and ``-S lr=1`` arrives as a float.
    """
    factory = SYSTEMS.get(name)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    args = system_defaults(name)
    for key, value in overrides.items():
        if key not in args and not accepts_any:
            known = sorted(args)
            raise BenchError(
                f"system '{name}' has no argument '{key}'.{did_you_mean(key, known)} "
                f"Its arguments: {', '.join(known) or '(none)'}"
            )
        args[key] = _convert(name, key, value, params[key], factory) if key in params else value
    return args


_LAX = ConfigDict(coerce_numbers_to_str=True)  # -S name=2024 for a str argument is the text "2024"


def _param_type(p: inspect.Parameter, factory: Callable[..., Any]) -> Any:
    """A parameter's type: its annotation (string annotations resolved as typing does), else its default's type."""
    ann = p.annotation
    if isinstance(ann, str):
        holder = types.SimpleNamespace(__annotations__={p.name: ann})
        try:
            ann = typing.get_type_hints(holder, getattr(inspect.unwrap(factory), "__globals__", {}))[p.name]
        except Exception:  # an annotation naming something the module does not export: fall back to the default
            ann = inspect.Parameter.empty
    if ann is inspect.Parameter.empty or ann is Any:
        return type(p.default) if isinstance(p.default, (bool, int, float, str)) else None
    return ann


def _convert(system: str, key: str, value: Any, p: inspect.Parameter, factory: Callable[..., Any]) -> Any:
    tp = _param_type(p, factory)
    if tp is None:
        return value
    try:
        return TypeAdapter(tp, config=_LAX).validate_python(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        want = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        raise BenchError(f"-S {key}={value!r}: system '{system}' takes {key} as {want} ({err['msg'][0].lower()}{err['msg'][1:]})"
                         ) from None
    except Exception:  # a type pydantic cannot check (a class of the system's own): pass the value as given
        return value


def build_system(name: str, overrides: Mapping[str, Any] | None = None) -> tuple[Any, dict]:
    """Build a system by name; returns (system, the full argument dict used)."""
    args = resolve_system_args(name, overrides or {})
    factory = SYSTEMS.get(name)
    system = factory(**args)
    for attr in ("meta", "fit", "recommend"):
        if not hasattr(system, attr):
            raise BenchError(
                f"system '{name}' does not implement the Recommender protocol (missing '{attr}')"
            )
    return system, args


def is_oracle(name: str) -> bool:
    return bool(SYSTEMS.entry(name).tags.get("oracle"))
