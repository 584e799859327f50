"""Converters from native dataset formats to atomic files plus a dataset-card skeleton.

Supported: MovieLens-1M (``ratings.dat``, ``movies.dat``, ``users.dat``),
Amazon Reviews 2023 (one category's review and metadata JSONL, optionally
gzipped), and Steam (review and game metadata files, JSON or Python-literal
lines, optionally gzipped). Output field names follow RecBole's own atomic
copies where they exist, so a converted folder and RecBole's files agree.
"""

from __future__ import annotations

import ast
import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from talkwalk_bench.data.atomic import write_atomic
from talkwalk_bench.errors import DataFormatError

ML1M_AGES = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
]


def _open_text(path: Path, encoding: str = "utf-8"):
    if not path.exists():
        raise DataFormatError(f"{path}: file not found; pass the folder or files of the native download")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, errors="replace")
    return path.open(encoding=encoding, errors="replace")


def _split_dat(path: Path, n_fields: int, encoding: str = "latin-1") -> Iterator[tuple[int, list[str]]]:
    with _open_text(path, encoding) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("::")
            if len(parts) != n_fields:
                raise DataFormatError(f"{path}:{lineno}: expected {n_fields} '::'-separated fields, found {len(parts)}")
            yield lineno, parts


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSON lines, or Python-literal dict lines (the Steam files are written that way)."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                try:
                    rec = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    raise DataFormatError(f"{path}:{lineno}: neither JSON nor a Python dict literal; is this the right file?") from None
            if not isinstance(rec, dict):
                raise DataFormatError(f"{path}:{lineno}: expected an object per line, found {type(rec).__name__}")
            yield lineno, rec


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"\s+", text.replace("\t", " ").strip()) if t)


def _token(text: Any) -> str:
    return re.sub(r"\s+", "_", str(text).strip()) if text not in (None, "") else ""


def convert_ml1m(src: Path, out: Path, name: str = "ml-1m") -> Path:
    src = Path(src)
    inter = []
    for lineno, (u, i, r, t) in _split_dat(src / "ratings.dat", 4):
        try:
            inter.append({"user_id": u, "item_id": i, "rating": float(r), "timestamp": float(t)})
        except ValueError:
            raise DataFormatError(f"{src / 'ratings.dat'}:{lineno}: rating or timestamp is not a number") from None
    items = []
    for _, (i, title, genres) in _split_dat(src / "movies.dat", 3):
        m = re.match(r"^(.*)\s+\((\d{4})\)\s*$", title)
        t, year = (m.group(1), m.group(2)) if m else (title, "")
        items.append({"item_id": i, "movie_title": _tokens(t), "release_year": year, "genre": tuple(g for g in genres.split("|") if g)})
    users = []
    for lineno, (u, g, a, o, z) in _split_dat(src / "users.dat", 5):
        try:
            occ = ML1M_OCCUPATIONS[int(o)]
        except (ValueError, IndexError):
            raise DataFormatError(f"{src / 'users.dat'}:{lineno}: occupation code {o!r} is not 0-20") from None
        users.append({"user_id": u, "age": a, "gender": g, "occupation": _token(occ), "zip_code": z})
    return _write(out, name, inter, items, users,
                  {"item_id": "token", "movie_title": "token_seq", "release_year": "token", "genre": "token_seq"},
                  {"user_id": "token", "age": "token", "gender": "token", "occupation": "token", "zip_code": "token"})


def convert_amazon(reviews: Path, meta: Path, out: Path, name: str = "amazon") -> Path:
    inter = []
    for lineno, rec in _records(Path(reviews)):
        try:
            user = rec["user_id"]
            item = rec.get("parent_asin") or rec["asin"]
            ts = float(rec["timestamp"]) / 1000.0  # milliseconds in the 2023 release
            rating = float(rec.get("rating", math.nan))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{reviews}:{lineno}: review lacks a usable field ({exc}); expected user_id, parent_asin, timestamp, rating") from None
        inter.append({"user_id": _token(user), "item_id": _token(item), "rating": rating, "timestamp": ts})
    items = []
    for lineno, rec in _records(Path(meta)):
        item = rec.get("parent_asin")
        if not item:
            raise DataFormatError(f"{meta}:{lineno}: metadata record has no parent_asin")
        price = rec.get("price")
        try:
            price = float(str(price).replace("$", "").replace(",", "")) if price not in (None, "", "None") else math.nan
        except ValueError:
            price = math.nan
        cats = rec.get("categories") or []
        items.append({"item_id": _token(item), "title": _tokens(str(rec.get("title") or "")),
                      "price": price, "category": tuple(_token(c) for c in cats if c),
                      "brand": _token(rec.get("store") or "")})
    return _write(out, name, inter, items, None,
                  {"item_id": "token", "title": "token_seq", "price": "float", "category": "token_seq", "brand": "token"}, None)


