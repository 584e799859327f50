"""``semid-tiger`` distilled from the mean of several teacher draws: better than one teacher, on validation?

Usage: python benchmarks/semid_tiger_teachers.py [--seed N] [--teachers K]

Fits (or loads from the cache) the default ``semid-tiger`` and one distilled
from K draws of its teacher (the 3-epoch SASRec fitted at seeds ``seed`` ..
``seed + K - 1``: the same data, other initial weights and batch order). The
student's targets after each history prefix are the mean of the draws'
catalog distributions (a mixture). Everything else is the default's; the
global random state is reseeded after the teachers are fitted, so the student
does not depend on whether they came from the cache. Then ranks the
validation item (the second-to-last, history masked) of every validation user
with both, and prints validation nDCG@10 with the paired difference and its 95
% bootstrap CI, over all users and over those training did not use to pick its
epoch. Lists without a request (the sequence model; the steering stage is not
trained). No test item is read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from semid_tiger_ensemble import mixture, ndcg_at_10, report, validation_requests  # noqa: E402


class MeanTeacher:
    """Several fitted catalog scorers as one: ``score_catalog`` is the log of the mean of their softmaxes."""

    def __init__(self, systems: Sequence[Any]) -> None:
        if not systems:
            raise ValueError("MeanTeacher needs at least one fitted system")
        self.systems = list(systems)
        self.item_ids = tuple(self.systems[0].item_ids)
        if any(tuple(s.item_ids) != self.item_ids for s in self.systems[1:]):
            raise ValueError("MeanTeacher: the teachers' catalogs differ; fit them on the same data")
        self.fit_info = {"draws": len(self.systems)}

    def score_catalog(self, requests: Sequence[Any]) -> np.ndarray:
        return mixture([np.asarray(s.score_catalog(requests), dtype=np.float64) for s in self.systems])


def taught_class() -> type:
    from systems.semid.scratch import ScratchDecoder

    class Taught(ScratchDecoder):
        """``semid-tiger`` whose teacher is the mean of ``teachers`` draws; ``teachers`` is in the cache key."""

        def __init__(self, name: str, teachers: int = 2, **params: Any) -> None:
            super().__init__(name, **params)
            self.p["teachers"] = int(teachers)

        def _teacher(self, data: Any, seed: int) -> Any:
            import random

            import torch

            from systems.semid.recipe import CatalogTeacher
            from systems.semid.system import teacher_args
            from talkwalk_bench.registry import build_system

            name = str(self.p["teacher"])
            fitted = []
            for j in range(int(self.p["teachers"])):
                tsys, _ = build_system(name, teacher_args(name, str(self.p.get("teacher_args", ""))))
                tsys.fit(data, seed=seed + j)
                fitted.append(tsys)
            torch.manual_seed(seed)  # fitting a teacher (not loading one) reseeds the global state
            np.random.seed(seed)
            random.seed(seed)
            return CatalogTeacher(MeanTeacher(fitted), self.space, prefix_len=1, max_history=int(self.p["window"]), name=name)

    return Taught


def parse_teachers(text: str) -> int:
    """``--teachers``: a mean needs 2 or more draws; one line that says so otherwise."""
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 2:
        raise argparse.ArgumentTypeError(f"--teachers {text!r}: a mean of teachers needs an integer of 2 or more "
                                         "(one teacher is the default semid-tiger)")
    return k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teachers", type=parse_teachers, default=3)
    args = ap.parse_args(argv)
    import torch

    from talkwalk_bench.data.card import load_card
    from talkwalk_bench.data.dataset import load_dataset
    from talkwalk_bench.data.split import leave_one_out
    from talkwalk_bench.registry import build_system, system_defaults

    torch.set_num_threads(1)
    data = leave_one_out(load_dataset("ml-100k")).train_data(load_card("ml-100k"))
    # lists without a request are the sequence model's: the steering stage is left out (not in the cache key)
    single, _ = build_system("semid-tiger", {"steer_steps": 0})
    single.fit(data, seed=args.seed)
    taught = taught_class()("semid-tiger", args.teachers, **{**system_defaults("semid-tiger"), "steer_steps": 0})
    taught.fit(data, seed=args.seed)
    reqs, targets = validation_requests(data)
    scores = {}
    for name, m in (("one teacher (default)", single), (f"mean of {args.teachers} teacher draws", taught)):
        scores[name] = ndcg_at_10([list(r.items) for r in m.recommend(reqs, k=10)], targets)
        print(f"{name}: best epoch {m.fit_info.get('best_epoch')}, training {m.fit_info.get('curve', [{}])[-1].get('seconds')} s",
              flush=True)
    report(scores, "one teacher (default)", int(single.p["val_users"]), f"seed {args.seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
