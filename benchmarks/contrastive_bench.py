"""Speed targets of the contrastive system (not timed tests): training time, single-request latency, HNSW at scale.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/contrastive_bench.py --out benchmarks/results/contrastive_bench.json

Measures, on this machine: fit time (fresh or from cached artifacts), p50/p95
latency of one request (text encode + query build + FAISS search) with
utterances never seen before and with repeated ones, and a synthetic catalog
(``--synthetic-n`` items: the trained item vectors perturbed in their own
principal subspace, or isotropic unit vectors with ``--catalog isotropic``)
searched by HNSW vs exact: recall@10 and single-thread p50 per efSearch.
HNSW only, in the background:

    nice .venv/bin/python benchmarks/contrastive_bench.py --only-synthetic --base-vectors V.npy \
        --out benchmarks/results/contrastive_hnsw.json Also writes the item-space and trajectory plots to docs/img/.
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


def synthetic_catalog(n: int, d: int, base: np.ndarray | None, rng: np.random.Generator, chunk: int):
    """Yield the catalog in chunks. ``base`` given: each item is a trained item vector plus noise drawn in the
    principal subspace of the trained vectors (scaled by their spread), so the catalog has the trained space's
    shape; otherwise isotropic unit vectors."""
    if base is not None:
        base = np.asarray(base, np.float32)
        mu = base.mean(0)
        _, sv, vt = np.linalg.svd(base - mu, full_matrices=False)
        k = min(128, len(sv))
        comp = (vt[:k] * (sv[:k, None] / np.sqrt(len(base)))).astype(np.float32)  # principal axes with their std
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        if base is None:
            X = rng.standard_normal((m, d), dtype=np.float32)
        else:
            X = base[rng.integers(len(base), size=m)] + 0.7 * rng.standard_normal((m, comp.shape[0]), dtype=np.float32) @ comp
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        yield X


def synthetic_hnsw(a, base: np.ndarray | None) -> dict:
    """HNSW vs exact on a synthetic catalog built in 50k chunks until ``--synthetic-n`` or the build budget."""
    import faiss

    rng = np.random.default_rng(0)
    d = a.synthetic_dim if base is None or a.catalog == "isotropic" else base.shape[1]
    base = base if a.catalog == "model" else None
    if a.catalog == "model" and base is None:
        raise SystemExit("--catalog model needs the trained item vectors (--base-vectors, or run without --only-synthetic)")
    flat = faiss.IndexFlatIP(d)
    hnsw = faiss.IndexHNSWFlat(d, a.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = a.ef_construction
    build_s, chunks = 0.0, []
    for X in synthetic_catalog(a.synthetic_n, d, base, rng, 50_000):
        flat.add(X)
        t = time.perf_counter()
        hnsw.add(X)
        build_s += time.perf_counter() - t
        chunks.append((hnsw.ntotal, round(build_s, 1)))
        print(f"hnsw {hnsw.ntotal} items, build {build_s:.0f} s", flush=True)
        if build_s > a.build_budget_s:
            break
    n = hnsw.ntotal
    # queries near catalog points (a steering query lands near items), plus noise; exact top-10 as the truth
    X = flat.reconstruct_n(0, n) if n <= 50_000 else None
    pick = rng.choice(n, 300, replace=False)
    Q = np.stack([flat.reconstruct(int(i)) for i in pick]) + 0.05 * rng.standard_normal((300, d), dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    _, truth = flat.search(Q, 10)
    del X
    faiss.omp_set_num_threads(1)  # one request = one thread
    sweeps = []
    for ef in [int(x) for x in str(a.ef_search).split(",")]:
        hnsw.hnsw.efSearch = ef
        for q in Q[:20]:  # warm-up
            hnsw.search(q[None, :], 10)
        ts, hits = [], 0
        for q, tr in zip(Q, truth, strict=False):
            t = time.perf_counter()
            _, p = hnsw.search(q[None, :], 10)
            ts.append(time.perf_counter() - t)
            hits += len(set(p[0].tolist()) & set(tr.tolist()))
        sweeps.append({"ef_search": ef, "recall@10_vs_flat": round(hits / (10 * len(Q)), 4),
                       "p50_ms": round(pct(ts, 50), 3), "p95_ms": round(pct(ts, 95), 3)})
        print(sweeps[-1], flush=True)
    tf = []
    for q in Q[:50]:
        t = time.perf_counter()
        flat.search(q[None, :], 10)
        tf.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(a.threads)
    ok = [s for s in sweeps if s["recall@10_vs_flat"] >= 0.95]
    return {"catalog": a.catalog, "n": n, "n_requested": a.synthetic_n, "dim": d, "hnsw_m": a.hnsw_m,
            "ef_construction": a.ef_construction, "build_seconds": round(build_s, 1), "build_chunks": chunks,
            "build_threads": a.threads, "queries": len(Q), "sweep": sweeps,
            "chosen": min(ok, key=lambda s: s["p50_ms"]) if ok else None,
            "flat_p50_ms_1thread": round(pct(tf, 50), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="contrastive")
    ap.add_argument("--out", default="benchmarks/results/contrastive_bench.json")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--synthetic-n", type=int, default=1_000_000)
    ap.add_argument("--synthetic-dim", type=int, default=384)
    ap.add_argument("--plots", default="docs/img")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--catalog", choices=("model", "isotropic"), default="model",
                    help="model: perturbations of the trained item vectors in their own principal subspace; "
                         "isotropic: uniform random unit vectors (the hardest case for HNSW)")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--ef-search", default="16,32,64,128,256", help="comma list, each measured")
    ap.add_argument("--build-budget-s", type=float, default=1800.0,
                    help="stop adding (in chunks of 50k) once the HNSW build has taken this long; the size reached is recorded")
    ap.add_argument("--only-synthetic", action="store_true", help="skip fit/latency/plots; needs --base-vectors for --catalog model")
    ap.add_argument("--base-vectors", default="", help=".npy of item vectors the model catalog is drawn around")
    a = ap.parse_args()
    if a.only_synthetic:
        import faiss

        faiss.omp_set_num_threads(a.threads)
        base = np.load(a.base_vectors) if a.base_vectors else None
        res = {"threads": a.threads, "cpu_count": os.cpu_count(), "base_vectors": a.base_vectors,
               "synthetic_catalog": synthetic_hnsw(a, base)}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
        return

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

    out["synthetic_catalog"] = synthetic_hnsw(a, system.index.vectors[: len(system.item_ids)])

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
