"""talkwalk-bench: run, list, validate, leaderboard, gate, suite.

Options that say so in --help take their default from an environment variable,
checked like the option itself. Errors a user can fix print as one line
without a traceback; set TALKWALK_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from talkwalk_bench.argtypes import Parser, env_flag, number, whole
from talkwalk_bench.errors import BenchError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(name, default)


MAX_SEED = 2**32 - 1


def parse_kv(pairs: list[str] | None, flag: str = "-S") -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as YAML scalars (``3`` -> int, ``true`` -> bool)."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, sep, raw = p.partition("=")
        if not sep or not key.strip():
            example = "-S epochs=5" if flag == "-S" else "-O judge_model=NAME"
            raise BenchError(f"{flag} {p!r}: expected key=value, e.g. {example}")
        if key.strip() in out:
            raise BenchError(f"{flag} {key.strip()} is given twice; keep one")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


# ----------------------------------------------------------------- commands

def cmd_run(a: argparse.Namespace) -> int:
    from talkwalk_bench.tasks.runner import RunConfig, run

    res = run(RunConfig(system=a.system, task=a.task, dataset=a.dataset, seed=a.seed,
                        output=Path(a.output) if a.output else None, system_args=parse_kv(a.system_arg),
                        resume=a.resume, force=a.force, progress=not a.no_progress,
                        card=Path(a.card) if a.card else None,
                        steering_file=Path(a.steering_file) if a.steering_file else None,
                        options=_judge_options(a, parse_kv(a.option, "-O")),
                        limit=a.limit, allow_untimed=a.allow_untimed, allow_unknown_items=a.allow_unknown_items,
                        allow_degraded=a.allow_degraded))
    out = res.__dict__.get("_path")
    _print_result(res, out)
    if res.status != "success":
        print(f"error: {res.error}", file=sys.stderr)
        return 1
    return 0


def _judge_options(a: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    """--judge-model / --judge-base-url as task options (an explicit -O wins)."""
    for opt, value in (("judge_model", getattr(a, "judge_model", None)), ("judge_base_url", getattr(a, "judge_base_url", None))):
        if value and opt not in options:
            options[opt] = value
    return options


def _print_result(res, out) -> None:
    main = res.task.main_score
    print(f"{res.system.name} on {res.task.name} ({res.dataset.name}, seed {res.seed}): {res.status}")
    for note in ("order", "unknown_items"):
        if "allow" in str(res.protocol.get(note, "")):
            print(f"  note: {res.protocol[note]}")
    for attr, rep in (res.dataset.unknown_values or {}).items():
        eg = ", ".join(f"{e['item']} {'|'.join(e['raw']) if isinstance(e['raw'], list) else e['raw']!r}" for e in rep["examples"][:3])
        print(f"  data: {rep['count']} items with no known {attr} (e.g. {eg}): {rep['treated_as']}")
    for name, m in res.metrics.items():
        if m.value is None:
            line = f"  {name:<28} n/a ({m.reason})"
        else:
            ci = f" [{m.ci_low:.4f}, {m.ci_high:.4f}]" if m.ci_low is not None else ""
            chance = f"  chance {m.chance:.4f}" if m.chance is not None else ""
            line = f"  {name:<28} {m.value:.4f}{ci}  n={m.n}{chance}"
        print(("* " if name == main else "  ") + line.lstrip())
    if out:
        print(f"result: {out}")


def cmd_suite(a: argparse.Namespace) -> int:
    """A suite is a list of matrices: planned and run by the matrix orchestrator, one leaderboard at the end."""
    from talkwalk_bench.commands.matrix import drive
    from talkwalk_bench.matrix import plan
    from talkwalk_bench.paths import runs_dir
    from talkwalk_bench.suite import check_references, load_suite

    suite = load_suite(a.suite)
    check_references(suite, a.suite)
    out_dir = Path(a.output_dir) if a.output_dir else runs_dir() / suite.name
    seeds = _seeds(a.seeds) if a.seeds else suite.seeds
    progress = not a.no_progress and a.jobs == 1 and a.executor == "local"
    # --seeds overrides every run's seeds; otherwise a run's own seeds, else the suite's
    cells = [cell for spec in suite.runs
             for cell in plan(spec.systems, [spec.task], seeds if a.seeds else (spec.seeds or seeds), out_dir,
                              a.dataset or suite.dataset, spec.system_args, force=a.force, progress=progress)]
    return drive(cells, out_dir, executor=a.executor, jobs=a.jobs, address=a.address, dry_run=a.dry_run)


def _executor(raw: str) -> str:
    from talkwalk_bench.commands.matrix import _executor as check

    return check(raw)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
        raise BenchError(f"--seeds {text!r} (or $TALKWALK_SEEDS): expected comma-separated whole numbers from 0 to {MAX_SEED}, e.g. 0,1,2")
    return seeds


def cmd_list(a: argparse.Namespace) -> int:
    from talkwalk_bench.data.dataset import BUNDLED
    from talkwalk_bench.registry import SYSTEMS
    from talkwalk_bench.suite import suite_files
    from talkwalk_bench.tasks.spec import spec_files

    what = a.what
    if what in (None, "systems"):
        print("systems:")
        for e in SYSTEMS.entries():
            tag = " [oracle]" if e.tags.get("oracle") else ""
            print(f"  {e.name:<22}{e.description}{tag}")
    if what in (None, "tasks"):
        print("tasks:")
        for name, path in spec_files().items():
            try:
                data = yaml.safe_load(path.read_text()) or {}
                desc = data.get("description", "") if isinstance(data, dict) else ""
            except yaml.YAMLError:
                desc = "(invalid YAML: run `talkwalk-bench validate`)"
            print(f"  {name:<22}{desc}")
        print("suites:")
        for name in suite_files():
            print(f"  {name}")
    if what in (None, "families"):
        from talkwalk_bench.tasks.base import FAMILIES

        print("task families:")
        for e in FAMILIES.entries():
            print(f"  {e.name:<22}{e.description}")
    if what == "metrics":
        from talkwalk_bench.tasks.base import FAMILIES

        for e in FAMILIES.entries():
            print(f"{e.name}:")
            for m in e.obj.declared_metrics():
                from talkwalk_bench.metric_info import info

                print(f"  {m.name:<38}{info(m.name).arrow} {m.definition}")
    if what in (None, "datasets"):
        print("datasets:")
        for name, desc in BUNDLED.items():
            print(f"  {name:<22}{desc}")
        print("  PATH                  any folder of RecBole atomic files (--dataset PATH)")
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from talkwalk_bench.data.card import DatasetCard
    from talkwalk_bench.paths import tasks_dir
    from talkwalk_bench.suite import check_references, load_suite, suite_files
    from talkwalk_bench.tasks.spec import load_spec_file, spec_files
    from talkwalk_bench.yamlio import load_model

    targets: list[tuple[str, Path]] = []
    if a.paths:
        targets = [("auto", Path(p)) for p in a.paths]
    else:
        targets += [("task", p) for p in spec_files().values()]
        targets += [("suite", p) for p in suite_files().values()]
        targets += [("card", p) for p in sorted((tasks_dir() / "cards").glob("*.yaml"))]
        targets += [("steering-builtin", p) for p in _builtin_steering_files()]
    errors = 0
    for kind, p in targets:
        if kind == "auto":
            kind = ("card" if p.parent.name == "cards" else "suite" if p.parent.name == "suites"
                    else "steering" if _is_steering_file(p) else "task")
        try:
            if kind == "task":
                load_spec_file(p)
            elif kind == "suite":
                check_references(load_suite(str(p)), p)
            elif kind == "steering-builtin":
                _check_builtin_steering(p)
            elif kind == "steering":
                from talkwalk_bench.data.card import load_card
                from talkwalk_bench.steering import load_steering_file

                load_steering_file(p, load_card("ml-100k", Path(a.card)) if a.card else load_card("ml-100k"))
            else:
                load_model(DatasetCard, p, BenchError)
            print(f"ok     {p}")
        except BenchError as exc:
            errors += 1
            print(f"error  {exc}", file=sys.stderr)
    return 1 if errors else 0


def _builtin_steering_files() -> list[Path]:
    from talkwalk_bench.steering.phrasings import BUILTIN_PATH
    from talkwalk_bench.tasks.steering_eval import EVAL_PATH

    return [BUILTIN_PATH, EVAL_PATH]


def _check_builtin_steering(p: Path) -> None:
    from talkwalk_bench.steering.phrasings import BUILTIN_PATH, read_template_file
    from talkwalk_bench.tasks.steering_eval import builtin_eval

    if p == BUILTIN_PATH:
        read_template_file(p, "train")
    else:
        builtin_eval()


def _is_steering_file(p: Path) -> bool:
    """A YAML file whose top level has ``templates`` or ``utterances`` (and no task ``family``)."""
    try:
        import yaml

        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "family" not in data and ("templates" in data or "utterances" in data)


def cmd_leaderboard(a: argparse.Namespace) -> int:
    from talkwalk_bench import leaderboard as lb
    from talkwalk_bench.results import atomic_write_text

    if a.format not in lb.FORMATS:  # a default from $TALKWALK_LB_FORMAT is not checked by argparse
        raise BenchError(f"--format {a.format!r}: use one of {', '.join(lb.FORMATS)} (from --format or $TALKWALK_LB_FORMAT)")
    results, skipped = lb.collect([Path(p) for p in a.results], allow_limited=a.allow_limited)
    for s in skipped:
        print(f"skipped {s}", file=sys.stderr)
    if not results:
        raise BenchError("no successful results to rank; run `talkwalk-bench run` first or point at a folder of results")
    boards = lb.build(results)
    if a.check:
        found = lb.problems(boards)
        for line in found:
            print(line)
        rows = sum(len(b.rows) for b in boards)
        bad = sum(1 for b in boards for r in b.rows if r.marks)
        if found:
            kinds = {k: sum(1 for b in boards for r in b.rows if k in r.marks) for k in ("stale", "mixed", "dirty")}
            print(f"check: {bad} of {rows} rows need a rerun (" + ", ".join(f"{v} {k}" for k, v in kinds.items() if v)
                  + "); rerun them at a clean revision", file=sys.stderr)
            return 1
        print(f"check: {rows} rows in {len(boards)} tables, all made by the current, committed code", file=sys.stderr)
        return 0
    if a.format == "html" and a.output and not a.output.endswith((".html", ".htm")):
        from talkwalk_bench.site import build_site

        pages = build_site(boards, Path(a.output))
        print(f"wrote a site of {len(pages)} pages to {a.output} (open {Path(a.output) / 'index.html'})", file=sys.stderr)
        return 0
    text = lb.FORMATS[a.format](boards)
    if a.output:
        atomic_write_text(Path(a.output), text)
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_gate(a: argparse.Namespace) -> int:
    from talkwalk_bench import gate
    from talkwalk_bench.results import atomic_write_text, read_result

    if a.calibrate:
        results = [read_result(p) for p in a.calibrate]
        tol = gate.calibrate(results, multiplier=a.multiplier)
        payload = {"task": results[0].task.name, "system": results[0].system.name, "seeds": [r.seed for r in results],
                   "multiplier": a.multiplier, "tolerances": tol}
        text = json.dumps(payload, indent=2) + "\n"
        if a.output:
            atomic_write_text(Path(a.output), text)
            print(f"wrote {a.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if not a.baseline or not a.current:
        raise BenchError("gate needs --baseline FILE and --current FILE (or --calibrate RESULT...)")
    base, cur = read_result(a.baseline), read_result(a.current)
    tolerances = gate.read_tolerances(Path(a.tolerances)) if a.tolerances else None
    checks = gate.compare(base, cur, tolerance=a.tolerance, tolerances=tolerances,
                          metrics=a.metric or None)
    failed = [c for c in checks if not c.ok]
    for c in checks:
        b = "n/a" if c.baseline is None else f"{c.baseline:.4f}"
        v = "n/a" if c.current is None else f"{c.current:.4f}"
        state = "ok  " if c.ok else "FAIL"
        print(f"{state} {c.metric:<24} baseline {b}  current {v}  tolerance {c.tolerance:.4f} {c.note}")
    if failed:
        print(f"gate: {len(failed)} regression(s) beyond tolerance", file=sys.stderr)
        return 1
    print("gate: pass")
    return 0


# ----------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="talkwalk-bench", description="Benchmark steerable recommenders: ranking, steering, conversations.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run one system on one task")
    r.add_argument("--system", default=_env("TALKWALK_SYSTEM"), help="system name (env TALKWALK_SYSTEM); required but for judge_calibration, which runs none")
    r.add_argument("--task", default=_env("TALKWALK_TASK"), required=_env("TALKWALK_TASK") is None, help="task name or spec file (env TALKWALK_TASK)")
    r.add_argument("--dataset", default=_env("TALKWALK_DATASET"), help="bundled name or folder of atomic files; default: the task's (env TALKWALK_DATASET)")
    r.add_argument("--seed", type=whole("--seed", env="TALKWALK_SEED", minimum=0, maximum=MAX_SEED), default=_env("TALKWALK_SEED", "0"), help="seed for episodes and training (env TALKWALK_SEED, default 0)")
    r.add_argument("--output", default=_env("TALKWALK_OUTPUT"), help="result JSON path; default runs/TASK/SYSTEM__DATASET__seedN.json (env TALKWALK_OUTPUT)")
    r.add_argument("-S", "--system-arg", action="append", metavar="KEY=VALUE", help="system argument, repeatable (e.g. -S epochs=5)")
    r.add_argument("-O", "--option", action="append", metavar="KEY=VALUE", help="task option, repeatable (e.g. -O judge_model=...)")
    r.add_argument("--resume", action="store_true", default=env_flag("TALKWALK_RESUME"), help="continue an interrupted run (env TALKWALK_RESUME)")
    r.add_argument("--force", action="store_true", help="overwrite an existing result")
    r.add_argument("--card", default=_env("TALKWALK_CARD"), help="dataset card YAML; default tasks/cards/DATASET.yaml (env TALKWALK_CARD)")
    r.add_argument("--steering-file", default=_env("TALKWALK_STEERING_FILE"), help="your own steering phrasings (YAML) for steering tasks (env TALKWALK_STEERING_FILE)")
    r.add_argument("--no-progress", action="store_true", default=env_flag("TALKWALK_NO_PROGRESS"), help="hide progress bars (env TALKWALK_NO_PROGRESS)")
    r.add_argument("--limit", type=whole("--limit", minimum=1), default=None, metavar="N",
                   help="play only the first N episodes: a quick try, recorded in the result; leaderboards refuse it unless --allow-limited")
    r.add_argument("--allow-untimed", action="store_true", help="accept an interaction file without a timestamp field (file order; recorded in the result)")
    r.add_argument("--allow-unknown-items", action="store_true", help="accept interactions on items missing from the .item file (recorded in the result)")
    r.add_argument("--allow-degraded", action="store_true", help="accept a run whose judge answered nothing (status success, recorded); default: status degraded, exit 1")
    r.add_argument("--judge-model", default=_env("TALKWALK_JUDGE_MODEL"), help="judge model name; same as -O judge_model=... (env TALKWALK_JUDGE_MODEL)")
    r.add_argument("--judge-base-url", default=_env("TALKWALK_JUDGE_BASE_URL"), help="OpenAI-compatible judge endpoint; same as -O judge_base_url=... (env TALKWALK_JUDGE_BASE_URL)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("suite", help="run a suite (several tasks x systems x seeds) and print its leaderboard")
    s.add_argument("suite", nargs="?", default=_env("TALKWALK_SUITE", "default"), help="suite name or file (env TALKWALK_SUITE, default 'default')")
    s.add_argument("--dataset", default=_env("TALKWALK_DATASET"), help="override the suite's dataset (env TALKWALK_DATASET)")
    s.add_argument("--seeds", default=_env("TALKWALK_SEEDS"), help="comma-separated seeds (env TALKWALK_SEEDS)")
    s.add_argument("--output-dir", default=_env("TALKWALK_OUTPUT_DIR"), help="default runs/SUITE (env TALKWALK_OUTPUT_DIR)")
    s.add_argument("--force", action="store_true", help="rerun cells that already have results")
    s.add_argument("--executor", type=_executor, default=_env("TALKWALK_EXECUTOR", "local"), help="local or ray (env TALKWALK_EXECUTOR, default local)")
    s.add_argument("--jobs", type=whole("--jobs", env="TALKWALK_JOBS", minimum=1), default=_env("TALKWALK_JOBS", "1"), help="local worker processes (env TALKWALK_JOBS, default 1)")
    s.add_argument("--address", default=_env("RAY_ADDRESS"), help="Ray cluster address (env RAY_ADDRESS); default: start a local Ray")
    s.add_argument("--no-progress", action="store_true", default=env_flag("TALKWALK_NO_PROGRESS"), help="hide progress bars (env TALKWALK_NO_PROGRESS)")
    s.add_argument("--dry-run", action="store_true", help="run nothing: print what each cell would do (skip, rerun: why, run) and the counts")
    s.set_defaults(func=cmd_suite)

    ls = sub.add_parser("list", help="list systems, tasks, suites, task families, datasets; or each family's metrics")
    ls.add_argument("what", nargs="?", choices=["systems", "tasks", "families", "datasets", "metrics"])
    ls.set_defaults(func=cmd_list)

    v = sub.add_parser("validate", help="validate task specs, suites, dataset cards and steering files")
    v.add_argument("paths", nargs="*", help="files to check; default: everything under tasks/ and the built-in steering templates")
    v.add_argument("--card", default=_env("TALKWALK_CARD"),
                   help="dataset card YAML that steering files' literal utterances are checked against (default the ml-100k card; env TALKWALK_CARD)")
    v.set_defaults(func=cmd_validate)

    lbp = sub.add_parser("leaderboard", help="build a leaderboard from result files or folders")
    lbp.add_argument("results", nargs="+", help="result JSON files or folders")
    lbp.add_argument("--format", choices=["md", "csv", "json", "html"], default=_env("TALKWALK_LB_FORMAT", "md"), help="(env TALKWALK_LB_FORMAT, default md)")
    lbp.add_argument("--output", default=None, help="write here instead of stdout; with --format html, a folder gets a site (index + one page per task)")
    lbp.add_argument("--allow-limited", action="store_true", help="rank results of --limit runs too (marked 'limited'); by default they are refused")
    lbp.add_argument("--check", action="store_true",
                     help="write nothing; print one line per stale, mixed or dirty result (file: what) and exit 1 if any, 0 otherwise (for CI)")
    lbp.set_defaults(func=cmd_leaderboard)

    g = sub.add_parser("gate", help="fail (exit 1) when a run regresses against a baseline; exit 2 on bad input")
    g.add_argument("--baseline", default=_env("TALKWALK_BASELINE"), help="baseline result JSON (env TALKWALK_BASELINE)")
    g.add_argument("--current", default=_env("TALKWALK_CURRENT"), help="current result JSON (env TALKWALK_CURRENT)")
    g.add_argument("--tolerance", type=number("--tolerance", minimum=0), default=None, help="absolute tolerance for every metric (overrides spec and file)")
    g.add_argument("--tolerances", default=_env("TALKWALK_TOLERANCES"), help="calibrated tolerance JSON from --calibrate (env TALKWALK_TOLERANCES)")
    g.add_argument("--metric", action="append", help="metric to gate, repeatable; default: the task's gate metrics")
    g.add_argument("--calibrate", nargs="+", metavar="RESULT", help="write per-metric tolerances from several seeds' results")
    g.add_argument("--multiplier", type=number("--multiplier", minimum=0), default=3.0, help="tolerance = multiplier x seed std (with --calibrate)")
    g.add_argument("--output", default=None, help="with --calibrate: write tolerances here")
    g.set_defaults(func=cmd_gate)
    _add_extension_commands(sub)
    return p


def _add_extension_commands(sub) -> None:
    """Further commands live one per module in ``talkwalk_bench/commands``; each has ``add_parser(sub)``."""
    import importlib
    import pkgutil

    import talkwalk_bench.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"talkwalk_bench.commands.{info.name}")
        mod.add_parser(sub)


# the names of ``tasks.runner.QUIET_ENV`` (tested equal), not imported from it: importing the runner imports tqdm
QUIET_ENV = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")


def quiet_progress() -> None:
    """``--no-progress``: silence every bar of the command, the systems' and the libraries' included.

    tqdm reads ``TQDM_DISABLE`` once, when it is first imported, so it is set here, before any command imports
    it; the runner setting it again around a run reaches only a tqdm imported later (a teacher's bar, a
    library's, in a process that had not imported it yet, stayed on).
    """
    os.environ.update({k: "1" for k in QUIET_ENV})


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        a = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    except BenchError as exc:  # a bad environment variable
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if getattr(a, "no_progress", False):
        quiet_progress()
    try:
        return int(a.func(a) or 0)
    except BenchError as exc:
        if os.environ.get("TALKWALK_DEBUG"):
            raise
        path = getattr(exc, "result_path", None)
        extra = f" (result with status error: {path})" if path else ""
        print(f"error: {exc}{extra}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished episodes are kept: rerun with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
