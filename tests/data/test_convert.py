"""Converters: small files in each native format become datasets that `run` accepts."""

from __future__ import annotations

import gzip
import json

import pytest

from talkwalk_bench.cli import main
from talkwalk_bench.data import load_dataset
from talkwalk_bench.data.card import DatasetCard
from talkwalk_bench.errors import DataFormatError
from talkwalk_bench.yamlio import load_model


def _ml1m(d):
    d.mkdir()
    ratings = []
    for u in range(1, 6):
        for j, m in enumerate((1, 2, 3, 4, 5)):
            if (u + m) % 5 != 0:
                ratings.append(f"{u}::{m}::{(u * m) % 5 + 1}::{978300000 + 10 * u + j}")
    (d / "ratings.dat").write_text("\n".join(ratings) + "\n", encoding="latin-1")
    (d / "movies.dat").write_text(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
        "3::Heat (1995)::Action|Crime|Thriller\n4::Metropolis (1927)::Sci-Fi\n5::Amélie (2001)::Comedy|Romance\n", encoding="latin-1")
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n4::M::45::7::02460\n5::F::18::20::55455\n")
    return d


def _run_on(folder, tmp_path, card=None):
    argv = ["run", "--system", "popularity", "--task", "ranking", "--dataset", str(folder), "--output", str(tmp_path / "r.json"), "--no-progress", "--force"]
    return main(argv)


def test_ml1m(tmp_path):
    src = _ml1m(tmp_path / "src")
    out = tmp_path / "ml1m"
    assert main(["convert", "ml-1m", "--input", str(src), "--output", str(out)]) == 0
    ds = load_dataset(str(out))
    assert ds.n_items == 5 and ds.n_users == 5
    assert ds.items["4"]["release_year"] == "1927" and ds.items["5"]["movie_title"] == ("Amélie",)
    assert ds.items["1"]["genre"] == ("Animation", "Children's", "Comedy")
    assert ds.users["3"]["occupation"] == "scientist" and ds.users["2"]["occupation"] == "self-employed"
    card = load_model(DatasetCard, out / "ml-1m.card.yaml", DataFormatError)
    card.check_against(ds.item_types, ds.user_types, "card")
    assert card.item.attributes["genre"].kind == "multi_categorical"
    assert _run_on(out, tmp_path) == 0


def test_amazon_2023(tmp_path):
    reviews = tmp_path / "Toys.jsonl.gz"
    meta = tmp_path / "meta_Toys.jsonl"
    rows = []
    for u in range(4):
        for i in range(4):
            if u != i:
                rows.append({"rating": float(1 + (u + i) % 5), "title": "ok", "text": "fine", "asin": f"A{i}x", "parent_asin": f"P{i}",
                             "user_id": f"USER{u}", "timestamp": 1600000000000 + 1000 * (u * 4 + i), "helpful_vote": 0, "verified_purchase": True})
    with gzip.open(reviews, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    metas = [{"main_category": "Toys", "title": f"Toy {i}", "price": [9.99, "None", "$1,299.00", None][i], "store": f"Brand {i % 2}",
              "categories": ["Toys & Games", "Puzzles" if i % 2 else "Dolls"], "parent_asin": f"P{i}"} for i in range(4)]
    meta.write_text("\n".join(json.dumps(m) for m in metas) + "\n")
    out = tmp_path / "amazon"
    assert main(["convert", "amazon", "--reviews", str(reviews), "--meta", str(meta), "--output", str(out), "--name", "toys"]) == 0
    ds = load_dataset(str(out))
    assert ds.items["P0"]["price"] == 9.99 and ds.items["P2"]["price"] == 1299.0
    assert ds.items["P1"]["brand"] == "Brand_1" and "Puzzles" in ds.items["P1"]["category"]
    assert ds.interactions.timestamps.max() < 2e9  # milliseconds became seconds
    load_model(DatasetCard, out / "toys.card.yaml", DataFormatError)
    assert _run_on(out, tmp_path) == 0


def test_steam_python_literal_lines(tmp_path):
    reviews = tmp_path / "steam_reviews.json"
    games = tmp_path / "steam_games.json"
    lines = []
    for u in range(4):
        for g in range(3):
            lines.append(repr({"username": f"gamer {u}", "product_id": str(100 + g), "date": f"2017-0{1 + g}-1{u}", "hours": 1.5 * g, "text": "fun"}))
    reviews.write_text("\n".join(lines) + "\n")
    games.write_text("\n".join([
        repr({"app_name": "Space Game", "genres": ["Action", "Indie"], "tags": ["Space"], "price": 4.99, "release_date": "2016-05-01", "id": "100", "developer": "Dev A"}),
        repr({"app_name": "Farm Life", "genres": ["Simulation"], "tags": ["Relaxing"], "price": "Free to Play", "release_date": "2014-01-01", "id": "101", "developer": "Dev B"}),
        repr({"app_name": "Dungeon", "genres": ["RPG"], "price": 14.99, "release_date": "soon", "id": "102"}),
        repr({"app_name": "no id"}),
    ]) + "\n")
    out = tmp_path / "steam"
    assert main(["convert", "steam", "--reviews", str(reviews), "--meta", str(games), "--output", str(out)]) == 0
    ds = load_dataset(str(out))
    assert ds.items["101"]["price"] == 0.0 and ds.items["102"]["release_year"] == ""
    assert "gamer_0" in ds.users
    assert _run_on(out, tmp_path) == 0


def test_bad_native_file_is_one_line(tmp_path, capsys):
    src = _ml1m(tmp_path / "src")
    (src / "ratings.dat").write_text("1::2::3\n")
    assert main(["convert", "ml-1m", "--input", str(src), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "ratings.dat:1: expected 4 '::'-separated fields, found 3" in err and len(err.splitlines()) == 1


def test_missing_inputs(tmp_path, capsys):
    assert main(["convert", "amazon", "--reviews", str(tmp_path / "r.jsonl"), "--output", str(tmp_path)]) == 2
    assert "needs --reviews FILE and --meta FILE" in capsys.readouterr().err
    with pytest.raises(DataFormatError, match="file not found"):
        from talkwalk_bench.data.convert import convert_ml1m

        convert_ml1m(tmp_path / "nothing", tmp_path / "o")
