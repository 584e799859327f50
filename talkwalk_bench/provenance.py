"""Which code made a number: content hashes of every file that can change a run's result.

A run records (``Result.provenance``) the sha256 of each file whose content
can move its numbers, relative to the project root:

- the harness code that scores it: the task family's module and, followed
  through every ``import`` / ``from ... import`` found anywhere in a file
  (``ast.walk``, so imports inside functions count), what it imports inside
  ``talkwalk_bench/tasks``, ``metrics``, ``data``, ``steering`` and ``judge``
  (package ``__init__.py`` files included), plus ``tasks/runner.py`` (which
  aggregates) and the data files (YAML) of those packages;
- the system's own code: from the module that registers its factory (for a
  variant, the module of the function that builds it), the module's
  top-level statements, the factory and the module's functions it calls,
  then everything they import inside that top-level package (``systems.``);
- the task spec, the dataset card and a ``--steering-file``; the dataset's
  own fingerprint is recorded beside them.

A module that registers several systems (``systems/semid/__init__.py`` holds
five) is also recorded as far as it concerns this system (``scoped``): the
file without the other systems' registrations and the functions only they
use. When the whole file changed but that part did not (another variant's
defaults were edited), the result is still current. Results recorded before
``scoped`` existed, or with an earlier version of its hash (``SCOPE_VERSION``),
get it from their own revision's copy of the file (``git show``), checked
against the recorded hash first.

The leaderboard hashes the same files again: a row whose files changed is
stale. ``dirty_files`` lists the fingerprinted files that git reports as
modified, added or untracked (not in the recorded commit).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HASH_CHARS = 16
HARNESS_SCOPE = ("talkwalk_bench.tasks", "talkwalk_bench.metrics", "talkwalk_bench.data", "talkwalk_bench.steering",
                 "talkwalk_bench.judge")
ALWAYS = ("talkwalk_bench.tasks.runner",)  # aggregation and the CIs of every run
# folders that runs write: never a reason to call the tree dirty
OUTPUT_DIRS = ("results", "runs", "leaderboards")


def project_root() -> Path:
    from talkwalk_bench.paths import PROJECT_DIR

    return PROJECT_DIR


def file_hash(path: Path) -> str | None:
    """sha256 of the bytes, first 16 hex characters; None when the file cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:HASH_CHARS]
    except OSError:
        return None


def combined_hash(files: dict[str, str | None]) -> str:
    """One hash of a whole fingerprint (paths and their hashes), to compare runs at a glance."""
    text = "\n".join(f"{k}\t{v}" for k, v in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


_REGISTER = ("register_system", "register_variant")
SCOPE_VERSION = 3  # of ``registration_hash``; recorded beside each scoped hash


def _registers(node: ast.AST) -> list[str]:
    """The system names a statement registers: ``register_system("name", ...)`` / ``register_variant("name", ...)``
    calls anywhere in it (decorators included)."""
    names = []
    for call in ast.walk(node):
        if not isinstance(call, ast.Call) or not call.args:
            continue
        fn = call.func
        fname = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
        first = call.args[0]
        if fname in _REGISTER and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.append(first.value)
    return names


def registration_hash(source: str, system: str) -> str | None:
    """A hash of what a registering module holds for one system: its text without the statements that register
    other systems and without the module's functions that only those use (each function that this system's
    registration or kept code names, transitively, is kept), blank lines left out. A function a kept variant
    registration names only as ``like=`` is kept as its signature and docstring: a variant takes that factory's
    arguments and defaults, never its body or its own registration (``registry.register_variant``). None when the module does not
    register ``system`` or cannot be parsed. Conservative: comments, imports and every other top-level statement
    count. Version ``SCOPE_VERSION``: version 1 kept a blank line for each line left out, so a function added for
    another system moved every system's hash; version 2 kept a ``like=`` factory's body, so an edit to a
    system's body moved every variant built like it; a record of an earlier version is compared by its
    revision's copy."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    found, wanted, like, drop = False, set(), set(), []
    for stmt in tree.body:
        regs = _registers(stmt) if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) else \
            [n for d in stmt.decorator_list for n in _registers(d)]
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if system in regs:
                found = True
                wanted.add(stmt.name)
            continue  # another's factory too is kept when something kept names it (a variant built like it)
        if regs and system not in regs:
            drop.append(stmt)  # another system's registration (a variant call)
            continue
        found = found or system in regs
        as_like = {id(kw.value) for c in ast.walk(stmt) if isinstance(c, ast.Call) for kw in c.keywords
                   if kw.arg == "like" and isinstance(kw.value, ast.Name)}
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and n.id in funcs:
                (like if id(n) in as_like else wanted).add(n.id)
    if not found:
        return None
    used, todo = set(), sorted(wanted)
    while todo:
        name = todo.pop()
        if name in used or name not in funcs:
            continue
        used.add(name)
        todo += [n.id for n in ast.walk(funcs[name]) if isinstance(n, ast.Name) and n.id in funcs]
    drop += [f for name, f in funcs.items() if name not in used and name not in like and f not in drop]
    lines = source.splitlines(keepends=True)
    for node in drop:
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        for i in range(start - 1, node.end_lineno or node.lineno):
            lines[i] = ""
    for name in sorted(like - used):  # only its signature and docstring count (not what registers it as itself)
        for d in funcs[name].decorator_list:
            for i in range(d.lineno - 1, d.end_lineno or d.lineno):
                lines[i] = ""
        body = funcs[name].body
        doc = body[0] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else None
        rest = body[1:] if doc is not None else body
        if rest and rest[0].lineno > (doc.end_lineno if doc is not None else funcs[name].lineno):
            for i in range(rest[0].lineno - 1, funcs[name].end_lineno or rest[0].lineno):
                lines[i] = ""
    # the kept lines only, blank ones left out: another system's code added or removed moves no line that counts
    return hashlib.sha256("".join(line for line in lines if line.strip()).encode()).hexdigest()[:HASH_CHARS]


def _registering_path(factory: Callable[..., Any] | None) -> Path | None:
    """The file of the module that registers a system's factory (a variant: the module that calls
    ``register_variant``, where its builder lives)."""
    if factory is None:
        return None
    target = inspect.unwrap(getattr(factory, "__talkwalk_builder__", None) or factory)
    mod = sys.modules.get(getattr(target, "__module__", None) or "")
    return Path(mod.__file__) if mod is not None and getattr(mod, "__file__", None) else None


def rel(path: Path, root: Path) -> str:
    """A path relative to the project root (POSIX), or absolute when it lies outside it."""
    p = Path(path).resolve()
    try:
        return p.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(p)


def resolve(relpath: str, root: Path) -> Path:
    p = Path(relpath)
    return p if p.is_absolute() else root / p


# ----------------------------------------------------------------- import closure

def module_file(name: str, root: Path) -> Path | None:
    """The source file of a module under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None


