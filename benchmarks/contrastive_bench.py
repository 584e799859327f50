"""Speed targets of the contrastive system (not timed tests): training time, single-request latency, HNSW at scale.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/contrastive_bench.py --out benchmarks/results/contrastive_bench.json

Measures, on this machine: fit time (fresh or from cached artifacts), p50/p95
latency of one request (text encode + query build + FAISS search) with
utterances never seen before and with repeated ones, and a synthetic catalog
(``--synthetic-n`` random unit vectors) searched by HNSW vs exact, recall@10
and p50. Also writes the item-space and trajectory plots to docs/img/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="contrastive")
    ap.add_argument("--out", default="benchmarks/results/contrastive_bench.json")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--synthetic-n", type=int, default=1_000_000)
    ap.add_argument("--synthetic-dim", type=int, default=384)
    ap.add_argument("--plots", default="docs/img")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import faiss
    import torch

    torch.set_num_threads(a.threads)
    faiss.omp_set_num_threads(a.threads)
    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system
    from talkwalk_bench.types import Request, Turn

    ds = load_dataset("ml-100k")
    split = leave_one_out(ds)
    system, args = build_system(a.system, {"progress": False})
    t0 = time.perf_counter()
    system.fit(split.train_data(load_card("ml-100k")), seed=0)
    fit_s = time.perf_counter() - t0
    out: dict = {"system": a.system, "args": args, "threads": a.threads, "machine": platform.processor() or platform.machine(),
                 "cpu_count": os.cpu_count(), "fit_seconds": round(fit_s, 2), "fit_from_cache": system.loaded_from_cache,
                 "corpus": system.corpus_stats}
    meta_path = system.artifact_dir / "meta.json" if system.artifact_dir else None
    if meta_path and meta_path.exists():
        out["training_losses_first_last"] = [json.loads(meta_path.read_text())["losses"][i] for i in (0, -1)]

    users = list(split.test_item)
    rng = np.random.default_rng(0)
    words = ["comedy", "thriller", "from the eighties", "no horror", "something old", "romantic", "a war film",
             "sci-fi", "not a drama", "a western", "documentary", "animated", "musical", "crime", "mystery"]

    def req(i: int, utt: str) -> Request:
        u = users[i % len(users)]
        h = split.history(u, "test")
        return Request(user_id=u, history=h, user=ds.users.get(u, {}), exclude=frozenset(h),
                       conversation=(Turn(utt),), session_id=f"bench{i}")

    for _ in range(20):  # warm-up
        system.recommend([req(0, "a comedy")], k=10)
    lat = {}
    for mode in ("no_text", "repeated_text", "new_text"):
        ts = []
        for i in range(a.requests):
            if mode == "no_text":
                utt = ""
            elif mode == "repeated_text":
                utt = words[i % len(words)]
            else:
                utt = f"{words[rng.integers(len(words))]} {words[rng.integers(len(words))]} number {i}"
            r = req(i, utt)
            t = time.perf_counter()
            system.recommend([r], k=10)
            ts.append(time.perf_counter() - t)
        lat[mode] = {"p50_ms": round(pct(ts, 50), 3), "p95_ms": round(pct(ts, 95), 3), "n": len(ts)}
    out["latency_single_request"] = lat

    # synthetic catalog: HNSW vs exact
    from systems.contrastive.index import ItemIndex

    n, d = a.synthetic_n, a.synthetic_dim
    X = rng.standard_normal((n, d), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(d)
    flat.add(X)
    t = time.perf_counter()
    idx = ItemIndex(d, hnsw_threshold=min(100_000, n - 1))
    idx.add([str(i) for i in range(n)], X)
    build_s = time.perf_counter() - t
    # queries near real points (a steering query lands near items), plus noise
    Q = X[rng.choice(n, 200, replace=False)] + 0.05 * rng.standard_normal((200, d), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    _, truth = flat.search(Q, 10)
    ts, hits = [], 0
    for q, tr in zip(Q, truth, strict=False):
        t = time.perf_counter()
        _, p = idx.search(q[None, :], 10)
        ts.append(time.perf_counter() - t)
        hits += len(set(p[0].tolist()) & set(tr.tolist()))
    tf = []
    for q in Q[:50]:
        t = time.perf_counter()
        flat.search(q[None, :], 10)
        tf.append(time.perf_counter() - t)
    out["synthetic_catalog"] = {"n": n, "dim": d, "index": idx.kind, "build_seconds": round(build_s, 1),
                                "recall@10_vs_flat": hits / (10 * len(Q)), "hnsw_p50_ms": round(pct(ts, 50), 3),
                                "flat_p50_ms": round(pct(tf, 50), 3), "queries": len(Q)}
    del X, flat, idx

    if a.plots:
        from systems.contrastive.plotting import plot_space, plot_trajectory

        plot_space(system, ds.items, Path(a.plots) / "contrastive_space.png")
        r = req(3, "")
        out["trajectory"] = plot_trajectory(system, r, ["", "a comedy", "from the seventies", "no romance please",
                                                        "something different", "go back"],
                                            Path(a.plots) / "contrastive_trajectory.png")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("args", "trajectory")}, indent=1))


if __name__ == "__main__":
    main()
