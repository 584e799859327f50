"""Reader for RecBole atomic files: tab-separated, with a typed header ``name:type``.

Types: ``token`` (str), ``token_seq`` (tuple of str, space-separated),
``float`` (float; empty is NaN), ``float_seq`` (tuple of float).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talkwalk_bench.errors import DataFormatError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass(frozen=True)
class AtomicTable:
    """Columns of one atomic file, by field name (header order kept)."""

    path: Path
    types: dict[str, str]
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def rows(self) -> list[dict[str, Any]]:
        names = list(self.columns)
        return [dict(zip(names, vals, strict=True)) for vals in zip(*self.columns.values(), strict=True)]


_TYPED = re.compile(r"[^\t]*?:(?:" + "|".join(sorted(FIELD_TYPES, key=len, reverse=True)) + r")(?=$|[^\w])")
_SEPARATORS = {",": "','", ";": "';'", "|": "'|'", " ": "spaces"}


def _other_separator(text: str) -> str | None:
    """The separator a line uses instead of tabs, if it has no tab and one of the usual others."""
    if "\t" in text:
        return None
    counts = {sep: text.count(sep) for sep in _SEPARATORS}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    return _SEPARATORS[sep] if n else None


def _parse_header(path: Path, line: str) -> list[tuple[str, str]]:
    text = line.rstrip("\r\n")
    sep = _other_separator(text)
    if sep and len(_TYPED.findall(text)) > 1:
        raise DataFormatError(
            f"{path}:1: the header's fields are separated by {sep}; atomic files are tab-separated: "
            f"put a tab between fields (header and every row)"
        )
    fields = []
    for col, raw in enumerate(line.rstrip("\r\n").split("\t"), start=1):
        name, sep, ftype = raw.rpartition(":")
        if not sep or not name:
            raise DataFormatError(
                f"{path}:1: column {col} header '{raw}' is not 'name:type'; "
                f"write it as e.g. '{raw or 'field'}:token' (types: {', '.join(FIELD_TYPES)})"
            )
        if ftype not in FIELD_TYPES:
            raise DataFormatError(
                f"{path}:1: column {col} ('{name}') has unknown type '{ftype}'; "
                f"use one of {', '.join(FIELD_TYPES)}"
            )
        fields.append((name, ftype))
    names = [n for n, _ in fields]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DataFormatError(f"{path}:1: field '{sorted(dup)[0]}' appears twice in the header; rename one")
    return fields


def _convert(path: Path, lineno: int, col: int, name: str, ftype: str, raw: str) -> Any:
    if ftype == "token":
        return raw
    if ftype == "token_seq":
        return tuple(raw.split()) if raw else ()
    try:
        if ftype == "float":
            return float(raw) if raw.strip() else math.nan
        return tuple(float(x) for x in raw.split())
    except ValueError:
        raise DataFormatError(
            f"{path}:{lineno}: column {col} ('{name}', {ftype}) holds '{raw[:40]}', which is not a number; "
            f"fix the value or declare the column as token"
        ) from None


def read_atomic(path: str | Path, *, required: tuple[str, ...] = ()) -> AtomicTable:
    """Read one atomic file; errors name the file, line and column."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        try:
            header = handle.readline()
            if not header.strip():
                raise DataFormatError(f"{path}:1: empty file or empty header; the first line must name the fields, e.g. 'user_id:token'")
            fields = _parse_header(path, header)
            columns: dict[str, list[Any]] = {name: [] for name, _ in fields}
            lists = [columns[name] for name, _ in fields]
            n = len(fields)
            for lineno, line in enumerate(handle, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split("\t")
                if len(parts) != n:
                    sep = _other_separator(line) if len(parts) == 1 else None
                    if sep:
                        raise DataFormatError(
                            f"{path}:{lineno}: expected {n} tab-separated columns, found values separated by {sep}; "
                            "atomic files are tab-separated: put a tab between values"
                        )
                    raise DataFormatError(
                        f"{path}:{lineno}: expected {n} tab-separated columns, found {len(parts)}; "
                        f"the file may be truncated or use spaces instead of tabs"
                    )
                for col, ((name, ftype), raw, out) in enumerate(zip(fields, parts, lists, strict=True), start=1):
                    out.append(_convert(path, lineno, col, name, ftype, raw))
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8") from None
    types = dict(fields)
    for name in required:
        if name not in types:
            raise DataFormatError(
                f"{path}:1: required field '{name}' is missing from the header "
                f"(found: {', '.join(types)}); add it"
            )
    return AtomicTable(path, types, columns)


def write_atomic(path: str | Path, types: dict[str, str], rows: list[dict[str, Any]]) -> None:
    """Write rows as an atomic file (used to hand splits to RecBole and in converters)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def fmt(value: Any, ftype: str) -> str:
        if ftype.endswith("_seq"):
            return " ".join(_fmt_scalar(v) for v in value)
        return _fmt_scalar(value)

    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(f"{n}:{t}" for n, t in types.items()) + "\n")
        for row in rows:
            fh.write("\t".join(fmt(row[n], t) for n, t in types.items()) + "\n")
    tmp.replace(path)


def _fmt_scalar(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)
