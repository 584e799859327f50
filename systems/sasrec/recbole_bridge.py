"""Handing the harness's split to RecBole and keeping RecBole's side effects in a folder.

RecBole reads atomic files from ``data_path/NAME/``. We write the split there
under a private name, already in RecBole's sequential "benchmark" format (one
row per prediction: the item_id_list before it, and the target item), built
exactly as RecBole's own ``data_augmentation`` + leave-one-out would build it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from talkwalk_bench.data.atomic import write_atomic
from talkwalk_bench.errors import BenchError
from talkwalk_bench.registry import did_you_mean
from talkwalk_bench.types import Interactions

STAGES = ("train", "valid", "test")
INTER_TYPES = {"user_id": "token", "item_id_list": "token_seq", "item_id": "token"}

# system args that map onto RecBole config keys (the rest are ours)
RECBOLE_KEYS = (
    "epochs", "train_batch_size", "eval_batch_size", "learning_rate", "n_layers", "n_heads", "hidden_size",
    "inner_size", "hidden_dropout_prob", "attn_dropout_prob", "hidden_act", "layer_norm_eps",
    "initializer_range", "loss_type", "weight_decay", "stopping_step", "valid_metric",
)
# keys the system sets itself; a user override would break the hand-over of the split
RESERVED = {
    "data_path", "dataset", "benchmark_filename", "load_col", "USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD",
    "checkpoint_dir", "seed", "alias_of_item_id", "gpu_id", "use_gpu", "MAX_ITEM_LIST_LENGTH", "model", "eval_args", "metrics", "topk",
}


def sequences(train: Interactions) -> dict[str, list[str]]:
    """User -> time-ordered training items (interactions are sorted by user, then time)."""
    out: dict[str, list[str]] = {}
    for u, i in zip(train.user_ids.tolist(), train.item_ids.tolist(), strict=True):
        out.setdefault(u, []).append(i)
    return out


def stage_rows(train: Interactions, valid: Interactions, test: Interactions | None, max_len: int,
               token: dict[str, str], user_token: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Rows per stage: train predicts each training item from the ones before it;
    valid predicts the validation item from the training sequence; test the test
    item from training + validation. Histories keep the last ``max_len`` items."""
    seq = sequences(train)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in STAGES}
    for u, items in seq.items():
        toks = [token[i] for i in items]
        for j in range(1, len(toks)):
            rows["train"].append({"user_id": user_token[u], "item_id_list": toks[max(0, j - max_len):j], "item_id": toks[j]})
    valid_item = dict(zip(valid.user_ids.tolist(), valid.item_ids.tolist(), strict=True))
    for u, v in valid_item.items():
        hist = [token[i] for i in seq.get(u, [])][-max_len:]
        if hist:
            rows["valid"].append({"user_id": user_token[u], "item_id_list": hist, "item_id": token[v]})
    if test is not None:
        for u, t in zip(test.user_ids.tolist(), test.item_ids.tolist(), strict=True):
            full = seq.get(u, []) + ([valid_item[u]] if u in valid_item else [])
            hist = [token[i] for i in full][-max_len:]
            if hist:
                rows["test"].append({"user_id": user_token[u], "item_id_list": hist, "item_id": token[t]})
    else:
        # RecBole's data_preparation wants three stages; a system never sees the test
        # split, so the third stage repeats validation and is never evaluated.
        rows["test"] = list(rows["valid"])
    return rows


