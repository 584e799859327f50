"""SASRec through RecBole: the harness scores it exactly as RecBole's evaluator does; cache; errors.

Everything trains a tiny model (1 epoch, hidden 16, 1 layer, 1 thread) on 80
users of MovieLens-100K, so the module stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from talkwalk_bench.data import leave_one_out, load_card, load_dataset
from talkwalk_bench.data.dataset import bundled_path
from talkwalk_bench.errors import BenchError
from talkwalk_bench.registry import build_system
from talkwalk_bench.results import read_result
from talkwalk_bench.tasks.base import FAMILIES, TaskContext
from talkwalk_bench.tasks.runner import RunConfig, run
from talkwalk_bench.tasks.spec import load_spec
from talkwalk_bench.types import Request, Turn

pytestmark = pytest.mark.slow

TINY = {"epochs": 1, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 2, "threads": 1,
        "train_batch_size": 512, "eval_batch_size": 256}
N_USERS = 80


@pytest.fixture(scope="module")
def small_ml(tmp_path_factory) -> Path:
    """The first 80 users of ml-100k (all their interactions) and the full item file."""
    src = bundled_path("ml-100k")
    folder = tmp_path_factory.mktemp("data") / "ml-small"
    folder.mkdir()
    lines = (src / "ml-100k.inter").read_text().splitlines()
    keep = {str(u) for u in range(1, N_USERS + 1)}
    body = [ln for ln in lines[1:] if ln.split("\t", 1)[0] in keep]
    (folder / "ml-small.inter").write_text("\n".join([lines[0], *body]) + "\n")
    (folder / "ml-small.item").write_text((src / "ml-100k.item").read_text())
    return folder


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sasrec-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALKWALK_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def trained(small_ml, cache_root):
    """A tiny SASRec trained through fit() (cached), with its split."""
    import torch

    torch.set_num_threads(1)
    split = leave_one_out(load_dataset(str(small_ml)))
    system, _ = build_system("sasrec", TINY)
    system.fit(split.train_data(load_card("ml-100k")), seed=0)
    return system, split


def _harness_means(system, dataset_path: Path, **options) -> tuple[dict[str, float], int]:
    """Play the ranking task's episodes (with task ``options``) against an already fitted system."""
    spec, _ = load_spec("ranking")
    family_cls = FAMILIES.get(spec.family)
    params = family_cls.parse_params(spec).model_copy(update=options)
    ctx = TaskContext(spec=spec, params=params, dataset=load_dataset(str(dataset_path)), seed=0)
    ctx.system = system
    family = family_cls(ctx)
    records = family.play(family.episodes())
    return {m: float(np.mean([r["metrics"][m] for r in records])) for m in ("nDCG@10", "Hit@10", "MRR@10")}, len(records)


def test_harness_metrics_equal_recboles_evaluator_on_the_same_model(small_ml, cache_root, monkeypatch):
    import torch

    torch.set_num_threads(1)
    split = leave_one_out(load_dataset(str(small_ml)))
    system, _ = build_system("sasrec", {**TINY, "cache": False})
    system._fit(split.train_data(), seed=0, test=split.test)

    ours, n = _harness_means(system, small_ml)
    theirs = system.recbole_evaluate("test", mask_history=True)
    assert n == len(split.test) == N_USERS
    assert ours["nDCG@10"] == pytest.approx(theirs["ndcg@10"], abs=1e-4)
    assert ours["Hit@10"] == pytest.approx(theirs["hit@10"], abs=1e-4)
    assert ours["MRR@10"] == pytest.approx(theirs["mrr@10"], abs=1e-4)
    assert theirs["hit@10"] > 0  # a vacuous 0 == 0 would prove nothing

    # RecBole leaves a sequential model's history in the ranking; the harness never does,
    # so without the mask the two can only agree by accident of the scores.
    unmasked = system.recbole_evaluate("test", mask_history=False)
    assert set(unmasked) == {"hit@10", "ndcg@10", "mrr@10"}


def test_unmasked_harness_equals_stock_recbole_on_a_model_trained_on_all_of_ml100k(cache_root):
    """No patch: RecBole's own full-sort evaluator, as shipped, against ``-O exclude_history=false``.

    One epoch of the default architecture on all 943 users (~2 CPU-minutes): a real model, not a toy.
    """
    import torch

    torch.set_num_threads(1)
    path = bundled_path("ml-100k")
    split = leave_one_out(load_dataset(str(path)))
    system, _ = build_system("sasrec", {"epochs": 1, "threads": 1, "cache": False})
    system._fit(split.train_data(), seed=0, test=split.test)

    stock = system.recbole_evaluate("test", mask_history=False)
    unmasked, n = _harness_means(system, path, exclude_history=False)
    masked, _ = _harness_means(system, path)
    assert n == 943
    assert unmasked["nDCG@10"] == pytest.approx(stock["ndcg@10"], abs=1e-4)
    assert unmasked["Hit@10"] == pytest.approx(stock["hit@10"], abs=1e-4)
    assert unmasked["MRR@10"] == pytest.approx(stock["mrr@10"], abs=1e-4)
    assert stock["ndcg@10"] > 0.03  # trained for real: above popularity's unmasked 0.0224
    # ml-100k never repeats an item, so the mask can only move the target up; it does, measurably
    assert masked["nDCG@10"] > unmasked["nDCG@10"] + 0.005


