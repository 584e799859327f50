"""Datasets: a folder of atomic files, read into interactions, items and users."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from talkwalk_bench.data.atomic import read_atomic
from talkwalk_bench.errors import DataFormatError, UnknownNameError
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.types import Interactions

BUNDLED = {"ml-100k": "MovieLens-100K as shipped inside the recbole wheel"}


def bundled_path(name: str) -> Path:
    """Folder of a bundled dataset, found without importing the package that carries it."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataFormatError(
            f"dataset '{name}' is read from the installed recbole wheel, which is missing; "
            "run `make setup` (or `pip install recbole==1.2.1`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / name
    if not path.is_dir():
        raise DataFormatError(f"{path}: bundled dataset '{name}' not found in the recbole wheel")
    return path


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset. Interactions are sorted by user, then time (ties keep file order)."""

    name: str
    path: Path
    fingerprint: str
    interactions: Interactions
    items: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]
    item_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    item_types: dict[str, str] = field(default_factory=dict)
    user_types: dict[str, str] = field(default_factory=dict)
    untimed: bool = False  # no timestamp column: file order is the order (only with allow_untimed)
    unknown_items: int = 0  # interaction items missing from the item file (only with allow_unknown_items)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def resolve_dataset(ref: str) -> tuple[str, Path]:
    """A bundled name or a folder path -> (name, folder)."""
    if ref in BUNDLED:
        return ref, bundled_path(ref)
    path = Path(ref)
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if not inters:
            raise DataFormatError(f"{path}: no .inter file in this folder; a dataset folder holds NAME.inter (and optionally NAME.item, NAME.user)")
        names = {p.stem for p in inters}
        name = path.name if path.name in names else inters[0].stem
        if len(names) > 1 and path.name not in names:
            raise DataFormatError(f"{path}: several .inter files ({', '.join(sorted(names))}); keep one, or name the folder after the one to use")
        return name, path
    if path.suffix == ".inter" and path.is_file():
        return path.stem, path.parent
    known = sorted(BUNDLED)
    raise UnknownNameError(
        f"unknown dataset '{ref}': not a bundled name nor a folder.{did_you_mean(ref, known)} "
        f"Bundled: {', '.join(known)}; or pass a folder of atomic files"
    )


def fingerprint_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.name):
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def load_dataset(ref: str, *, allow_untimed: bool = False, allow_unknown_items: bool = False) -> Dataset:
    """Load a dataset; a missing timestamp column, an empty interaction file and
    interactions on items the item file does not list are errors unless allowed."""
    name, folder = resolve_dataset(ref)
    return _load(name, str(folder.resolve()), allow_untimed, allow_unknown_items)


@lru_cache(maxsize=4)
def _load(name: str, folder_str: str, allow_untimed: bool = False, allow_unknown_items: bool = False) -> Dataset:
    folder = Path(folder_str)
    inter_path = folder / f"{name}.inter"
    inter = read_atomic(inter_path, required=("user_id", "item_id"))
    files = [inter_path]

    n = len(inter)
    if n == 0:
        raise DataFormatError(f"{inter_path}: no interactions (the file has a header only); add rows, one interaction per line")
    if "timestamp" not in inter.columns and not allow_untimed:
        # without time the leave-one-out split would silently follow file order
        raise DataFormatError(
            f"{inter_path}:1: no 'timestamp' field, so the time-ordered split is undefined; add a 'timestamp:float' "
            "column, or pass --allow-untimed to order each user's interactions by file position"
        )
    users = np.array(inter.columns["user_id"], dtype=object)
    items = np.array(inter.columns["item_id"], dtype=object)
    if "timestamp" in inter.columns:
        if inter.types["timestamp"] != "float":
            raise DataFormatError(f"{inter_path}:1: field 'timestamp' must be typed float, not {inter.types['timestamp']}; change the header to 'timestamp:float'")
        ts = np.asarray(inter.columns["timestamp"], dtype=np.float64)
    else:  # no time: file order is the order
        ts = np.arange(n, dtype=np.float64)
    ratings = (
        np.asarray(inter.columns["rating"], dtype=np.float64)
        if inter.types.get("rating") == "float"
        else np.full(n, np.nan)
    )
    # Stable sort by (user, time): ties keep the file's order, so splits are deterministic.
    user_codes, user_index = np.unique(users, return_inverse=True)
    order = np.lexsort((np.arange(n), ts, user_index))
    interactions = Interactions(users[order], items[order], ts[order], ratings[order])

    item_table: dict[str, dict[str, Any]] = {}
    item_types: dict[str, str] = {}
    item_path = folder / f"{name}.item"
    if item_path.exists():
        files.append(item_path)
        table = read_atomic(item_path, required=("item_id",))
        item_types = {k: v for k, v in table.types.items() if k != "item_id"}
        for row in table.rows():
            item_table[row.pop("item_id")] = row
    user_table: dict[str, dict[str, Any]] = {}
    user_types: dict[str, str] = {}
    user_path = folder / f"{name}.user"
    if user_path.exists():
        files.append(user_path)
        table = read_atomic(user_path, required=("user_id",))
        user_types = {k: v for k, v in table.types.items() if k != "user_id"}
        for row in table.rows():
            user_table[row.pop("user_id")] = row

    # Catalog: every item with metadata, then items seen only in interactions.
    catalog = list(item_table)
    seen = set(catalog)
    unknown = [it for it in dict.fromkeys(interactions.item_ids.tolist()) if it not in seen] if item_table else []
    if unknown and not allow_unknown_items:
        raise DataFormatError(
            f"{inter_path}: {len(unknown)} item(s) in the interactions are not in {item_path.name} "
            f"(e.g. {', '.join(map(repr, unknown[:3]))}); add them to the item file, or pass --allow-unknown-items "
            "to add them to the catalog without metadata"
        )
    for it in dict.fromkeys(interactions.item_ids.tolist()):
        if it not in seen:
            catalog.append(it)
            seen.add(it)
            item_table.setdefault(it, {})
    all_users = list(dict.fromkeys(user_codes.tolist()))
    for u in all_users:
        user_table.setdefault(u, {})

    return Dataset(
        name=name,
        path=folder,
        fingerprint=fingerprint_files(files),
        interactions=interactions,
        items=item_table,
        users=user_table,
        item_ids=tuple(catalog),
        user_ids=tuple(all_users),
        item_types=item_types,
        user_types=user_types,
        untimed="timestamp" not in inter.columns,
        unknown_items=len(unknown),
    )