def write_dataset(folder: Path, name: str, rows: dict[str, list[dict[str, Any]]], n_items: int) -> None:
    """Write NAME.{train,valid,test}.inter and NAME.item (every catalog item, so all get an embedding)."""
    if not rows["train"] or not rows["valid"]:
        raise BenchError(
            "sasrec needs users with at least 3 interactions (2 to train on, 1 to validate); "
            "the training split has none; use a larger dataset"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        write_atomic(folder / f"{name}.{stage}.inter", INTER_TYPES, rows[stage])
    write_atomic(folder / f"{name}.item", {"item_id": "token"}, [{"item_id": str(j)} for j in range(n_items)])


def config_dict(args: dict[str, Any], extra: dict[str, Any], *, data_root: Path, checkpoint_dir: Path, seed: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {k: args[k] for k in RECBOLE_KEYS}
    cfg.update(extra)
    cfg.update({
        "data_path": str(data_root),
        "benchmark_filename": list(STAGES),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": None,
        # without the alias RecBole would number the history lists in a token space of their own
        "alias_of_item_id": ["item_id_list"],
        "load_col": {"inter": list(INTER_TYPES), "item": ["item_id"]},
        "MAX_ITEM_LIST_LENGTH": args["max_seq_length"],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [10],
        "checkpoint_dir": str(checkpoint_dir),
        "seed": seed,
        "reproducibility": True,
        "gpu_id": "0" if args["device"] == "cuda" else "",
        "use_gpu": args["device"] == "cuda",
        "show_progress": False,
        "log_wandb": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "worker": 0,
    })
    cfg.setdefault("metric_decimal_place", 10)  # RecBole rounds to 4 places by default
    cfg.setdefault("train_neg_sample_args", None if args["loss_type"] == "CE" else {"distribution": "uniform", "sample_num": 1})
    return cfg


def check_args(args: dict[str, Any], extra: dict[str, Any]) -> None:
    """Reject bad system args before RecBole sees them, naming the -S key to change."""
    positive_ints = ("epochs", "train_batch_size", "eval_batch_size", "n_layers", "n_heads", "hidden_size", "inner_size",
                     "max_seq_length")
    for key in positive_ints:
        v = args[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise BenchError(f"sasrec: -S {key}={v!r} must be a positive integer")
    v = args["threads"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BenchError(f"sasrec: -S threads={v!r} must be a non-negative integer (0: as many as torch uses by default)")
    for key in ("hidden_dropout_prob", "attn_dropout_prob"):
        v = args[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise BenchError(f"sasrec: -S {key}={v!r} must be a number in [0, 1)")
    for key in ("learning_rate", "layer_norm_eps", "initializer_range"):
        v = args[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise BenchError(f"sasrec: -S {key}={v!r} must be a positive number")
    if args["hidden_size"] % args["n_heads"]:
        raise BenchError(f"sasrec: -S hidden_size={args['hidden_size']} must be a multiple of -S n_heads={args['n_heads']}")
    if args["loss_type"] not in ("CE", "BPR"):
        raise BenchError(f"sasrec: -S loss_type={args['loss_type']!r} is not one of CE, BPR")
    if args["device"] not in ("cpu", "cuda"):
        raise BenchError(f"sasrec: -S device={args['device']!r} is not one of cpu, cuda")
    bad = sorted(set(extra) & RESERVED)
    if bad:
        raise BenchError(f"sasrec: -S {bad[0]}=... is set by the system to hand RecBole the harness's split; remove it")
    known = known_recbole_keys()
    for key in extra:
        if key not in known:
            raise BenchError(f"sasrec: -S {key}=... is neither a system argument nor a RecBole setting.{did_you_mean(key, sorted(known | set(args)))}")


def known_recbole_keys() -> set[str]:
    """Keys RecBole documents in its property files (overall, SASRec, dataset defaults)."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("recbole")
    root = Path(list(spec.submodule_search_locations)[0]) / "properties"  # type: ignore[union-attr]
    keys: set[str] = set()
    for path in (root / "overall.yaml", root / "model" / "SASRec.yaml", root / "dataset" / "sample.yaml"):
        if path.exists():
            keys |= set((yaml.safe_load(path.read_text()) or {}).keys())
    return keys


def recbole_error(exc: BaseException, args: dict[str, Any], extra: dict[str, Any], stage: str) -> BenchError:
    """One line naming the system arg most likely at fault."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    names = list(extra) + list(RECBOLE_KEYS) + ["max_seq_length"]
    named = next((k for k in names if k in text), None)
    if named is None and "MAX_ITEM_LIST_LENGTH" in text:
        named = "max_seq_length"
    if named is None:  # RecBole often names only the bad value ("KeyError: 'swishy'")
        values = {**{k: args[k] for k in RECBOLE_KEYS}, **extra}
        named = next((k for k, v in values.items() if isinstance(v, str) and len(v) > 2 and v in text), None)
    hint = f"change -S {named}=..." if named else f"check the -S arguments ({', '.join(f'{k}={v}' for k, v in extra.items()) or 'defaults'})"
    return BenchError(f"sasrec: RecBole failed while {stage} ({type(exc).__name__}: {text}); {hint}")


@contextlib.contextmanager
def recbole_sandbox(run_dir: Path, *, log: bool = True) -> Iterator[None]:
    """Keep RecBole's side effects out of the process and the working directory.

    RecBole's Config parses ``sys.argv`` (our CLI flags would become its settings),
    sets CUDA_VISIBLE_DEVICES, and its Trainer opens a TensorBoard writer under
    ``./log_tensorboard``. Inside this block argv is empty, the environment is
    restored afterwards, the writer points into ``run_dir``, and RecBole's log
    lines go to ``run_dir/recbole.log``.
    """
    import recbole.trainer.trainer as rt

    run_dir.mkdir(parents=True, exist_ok=True)
    saved_argv = sys.argv
    saved_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    saved_tb = rt.get_tensorboard
    root = logging.getLogger()
    saved_level = root.level
    handler = None
    if log:
        handler = logging.FileHandler(run_dir / "recbole.log", encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    sys.argv = saved_argv[:1]

    def tensorboard(logger: Any) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(run_dir / "log_tensorboard"))

    rt.get_tensorboard = tensorboard
    try:
        with warnings.catch_warnings():
            # RecBole 1.2.1 on pandas 2.x / torch 2.x: deprecation notices about its own code
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        sys.argv = saved_argv
        rt.get_tensorboard = saved_tb
        if saved_cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved_cuda
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
            root.setLevel(saved_level)


def import_recbole() -> None:
    """Import RecBole's sequential models, then undo the anomaly detection that one of them
    (sine.py) switches on for the whole process: it makes every torch training 3-4x slower."""
    import recbole.model.sequential_recommender  # noqa: F401
    import torch

    torch.autograd.set_detect_anomaly(False)


def history_tokens(history: Sequence[str], token: dict[str, str]) -> list[str]:
    return [token[i] for i in history if i in token]