def test_recommend_excludes_history_and_handles_unknown_or_empty_history(trained):
    system, split = trained
    user = next(iter(split.test_item))
    hist = split.history(user, "test")
    req = Request(user_id=user, history=hist, exclude=frozenset(hist))
    ranking = system.recommend([req], k=20)[0]
    assert len(ranking.items) == 20 and not set(ranking.items) & set(hist)
    assert list(ranking.scores) == sorted(ranking.scores, reverse=True)

    scores = system.score_catalog([req, Request(user_id="x", history=("no-such-item",)), Request(user_id="y")])
    assert scores.shape == (3, len(system.item_ids))
    assert np.isfinite(scores[1]).any() and np.isfinite(scores[2]).any()
    # the top item of the full-sort scores that is not in the history is what recommend() puts first
    masked = scores[0].copy()
    masked[[system.item_ids.index(i) for i in hist]] = -np.inf
    assert system.item_ids[int(np.argmax(masked))] == ranking.items[0]
    # an unknown item in the history is ignored, not an error: same as no history
    assert np.allclose(scores[1], scores[2])


def test_second_fit_is_served_from_the_cache_with_identical_scores(trained, small_ml):
    system, split = trained
    again, _ = build_system("sasrec", TINY)
    again.fit(split.train_data(load_card("ml-100k")), seed=0)
    assert again.from_cache and not system.from_cache
    reqs = [Request(user_id=u, history=split.history(u, "test")) for u in list(split.test_item)[:5]]
    np.testing.assert_array_equal(system.score_catalog(reqs), again.score_catalog(reqs))


def test_corrupted_cache_entry_is_detected_and_retrained(trained):
    system, split = trained
    model_file = Path(system.cache_entry) / "model.pt"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    other, _ = build_system("sasrec", TINY)
    with pytest.warns(UserWarning, match="unusable"):
        other.fit(split.train_data(), seed=0)
    assert not other.from_cache
    assert model_file.stat().st_size > len(data) // 2  # rewritten by the retraining
    fresh, _ = build_system("sasrec", TINY)
    fresh.fit(split.train_data(), seed=0)
    assert fresh.from_cache


def test_run_through_the_cli_runner_leaves_no_recbole_files_in_the_working_directory(small_ml, cache_root, tmp_path, monkeypatch, trained):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TALKWALK_CACHE_DIR", str(cache_root))
    out = tmp_path / "out" / "sasrec.json"
    result = run(RunConfig(system="sasrec", task="ranking", dataset=str(small_ml), output=out, system_args=TINY, seed=1,
                           progress=False, card=Path(load_spec("ranking")[1]).parent / "cards" / "ml-100k.yaml"))
    assert result.status == "success" and result.system.args["epochs"] == 1
    assert result.metrics["nDCG@10"].n == N_USERS
    # the fit as the system reported it is in the result: epochs, training time, the cache entry by name
    assert result.fit["epochs_run"] >= 1 and result.fit["train_s"] > 0 and result.fit["cache_entry"]
    assert "/" not in result.fit["cache_entry"] and read_result(out).fit == result.fit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    for name in ("log", "saved", "log_tensorboard"):
        assert not (tmp_path / name).exists()
    assert any(cache_root.glob("sasrec/*/recbole.log"))


def test_bad_values_fail_with_one_line_naming_the_system_arg(trained):
    _, split = trained
    with pytest.raises(BenchError, match=r"-S hidden_size=10 must be a multiple of -S n_heads=3"):
        build_system("sasrec", {**TINY, "hidden_size": 10, "n_heads": 3})
    with pytest.raises(BenchError, match=r"Did you mean 'learning_rate'"):
        build_system("sasrec", {**TINY, "learnig_rate": 0.1})
    with pytest.raises(BenchError, match=r"-S data_path=\.\.\. is set by the system"):
        build_system("sasrec", {**TINY, "data_path": "/tmp"})
    with pytest.raises(BenchError, match=r"-S threads=-1 must be a non-negative integer"):
        build_system("sasrec", {**TINY, "threads": -1})
    # a value only RecBole can reject: the error comes back as one line naming the arg
    system, _ = build_system("sasrec", {**TINY, "hidden_act": "swishy", "cache": False})
    with pytest.raises(BenchError) as info:
        system.fit(split.train_data(), seed=0)
    msg = str(info.value)
    assert "-S hidden_act=" in msg and "\n" not in msg


