"""Systems and task families are plugins found through entry points; the harness never names a system package."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

from talkwalk_bench.registry import ENTRY_POINT_GROUP, SYSTEMS, TASKS_ENTRY_POINT_GROUP
from talkwalk_bench.tasks.base import FAMILIES

ROOT = Path(__file__).resolve().parents[1]


def test_the_harness_imports_no_system_package():
    offenders = []
    for path in (ROOT / "talkwalk_bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] == "systems"]
    assert offenders == []


def test_bundled_systems_and_families_are_registered_through_their_entry_points():
    systems = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    families = {ep.name for ep in entry_points(group=TASKS_ENTRY_POINT_GROUP)}
    assert {"popularity", "random", "text-only", "oracle-filter"} <= systems <= set(SYSTEMS.names())
    assert {"ranking", "steerability", "latency"} <= families <= set(FAMILIES.names())


_PLUGIN = '''
    """An outside package: one task family with its own metric, and one system."""
    from collections.abc import Sequence

    from talkwalk_bench.metric_info import Metric
    from talkwalk_bench.tasks.base import Episode, Family
    from talkwalk_bench.types import Ranking, SystemMeta


    class ListLength(Family):
        """Share of the requested K items a system returns."""

        name = "list_length"
        produces = (Metric("fill_rate@K", "higher", "returned items / K"),)

        def episodes(self):
            return [Episode(id=f"u{u}", user_id=u) for u in self.ctx.dataset.user_ids]

        def play(self, episodes: Sequence[Episode]):
            from talkwalk_bench.types import Request

            k = self.spec.k_max
            out = self.ctx.recommend([Request(user_id=e.user_id) for e in episodes], k)
            return [{"metrics": {f"fill_rate@{k}": len(r.items) / k}} for r in out]


    class Half:
        meta = SystemMeta(name="half", version="1")

        def fit(self, data, *, seed):
            self.items = sorted(data.items)

        def recommend(self, requests, *, k):
            return [Ranking(tuple(self.items[: max(1, k // 2)])) for _ in requests]


    def half(**_):
        """Returns half a list."""
        return Half()
'''


def test_a_family_and_a_system_from_an_outside_package_run_without_editing_the_harness(tmp_path, tiny_dataset):
    site = tmp_path / "site"
    (site / "outside_pkg").mkdir(parents=True)
    (site / "outside_pkg" / "__init__.py").write_text(textwrap.dedent(_PLUGIN))
    info = site / "outside_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[talkwalk_bench.tasks]\nlist_length = outside_pkg:ListLength\n\n[talkwalk_bench.systems]\nhalf = outside_pkg:half\n")
    spec = tmp_path / "fill.yaml"
    spec.write_text("name: fill\nfamily: list_length\nk: [4]\nmain_score: fill_rate@4\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "TALKWALK_RUNS_DIR": str(tmp_path / "runs")}
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "talkwalk_bench.cli", "run", "--system", "half", "--task", str(spec),
           "--dataset", str(tiny_dataset), "--output", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["metrics"]["fill_rate@4"]["value"] == 0.5
    # the outside metric is declared: a typo of it is caught with a suggestion
    spec.write_text("name: fill\nfamily: list_length\nk: [4]\nmain_score: fillrate@4\n")
    proc = subprocess.run([sys.executable, "-m", "talkwalk_bench.cli", "validate", str(spec)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Did you mean 'fill_rate@4'?" in proc.stderr


def _top_level_imports() -> dict[str, set[str]]:
    """Harness module -> harness modules it imports when it is imported (function bodies and TYPE_CHECKING aside)."""
    def name(p: Path) -> str:
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    graph: dict[str, set[str]] = {}
    for path in (ROOT / "talkwalk_bench").rglob("*.py"):
        deps: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("talkwalk_bench"):
                deps |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name(path)] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_harness_modules_import_each_other_without_cycles():
    graph = _top_level_imports()
    assert "talkwalk_bench.tasks.spec" not in graph["talkwalk_bench.tasks.base"]  # spec -> base, never the reverse
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [d])}"
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
