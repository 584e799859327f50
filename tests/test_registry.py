"""The registry: decorator, entry points, did-you-mean, argument handling."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from talkwalk_bench import registry
from talkwalk_bench.errors import BenchError, UnknownNameError
from talkwalk_bench.registry import Registry, build_system, resolve_system_args, system_defaults


def test_unknown_name_lists_known_and_suggests():
    r: Registry[int] = Registry("widget")
    r.add("alpha", 1)
    r.add("beta", 2)
    with pytest.raises(UnknownNameError) as err:
        r.get("alpah")
    assert str(err.value) == "unknown widget 'alpah'. Did you mean 'alpha'? Known widgets: alpha, beta"


def test_double_registration_is_an_error():
    r: Registry[object] = Registry("widget")
    r.add("a", object())
    with pytest.raises(BenchError, match="registered twice"):
        r.add("a", object())


def test_defaults_and_overrides_are_recorded():
    assert system_defaults("random") == {"seed_offset": 0}
    assert resolve_system_args("random", {"seed_offset": 2}) == {"seed_offset": 2}
    system, args = build_system("random", {"seed_offset": 5})
    assert args == {"seed_offset": 5} and system.meta.name == "random"


def test_entry_point_plugins_load(monkeypatch):
    ep = EntryPoint(name="ext-pop", value="systems.baselines:popularity", group=registry.ENTRY_POINT_GROUP)
    broken = EntryPoint(name="ext-broken", value="no_such_module_xyz:factory", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep, broken])
    fresh: Registry = Registry("system", registry._load_systems)
    monkeypatch.setattr(registry, "SYSTEMS", fresh)
    assert "ext-pop" in fresh.names()
    assert fresh.get("ext-pop")().meta.name == "popularity"
    with pytest.raises(BenchError, match="failed to import"):
        fresh.get("ext-broken")()


def test_variant_has_the_base_arguments_with_its_own_defaults(monkeypatch):
    calls = []

    def base(alpha: float = 0.5, beta: int = 2):
        """Base doc."""

    def builder(name, **args):
        calls.append((name, args))
        return object()

    fresh: Registry = Registry("system")
    monkeypatch.setattr(registry, "SYSTEMS", fresh)
    registry.register_variant("base-b", builder, like=base, defaults={"beta": 7}, description="b")
    assert system_defaults("base-b") == {"alpha": 0.5, "beta": 7}
    assert resolve_system_args("base-b", {"alpha": 0.1}) == {"alpha": 0.1, "beta": 7}
    with pytest.raises(BenchError, match="has no argument 'gama'"):
        resolve_system_args("base-b", {"gama": 1})
    fresh.get("base-b")(**resolve_system_args("base-b", {}))
    assert calls == [("base-b", {"alpha": 0.5, "beta": 7})]
    with pytest.raises(BenchError, match="unknown argument"):
        registry.register_variant("base-c", builder, like=base, defaults={"delta": 1})


def test_system_arguments_are_checked_and_converted_against_the_factory_signature(monkeypatch, capsys):
    def factory(epochs: int = 3, lr: float = 1e-3, name: str = "x", flag: bool = True, depth=2, tags: list[int] | None = None):
        return None

    fresh: Registry = Registry("system")
    fresh.add("typed", factory)
    with monkeypatch.context() as m:
        m.setattr(registry, "SYSTEMS", fresh)
        args = resolve_system_args("typed", {"lr": 1, "name": 2024, "flag": "no", "depth": "4", "tags": [1, "2"]})
        assert args == {"epochs": 3, "lr": 1.0, "name": "2024", "flag": False, "depth": 4, "tags": [1, 2]}
        assert isinstance(args["lr"], float) and isinstance(args["depth"], int)
        with pytest.raises(BenchError, match=r"-S epochs='many': system 'typed' takes epochs as int"):
            resolve_system_args("typed", {"epochs": "many"})
        with pytest.raises(BenchError, match="takes depth as int"):  # unannotated: the default's type
            resolve_system_args("typed", {"depth": 2.5})
    # through the command line, before any work: one line, exit 2
    from talkwalk_bench.cli import main

    assert main(["run", "--system", "random", "--task", "ranking", "-S", "seed_offset=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes seed_offset as int" in err