def convert_steam(reviews: Path, games: Path, out: Path, name: str = "steam") -> Path:
    inter = []
    for lineno, rec in _records(Path(reviews)):
        user = rec.get("username") or rec.get("user_id")
        item = rec.get("product_id") or rec.get("item_id")
        date = rec.get("date")
        if not user or not item or not date:
            raise DataFormatError(f"{reviews}:{lineno}: review needs username, product_id and date")
        try:
            ts = datetime.strptime(str(date), "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise DataFormatError(f"{reviews}:{lineno}: date {date!r} is not YYYY-MM-DD") from None
        hours = rec.get("hours")
        inter.append({"user_id": _token(user), "item_id": _token(item), "rating": float(hours) if hours is not None else math.nan, "timestamp": ts})
    items = []
    for _lineno, rec in _records(Path(games)):
        item = rec.get("id")
        if not item:
            continue  # the public file has a few records without an id
        price = rec.get("price")
        try:
            price = float(price)
        except (TypeError, ValueError):
            price = 0.0 if str(price).lower().startswith("free") else math.nan
        year = str(rec.get("release_date") or "")[:4]
        items.append({"item_id": _token(item), "title": _tokens(str(rec.get("app_name") or rec.get("title") or "")),
                      "genre": tuple(_token(g) for g in rec.get("genres") or []), "tag": tuple(_token(t) for t in rec.get("tags") or []),
                      "price": price, "release_year": year if year.isdigit() else "",
                      "developer": _token(rec.get("developer") or "")})
    return _write(out, name, inter, items, None,
                  {"item_id": "token", "title": "token_seq", "genre": "token_seq", "tag": "token_seq", "price": "float",
                   "release_year": "token", "developer": "token"}, None)


def _write(out: Path, name: str, inter, items, users, item_types, user_types) -> Path:
    out = Path(out)
    if not inter:
        raise DataFormatError(f"no interactions found for '{name}'; check the input files")
    write_atomic(out / f"{name}.inter", {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"}, inter)
    write_atomic(out / f"{name}.item", item_types, items)
    if users is not None:
        write_atomic(out / f"{name}.user", user_types, users)
    card = card_skeleton(name, items, item_types, users, user_types)
    (out / f"{name}.card.yaml").write_text(
        "# Generated dataset-card skeleton: edit the descriptions (the language bridge) and aliases,\n"
        "# then copy it to tasks/cards/ or pass it with --card.\n" + yaml.safe_dump(card, sort_keys=False, allow_unicode=True),
        encoding="utf-8")
    return out


def _numeric(values) -> list[float]:
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(x):
            out.append(x)
    return out


def _attribute(field: str, ftype: str, values: list[Any], max_values: int) -> dict[str, Any] | None:
    if ftype == "token_seq" and field in ("title", "movie_title"):
        return {"field": field, "kind": "text", "description": f"the {field.replace('_', ' ')}"}
    nums = _numeric(values) if ftype in ("float", "token") else []
    if ftype == "float" or (nums and len(nums) >= 0.9 * max(1, sum(1 for v in values if v not in ("", None)))) and ftype == "token" and len(set(values)) > max_values:
        if not nums:
            return None
        lo, hi = min(nums), max(nums)
        qs = sorted(set(round(q, 2) for q in (lo, *_quantiles(nums, 4), hi)))
        bins = [{"label": f"{a:g}-{b:g}", "low": a, "high": b, "description": f"{field.replace('_', ' ')} between {a:g} and {b:g}", "aliases": []}
                for a, b in zip(qs[:-1], qs[1:], strict=True)]
        return {"field": field, "kind": "ordinal", "description": f"the {field.replace('_', ' ')}", "bins": bins}
    counts: Counter = Counter()
    for v in values:
        if isinstance(v, tuple):
            counts.update(v)
        elif v not in ("", None):
            counts[v] += 1
    if not counts:
        return None
    kind = "multi_categorical" if ftype == "token_seq" else "categorical"
    if len(counts) > max_values:
        return None  # ids, zip codes, free text: not a steerable attribute
    vals = {str(k): {"description": f"{field.replace('_', ' ')}: {str(k).replace('_', ' ')}", "aliases": [str(k).replace('_', ' ').lower()]}
            for k, _ in counts.most_common()}
    return {"field": field, "kind": kind, "description": f"the {field.replace('_', ' ')}", "values": vals}


def _quantiles(x: list[float], q: int) -> list[float]:
    s = sorted(x)
    return [s[int(len(s) * i / q)] for i in range(1, q)]


def card_skeleton(name: str, items, item_types, users=None, user_types=None, max_values: int = 60) -> dict[str, Any]:
    def entity(rows, types, id_field, noun):
        attrs = {}
        for f, t in types.items():
            if f == id_field:
                continue
            a = _attribute(f, t, [r.get(f) for r in rows], max_values)
            if a is not None:
                attrs[f] = a
        title = next((k for k, a in attrs.items() if a["kind"] == "text"), None)
        return {"id_field": id_field, "noun": noun, **({"title": title} if title else {}), "attributes": attrs}

    card: dict[str, Any] = {"dataset": name, "version": 1, "description": f"{name}, converted from its native format",
                            "item": entity(items, item_types, "item_id", "item")}
    if users:
        card["user"] = entity(users, user_types, "user_id", "user")
    return card


CONVERTERS = {"ml-1m": convert_ml1m, "amazon": convert_amazon, "steam": convert_steam}
