"""``semid-tiger``'s sequence training with stochastic weight averaging (SWA).

The from-scratch decoder (``systems/semid/scratch.py``) keeps the epoch whose
weights score best on the validation users. With a few hundred validation
users that choice is noisy: on seed 0's 8 epochs, validation nDCG@10 went
0.114, 0.105, 0.110, 0.127, 0.118, 0.121 from epoch 3 on, so "best" partly
picks the luckiest epoch. Averaging the weights of the epochs from
``-S average_from`` on (Izmailov et al., 2018: the average of points along
one decaying-learning-rate trajectory sits in a flatter, better generalising
region) removes that choice. The decoder has no batch norm, so the average
needs no recomputed statistics.

The average is a candidate, not a replacement: after training it is scored on
the same validation users as every epoch, and kept only when it scores at
least as well as the best epoch (a bar that is itself biased upwards, being
the best of several noisy scores). ``fit_info["average"]`` records both.

A killed training resumes with the average as it was at the checkpoint's
epoch: each epoch's running average is saved beside the checkpoint
(``average-eN.pt``, a few MB).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from systems.semid.scratch import ScratchDecoder


def running_mean(avg: dict[str, dict[str, Any]] | None, state: dict[str, dict[str, Any]], n: int) -> dict[str, dict[str, Any]]:
    """The mean of ``n`` states given the mean of the first ``n - 1`` (``avg``) and the ``n``-th (``state``).

    States are ``{module: state_dict}``; floating tensors are averaged in fp32, others (integer buffers)
    are taken from the newest state.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, sd in state.items():
        out[name] = {}
        for k, v in sd.items():
            v = v.detach().clone()
            if avg is None or not v.is_floating_point():
                out[name][k] = v.float() if v.is_floating_point() else v
            else:
                out[name][k] = avg[name][k] + (v.float() - avg[name][k]) / n
    return out


class AveragedScratchDecoder(ScratchDecoder):
    """``ScratchDecoder`` whose sequence stage also averages the epochs' weights (module docstring)."""

    def _avg_path(self, epoch: int) -> Path:
        return self._avg_root / f"average-e{epoch}.pt"

    def _train(self, seqs: dict[str, list[str]], valid: dict[str, str], data: Any, root: Any) -> dict[str, Any]:
        import torch

        start = int(self.p.get("average_from") or 0)
        self._avg_root, self._avg_from, self._avg, self._avg_n, self._epoch = Path(root), start, None, 0, 0
        ckpt = Path(root) / "checkpoint.pt"
        if start > 0 and ckpt.exists():  # resuming: the average as it was at the checkpoint's epoch
            self._epoch = int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])
            if self._epoch >= start and self._avg_path(self._epoch).exists():
                st = torch.load(self._avg_path(self._epoch), map_location="cpu", weights_only=True)
                self._avg, self._avg_n = st["state"], int(st["n"])
        info = super()._train(seqs, valid, data, root)
        if self._avg is None:
            return info
        kept_best = {n: {k: v.clone() for k, v in mod.state_dict().items()} for n, mod in self._modules().items()}
        self._load(self._avg)
        users = [u for u in sorted(valid) if u in seqs][: int(self.p["val_users"])]
        score = ScratchDecoder._validate(self, seqs, valid, users)
        keep = score >= float(info["best_val_ndcg@10"])
        if not keep:
            self._load(kept_best)
        info["average"] = {"from_epoch": start, "epochs": self._avg_n, "val_ndcg@10": score,
                           "best_epoch_val_ndcg@10": info["best_val_ndcg@10"], "kept": keep}
        return info

    def _load(self, state: dict[str, dict[str, Any]]) -> None:
        for name, mod in self._modules().items():
            ref = mod.state_dict()
            mod.load_state_dict({k: v.to(ref[k].dtype) for k, v in state[name].items()})

    def _validate(self, seqs: dict[str, list[str]], valid: dict[str, str], users: Sequence[str]) -> float:
        """Each epoch's validation, which also folds the epoch's weights into the average."""
        import torch

        score = super()._validate(seqs, valid, users)
        self._epoch += 1
        if self._avg_from > 0 and self._epoch >= self._avg_from:
            self._avg_n += 1
            self._avg = running_mean(self._avg, {n: mod.state_dict() for n, mod in self._modules().items()}, self._avg_n)
            tmp = self._avg_path(self._epoch).with_suffix(".tmp")
            torch.save({"state": self._avg, "n": self._avg_n}, tmp)
            os.replace(tmp, self._avg_path(self._epoch))
        return score
