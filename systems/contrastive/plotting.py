"""Pictures of the shared space: items in 2-D (by genre, by decade) and a steering trajectory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talkwalk_bench.types import Request, Turn


def pca2(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coordinates, mean, components) of a 2-D PCA by SVD."""
    mu = X.mean(0)
    _, _, vt = np.linalg.svd(X - mu, full_matrices=False)
    return (X - mu) @ vt[:2].T, mu, vt[:2]


def _attr(system, name: str):
    return system.card.item.attributes[name]


def plot_space(system, items: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(system.item_ids)
    Y, _, _ = pca2(system.index.vectors[:n])
    genre = next((a for a in system.card.item.attributes.values() if a.kind == "multi_categorical"), None)
    year = next((a for a in system.card.item.attributes.values() if a.kind == "ordinal"), None)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    if genre is not None:
        vals = [genre.value_of(dict(items[i])) for i in system.item_ids]
        counts = {}
        for v in vals:
            for g in v:
                counts[g] = counts.get(g, 0) + 1
        # colour by the item's rarest genre, so small genres stay visible
        prim = [min(v, key=lambda g: counts[g]) if v else "unknown" for v in vals]
        names = sorted(set(prim))
        cmap = plt.get_cmap("tab20", len(names))
        for j, g in enumerate(names):
            m = np.array([p == g for p in prim])
            axes[0].scatter(Y[m, 0], Y[m, 1], s=6, color=cmap(j), label=g)
        axes[0].legend(fontsize=6, markerscale=2, ncol=2, loc="best")
        axes[0].set_title("items by genre (rarest genre of each film)")
    if year is not None:
        ys = np.array([year.value_of(dict(items[i])) for i in system.item_ids], dtype=float)
        dec = np.floor(ys / 10) * 10
        sc = axes[1].scatter(Y[:, 0], Y[:, 1], s=6, c=np.nan_to_num(dec, nan=np.nanmin(dec)), cmap="viridis")
        fig.colorbar(sc, ax=axes[1], label="decade")
        axes[1].set_title("items by decade")
    for ax in axes:
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    fig.suptitle("contrastive item space (PCA of metadata-encoder embeddings)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_trajectory(system, base: Request, utterances: Sequence[str], path: Path, k: int = 10) -> list[dict]:
    """Play the utterances as one conversation; plot the query point and the top-k of each turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(system.item_ids)
    Y, mu, comps = pca2(system.index.vectors[:n])
    turns: list[Turn] = []
    log = []
    qs = []
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.scatter(Y[:, 0], Y[:, 1], s=4, color="0.85")
    cmap = plt.get_cmap("plasma", len(utterances) + 1)
    for t, utt in enumerate(utterances):
        req = Request(user_id=base.user_id, history=base.history, user=base.user, exclude=base.exclude,
                      conversation=tuple(turns) + (Turn(utt),), session_id="plot")
        [r] = system.recommend([req], k=k)
        q = np.array(r.trace["query"])
        qs.append((q - mu) @ comps.T)
        pos = [system._pos[i] for i in r.items if system._pos.get(i, n) < n]
        ax.scatter(Y[pos, 0], Y[pos, 1], s=18, color=cmap(t), label=f"{t + 1}: {utt} ({r.trace.get('intent')})")
        turns.append(Turn(utt, r.items))
        log.append({"utterance": utt, "intent": r.trace.get("intent"), "items": list(r.items)})
    P = np.array(qs)
    ax.plot(P[:, 0], P[:, 1], "-", color="black", lw=1)
    for t, p in enumerate(P):
        ax.scatter([p[0]], [p[1]], marker="*", s=160, color=cmap(t), edgecolor="black", zorder=5)
        ax.annotate(str(t + 1), p, fontsize=9, xytext=(4, 4), textcoords="offset points")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("steering trajectory: query point (stars) and top-10 per turn")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return log