def test_filter_variant_keeps_constraints_on_a_trained_model(trained, cache_root):
    _, split = trained
    system, _ = build_system("sasrec-filter", TINY)
    system.fit(split.train_data(load_card("ml-100k")), seed=0)
    assert system.from_cache  # shares the trained SASRec with the plain system
    user = next(iter(split.test_item))
    hist = split.history(user, "test")
    req = Request(user_id=user, history=hist, exclude=frozenset(hist), conversation=(Turn("no drama, something funny"),))
    ranking = system.recommend([req], k=10)[0]
    items = split.dataset.items
    assert all("Comedy" in items[i]["class"] and "Drama" not in items[i]["class"] for i in ranking.items)
    assert {c["kind"] for c in ranking.trace["constraints"]} == {"include", "exclude"}
    assert "Comedy" in ranking.explanation
    plain = system.recommend([Request(user_id=user, history=hist, exclude=frozenset(hist))], k=10)[0]
    base, _ = build_system("sasrec", TINY)
    base.fit(split.train_data(), seed=0)
    assert plain.items == base.recommend([Request(user_id=user, history=hist, exclude=frozenset(hist))], k=10)[0].items


def test_module_import_is_light():
    import subprocess
    import sys

    code = "import sys, systems.sasrec, systems.keyword_filter; print('torch' in sys.modules, 'recbole' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ})
    assert out.stdout.split() == ["False", "False"]


def test_training_is_early_stopped_on_validation_and_the_default_trains_to_convergence(small_ml, cache_root):
    """``epochs`` is a cap: RecBole's early stopping ends training once validation stops improving."""
    import torch

    from talkwalk_bench.registry import system_defaults

    defaults = system_defaults("sasrec")
    assert defaults["epochs"] >= 50 and defaults["stopping_step"] >= 1  # the published row is converged, not capped
    torch.set_num_threads(1)
    split = leave_one_out(load_dataset(str(small_ml)))
    system, _ = build_system("sasrec", {**TINY, "epochs": 40, "stopping_step": 1, "cache": False})
    system.fit(split.train_data(load_card("ml-100k")), seed=0)
    assert 2 <= system.fit_info["epochs_run"] < 40
    assert system.fit_info["best_valid"] > 0


def test_a_second_process_waits_for_the_cache_entry_then_loads_it_without_rewriting_it(trained, small_ml, cache_root):
    """Two runs that want one cached model do not stage RecBole's files in one folder at once (the loser
    used to crash or retrain and rewrite the entry): the second waits on the entry's lock, then loads."""
    import json
    import subprocess
    import sys
    import time

    from systems.sasrec.model import entry_lock

    system, _ = trained
    entry = Path(system.cache_entry)
    before = (entry / "model.pt").stat().st_mtime_ns
    code = ("import json, sys, torch; torch.set_num_threads(1)\n"
            "from talkwalk_bench.data import leave_one_out, load_card, load_dataset\n"
            "from talkwalk_bench.registry import build_system\n"
            "s, _ = build_system('sasrec', json.loads(sys.argv[1]))\n"
            f"s.fit(leave_one_out(load_dataset({str(small_ml)!r})).train_data(load_card('ml-100k')), seed=0)\n"
            "print('from_cache', s.from_cache)\n")
    with entry_lock(entry):
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(TINY)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "TALKWALK_CACHE_DIR": str(cache_root)})
        deadline = time.monotonic() + 120
        waiting = ""
        while "waiting for another process" not in waiting and time.monotonic() < deadline and proc.poll() is None:
            waiting += proc.stderr.readline()
        assert "waiting for another process" in waiting and str(entry) in waiting
        time.sleep(0.5)
        assert proc.poll() is None  # still blocked while the lock is held
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == ["from_cache", "True"] and "unusable" not in err
    assert (entry / "model.pt").stat().st_mtime_ns == before


def test_threads_zero_scores_on_torchs_own_thread_count_and_shares_the_cache_entry(trained):
    """The default ``threads=0`` leaves torch's thread count as it is (every core unless the process says
    otherwise); ``threads`` changes speed, not the model, so it stays out of the cache key."""
    import torch

    from talkwalk_bench.registry import system_defaults

    assert system_defaults("sasrec")["threads"] == 0
    system, split = trained
    other, _ = build_system("sasrec", {**TINY, "threads": 0})
    before = torch.get_num_threads()
    seen = []
    real = torch.set_num_threads
    try:
        torch.set_num_threads = lambda n: (seen.append(n), real(n))[1]
        other.fit(split.train_data(), seed=0)
        other.score_catalog([Request(user_id=u, history=split.history(u, "test")) for u in list(split.test_item)[:2]])
    finally:
        torch.set_num_threads = real
    assert other.from_cache and other.cache_entry == system.cache_entry
    assert seen and set(seen) == {before} and torch.get_num_threads() == before
