"""SASRec trained by RecBole, and the keyword-filter pipeline built on top of it.

Registration only: RecBole and torch are imported when a system is built and fitted.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from talkwalk_bench.registry import register_system, register_variant

# OpenMP threads that spin while waiting slow every step when the machine is shared;
# this only works if set before the OpenMP runtime starts (first torch import).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@register_system("sasrec", description="SASRec (self-attentive sequential recommender) trained by RecBole 1.2.1 to convergence (early stopping on validation MRR@10); full-sort scores")
def sasrec(
    epochs: int = 100,
    train_batch_size: int = 256,
    eval_batch_size: int = 4096,
    learning_rate: float = 0.001,
    n_layers: int = 2,
    n_heads: int = 2,
    hidden_size: int = 64,
    inner_size: int = 256,
    hidden_dropout_prob: float = 0.2,
    attn_dropout_prob: float = 0.2,
    hidden_act: str = "gelu",
    layer_norm_eps: float = 1e-12,
    initializer_range: float = 0.02,
    loss_type: str = "CE",
    max_seq_length: int = 50,
    weight_decay: float = 0.0,
    stopping_step: int = 10,
    valid_metric: str = "MRR@10",
    threads: int = 0,
    device: str = "cpu",
    cache: bool = True,
    **recbole: Any,
):
    """Any further ``-S key=value`` is passed to RecBole's Config (checked against RecBole's known keys).

    ``epochs`` is a cap: RecBole's early stopping ends training once validation ``valid_metric`` has not
    improved for ``stopping_step`` epochs and keeps the best epoch (docs/sasrec.md). ``threads`` 0 computes
    on as many threads as torch uses by default (every core, or ``OMP_NUM_THREADS``).
    """
    args = dict(locals())
    extra = args.pop("recbole")
    from systems.sasrec.model import SASRecSystem

    return SASRecSystem(extra, **args)


def _filter(name: str, **args: Any):
    """Items that keep every hard constraint come first, softly demoted ones next, the rest last."""
    from systems.sasrec.filter import SASRecFilter

    known = set(inspect.signature(sasrec).parameters) - {"recbole"}
    extra = {k: v for k, v in args.items() if k not in known}  # further RecBole settings, as for sasrec
    return SASRecFilter(extra, **{k: v for k, v in args.items() if k in known})


register_variant(
    "sasrec-filter",
    _filter,
    like=sasrec,
    description="Traditional pipeline: SASRec ranking, then filters/re-ranks by attribute words found in the utterance",
)