def imported_names(nodes: Iterable[ast.AST], module: str, is_package: bool) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` among ``nodes`` may load (relative ones resolved)."""
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return out


def _in_scope(name: str, scope: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in scope)


def closure(start: Iterable[str], scope: tuple[str, ...], root: Path, skip: Iterable[str] = ()) -> set[Path]:
    """Files of the modules in ``start`` and, transitively, of every in-scope module they import, with the
    ``__init__.py`` of each package on the way; modules in ``skip`` are not followed."""
    seen: set[str] = set(skip)
    files: set[Path] = set()
    todo = [s for s in start]
    while todo:
        name = todo.pop()
        if name in seen or not _in_scope(name, scope):
            continue
        seen.add(name)
        path = module_file(name, root)
        if path is None:
            continue  # a name imported from a module, not a module
        files.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages' __init__.py
        tree = _parse(path)
        if tree is not None:
            todo += sorted(imported_names(ast.walk(tree), name, path.name == "__init__.py"))
    return files


def _factory_nodes(tree: ast.Module, func_name: str | None) -> list[ast.AST]:
    """The nodes of a registering module that can affect one factory: every top-level statement except the
    bodies of functions, plus the factory's body and the bodies of the module's functions it calls (transitively)."""
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if func_name not in funcs:
        return list(ast.walk(tree))  # not found: the whole module
    nodes: list[ast.AST] = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes += stmt.decorator_list  # decorators run at import
            for d in stmt.decorator_list:
                nodes += list(ast.walk(d))
            nodes += list(ast.walk(stmt.args))
        else:
            nodes += list(ast.walk(stmt))
    used, todo = set(), [func_name]
    while todo:
        name = todo.pop()
        if name in used or name not in funcs:
            continue
        used.add(name)
        body = list(ast.walk(funcs[name]))
        nodes += body
        todo += [n.id for n in body if isinstance(n, ast.Name) and n.id in funcs]
    return nodes


def system_files(factory: Callable[..., Any], root: Path) -> set[Path]:
    """The system's own code: what its registering module and factory import inside its top-level package."""
    target = getattr(factory, "__talkwalk_builder__", None) or factory
    target = inspect.unwrap(target)
    modname = getattr(target, "__module__", None)
    mod = sys.modules.get(modname or "")
    path = Path(mod.__file__) if mod is not None and getattr(mod, "__file__", None) else None
    if path is None or not modname:
        return set()
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return {path}  # a plugin installed elsewhere: its registering file only
    top = modname.split(".")[0]
    tree = _parse(path)
    if tree is None:
        return {path}
    nodes = _factory_nodes(tree, getattr(target, "__name__", None))
    is_pkg = path.name == "__init__.py"
    start = sorted(imported_names(nodes, modname, is_pkg))
    parts = modname.split(".")
    start += [".".join(parts[:i]) for i in range(1, len(parts))]
    # the registering module itself is read above, only as far as this factory goes
    return {path} | closure(start, (top,), root, skip=(modname,))


def harness_files(family_module: str, root: Path) -> set[Path]:
    files = closure([family_module, *ALWAYS], HARNESS_SCOPE, root)
    for pkg in HARNESS_SCOPE:
        folder = root.joinpath(*pkg.split("."))
        if folder.is_dir():
            files |= {p for p in folder.rglob("*.yaml") if "__pycache__" not in p.parts}
    return files


# ----------------------------------------------------------------- git

def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def dirty(paths: list[str], root: Path) -> list[str] | None:
    """The given files (relative to ``root``) that are modified, added, untracked or ignored in git;
    None when ``root`` is no git checkout."""
    inside = [p for p in paths if not Path(p).is_absolute()]
    if not inside:
        return []
    out = _git(root, "status", "--porcelain", "--untracked-files=all", "--ignored", "--", *inside)
    if out is None or out.returncode != 0:
        return None
    found = set()
    for line in out.stdout.splitlines():
        name = line[3:]
        if " -> " in name:
            name = name.split(" -> ", 1)[1]
        found.add(name.strip('"'))
    return sorted(p for p in inside if p in found)


def revision(root: Path | None = None) -> str | None:
    """HEAD, with ``-dirty`` when the tree has any change, untracked files included (run outputs excepted)."""
    root = root or project_root()
    out = _git(root, "rev-parse", "HEAD")
    if out is None or out.returncode != 0 or not out.stdout.strip():
        return None
    rev = out.stdout.strip()
    st = _git(root, "status", "--porcelain", "--untracked-files=normal", "--", ".",
              *(f":(exclude){d}" for d in OUTPUT_DIRS))
    if st is None or st.returncode != 0:
        return rev
    return rev + ("-dirty" if st.stdout.strip() else "")


# ----------------------------------------------------------------- the record

def fingerprint(*, family_module: str, system_factory: Callable[..., Any] | None, spec_path: Path | None,
                card_path: Path | None, steering_file: Path | None, dataset_fingerprint: str | None,
                root: Path | None = None, system_name: str | None = None) -> dict[str, Any]:
    """The provenance of one run: ``{revision, dirty_files, files: {relpath: hash}, code_hash, dataset_fingerprint,
    scoped}``; ``scoped`` is ``{relpath: {"system": name, "hash": registration_hash}}`` for the system's
    registering module (empty without a system)."""
    root = (root or project_root()).resolve()
    paths = harness_files(family_module, root)
    if system_factory is not None:
        paths |= system_files(system_factory, root)
    for extra in (spec_path, card_path, steering_file):
        if extra is not None and Path(extra).is_file():
            paths.add(Path(extra))
    files = {rel(p, root): file_hash(p) for p in paths}
    files = dict(sorted(files.items()))
    dirty_files = dirty(list(files), root)
    scoped: dict[str, dict[str, str]] = {}
    reg = _registering_path(system_factory)
    if system_factory is not None and system_name is None:
        from talkwalk_bench.registry import SYSTEMS

        system_name = next((n for n in SYSTEMS.names() if SYSTEMS.get(n) is system_factory), None)
    if reg is not None and system_name and rel(reg, root) in files:
        try:
            h = registration_hash(reg.read_text(encoding="utf-8"), system_name)
        except (OSError, UnicodeDecodeError):
            h = None
        if h is not None:
            scoped[rel(reg, root)] = {"system": system_name, "hash": h, "version": SCOPE_VERSION}
    return {"revision": revision(root), "dirty_files": dirty_files, "files": files, "code_hash": combined_hash(files),
            "dataset_fingerprint": dataset_fingerprint, "scoped": scoped}


def _recorded_scope(relpath: str, h: str | None, system: str, revision_: str | None, root: Path) -> str | None:
    """The registration hash of ``relpath`` for ``system`` as it was at ``revision_`` (``git show``), provided
    that copy is the one recorded (its hash is ``h``); None when that cannot be established."""
    if not revision_ or revision_.endswith("-dirty") or not h or Path(relpath).is_absolute():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "show", f"{revision_}:{relpath}"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or hashlib.sha256(out.stdout).hexdigest()[:HASH_CHARS] != h:
        return None
    try:
        return registration_hash(out.stdout.decode("utf-8"), system)
    except UnicodeDecodeError:
        return None


def _current_scope(relpath: str, system: str, root: Path, cache: dict[str, Any]) -> str | None:
    key = ("now", relpath, system)
    if key not in cache:
        try:
            cache[key] = registration_hash(resolve(relpath, root).read_text(encoding="utf-8"), system)
        except (OSError, UnicodeDecodeError):
            cache[key] = None
    return cache[key]


def _recorded_scope_of(relpath: str, system: str, prov: dict[str, Any], root: Path, cache: dict[str, Any]) -> str | None:
    """What ``relpath`` held for ``system`` when the result was made: the recorded ``scoped`` hash, or, for a
    result recorded before ``scoped`` existed or by an earlier ``SCOPE_VERSION``, the hash of its revision's copy
    (looked up only for a module that registers the system now)."""
    entry = (prov.get("scoped") or {}).get(relpath)
    if isinstance(entry, dict) and entry.get("system") != system:
        return None
    if isinstance(entry, dict) and entry.get("version") == SCOPE_VERSION:
        return entry.get("hash")
    if "scoped" in prov and not isinstance(entry, dict):
        return None  # recorded with scoping, and this file is not where the system was registered
    # recorded before ``scoped`` existed, or by an earlier version of ``registration_hash``: the revision's copy
    if relpath.endswith(".py") and _current_scope(relpath, system, root, cache) is not None:
        h = (prov.get("files") or {}).get(relpath)
        key = ("rev", relpath, h, system, prov.get("revision"))
        if key not in cache:
            cache[key] = _recorded_scope(relpath, h, system, prov.get("revision"), root)
        return cache[key]
    return None


def changed_files(files: dict[str, str | None], root: Path | None = None,
                  hasher: Callable[[Path], str | None] = file_hash, cache: dict[str, Any] | None = None,
                  *, prov: dict[str, Any] | None = None, system: str | None = None) -> list[str]:
    """The recorded files whose content differs now (or that are gone), sorted. With the result's ``prov`` and
    ``system``, a module that registers the system counts as changed only when what it holds for the system
    changed (``registration_hash``), not when another system's registration in it did."""
    root = root or project_root()
    cache = {} if cache is None else cache
    out = []
    for relpath, h in files.items():
        p = resolve(relpath, root)
        key = str(p)
        if key not in cache:
            cache[key] = hasher(p)
        if cache[key] != h:
            if system and prov is not None:
                old = _recorded_scope_of(relpath, system, prov, root, cache)
                if old is not None and _current_scope(relpath, system, root, cache) == old:
                    continue  # only other systems' part of the module changed
            out.append(relpath)
    return sorted(out)


def effective_code_hash(prov: dict[str, Any], system: str | None, root: Path | None = None,
                        cache: dict[str, Any] | None = None) -> str:
    """``code_hash`` with each module that registers ``system`` counted only as far as it concerns it: two results
    of a row whose code differs only in other systems' registrations are not mixed."""
    root = root or project_root()
    cache = {} if cache is None else cache
    files = dict(prov.get("files") or {})
    scoped = {}
    for relpath in files if system else ():
        old = _recorded_scope_of(relpath, system, prov, root, cache)
        if old is not None:
            scoped[relpath] = "scoped:" + old
    if not scoped:
        return str(prov.get("code_hash"))
    return combined_hash({**files, **scoped})


def is_current(prov: dict[str, Any] | None, root: Path | None = None, system: str | None = None) -> bool:
    """Whether a result's provenance says it was made by the code now in the tree at a clean state: a
    fingerprint is recorded, none of its files was uncommitted, and none has changed since (what the
    leaderboard marks stale or dirty, row by row, and what ``make results`` reruns)."""
    return why_not_current(prov, root, system) is None


def why_not_current(prov: dict[str, Any] | None, root: Path | None = None, system: str | None = None,
                    most: int = 3) -> str | None:
    """Why a result is not current, in words (``changed since the run: a.py, b.py and 4 more``), or None when
    ``is_current``."""
    files = (prov or {}).get("files")
    if not isinstance(files, dict) or not files:
        return "no code fingerprint recorded"
    if prov.get("dirty_files"):
        return "made with uncommitted files: " + _listed(list(prov["dirty_files"]), most)
    changed = changed_files(files, root, prov=prov, system=system)
    return "changed since the run: " + _listed(changed, most) if changed else None


def _listed(names: list[str], most: int) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
