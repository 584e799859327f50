"""SASRec as a talkwalk-bench system: RecBole trains it, the harness asks it.

Training goes through RecBole's own path (Config -> create_dataset ->
data_preparation -> Trainer.fit) on the harness's split, written as atomic
files under a private dataset name inside the model cache, so RecBole never
downloads anything and never writes into the working directory. Trained
weights are cached, keyed by the split, the RecBole settings and the seed.
One process at a time works in a cache entry: another that wants the same
model waits for it, then loads what it saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import numpy as np

from systems.sasrec import recbole_bridge as rb
from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir
from talkwalk_bench.types import Interactions, Ranking, Request, SystemMeta, TrainData

VERSION = "1"
MODEL_FILE = "model.pt"
MANIFEST = "model.json"
LOCK_FILE = ".lock"


@contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold the cache entry's exclusive lock (an ``flock``, which the kernel drops if the holder dies).

    Loading stages RecBole's data files inside the entry and training writes its
    checkpoints there, so two processes in one entry would rename each other's
    files and the loser would retrain and rewrite the model."""
    import fcntl

    entry.mkdir(parents=True, exist_ok=True)
    fd = os.open(entry / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"sasrec: waiting for another process using the cache entry {entry}", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class SASRecSystem:
    """RecBole's SASRec; ``recommend`` ranks the catalog by its full-sort scores, history excluded."""

    name = "sasrec"

    def __init__(self, extra: dict[str, Any] | None = None, **args: Any) -> None:
        self.args = dict(args)
        self.extra = dict(extra or {})
        rb.check_args(self.args, self.extra)
        self.meta = SystemMeta(name=self.name, version=VERSION, params={**self.args, **self.extra},
                               capabilities=frozenset({"scores"}))
        self.item_ids: tuple[str, ...] = ()
        self.model: Any = None
        self.from_cache = False
        self.fit_info: dict[str, Any] = {}
        self._recbole: dict[str, Any] = {}

    # ---- training -------------------------------------------------------

    def cache_key(self, data: TrainData, seed: int) -> str:
        payload = {"data": data.key, "n_items": len(data.item_ids), "args": {k: v for k, v in self.args.items() if k not in ("threads", "cache")},
                   "extra": self.extra, "seed": seed, "recbole": pkg_version("recbole"), "version": VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def fit(self, data: TrainData, *, seed: int) -> None:
        self._fit(data, seed=seed)

    def _fit(self, data: TrainData, *, seed: int, test: Interactions | None = None) -> None:
        """Train (or load from the cache). ``test`` is only for checking the harness against
        RecBole's evaluator: it adds a real test stage to RecBole's data and skips the cache."""
        import torch

        self.item_ids = tuple(data.item_ids)
        self._token = {it: str(j) for j, it in enumerate(self.item_ids)}
        self._train, self._valid = data.train, data.valid
        key = self.cache_key(data, seed) + ("-test" if test is not None else "")
        entry = cache_dir() / "sasrec" / key
        self.cache_entry = entry
        threads_before = torch.get_num_threads()
        torch.set_num_threads(self.args["threads"] or threads_before)
        try:
            with entry_lock(entry):
                if self.args["cache"] and test is None and self._load_cached(entry, data, seed):
                    return
                self._train_model(entry, data, seed, test)
                if self.args["cache"] and test is None:
                    self._save_cached(entry)
        finally:
            torch.set_num_threads(threads_before)

    def _prepare(self, entry: Path, data: TrainData, seed: int, test: Interactions | None) -> tuple[Any, Any]:
        """Write the split, build RecBole's Config and Dataset."""
        rb.import_recbole()
        from recbole.config import Config
        from recbole.data import create_dataset
        from recbole.utils import init_seed

        name = f"twb_{entry.name.replace('-', '_')}"
        user_token = {u: str(j) for j, u in enumerate(dict.fromkeys(data.train.user_ids.tolist()))}
        for u in data.valid.user_ids.tolist() + (test.user_ids.tolist() if test is not None else []):
            user_token.setdefault(u, str(len(user_token)))
        rows = rb.stage_rows(data.train, data.valid, test, self.args["max_seq_length"], self._token, user_token)
        rb.write_dataset(entry / "data" / name, name, rows, len(self.item_ids))
        cfg = rb.config_dict(self.args, self.extra, data_root=entry / "data", checkpoint_dir=entry / "saved", seed=seed)
        try:
            config = Config(model="SASRec", dataset=name, config_dict=cfg)
            rb.import_recbole()  # Config imports the model package too; keep anomaly detection off
            init_seed(config["seed"], config["reproducibility"])
            dataset = create_dataset(config)
        except BenchError:
            raise
        except Exception as exc:
            raise rb.recbole_error(exc, self.args, self.extra, "reading the configuration and data") from exc
        self._user_token = user_token
        return config, dataset

    def _train_model(self, entry: Path, data: TrainData, seed: int, test: Interactions | None) -> None:
        import torch
        from tqdm.auto import tqdm

        with rb.recbole_sandbox(entry):
            config, dataset = self._prepare(entry, data, seed, test)
            from recbole.data import data_preparation
            from recbole.model.sequential_recommender import SASRec
            from recbole.trainer import Trainer
            from recbole.utils import init_seed

            class _Trainer(Trainer):
                bar: Any = None

                def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
                    base = loss_func or self.model.calculate_loss

                    def counted(interaction):
                        loss = base(interaction)
                        if self.bar is not None:
                            self.bar.update(1)
                        return loss

                    return super()._train_epoch(train_data, epoch_idx, loss_func=counted, show_progress=False)

            t0 = time.perf_counter()
            try:
                train_data, valid_data, test_data = data_preparation(config, dataset)
                init_seed(config["seed"], config["reproducibility"])
                model = SASRec(config, train_data.dataset).to(config["device"])
                trainer = _Trainer(config, model)
            except Exception as exc:
                raise rb.recbole_error(exc, self.args, self.extra, "building the model") from exc
            trainer.bar = tqdm(total=self.args["epochs"] * len(train_data), desc="sasrec: training", unit="batch", leave=False)
            last: dict[str, float] = {}

            def on_epoch(epoch: int, score: float) -> None:
                last.update(epoch=epoch, valid=score)
                trainer.bar.set_postfix({"epoch": epoch + 1, config["valid_metric"]: f"{score:.4f}"})

            try:
                best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch)
            except Exception as exc:
                raise rb.recbole_error(exc, self.args, self.extra, "training") from exc
            finally:
                trainer.bar.close()
                trainer.tensorboard.close()
            # RecBole's checkpoints pickle its Config, so they need a full unpickler; this file
            # was written by the Trainer just above, inside our own cache folder.
            ckpt = torch.load(trainer.saved_model_file, map_location=config["device"], weights_only=False)
            model.load_state_dict(ckpt["state_dict"])
            model.load_other_parameter(ckpt.get("other_parameter"))
            model.eval()
        self.model = model
        self._recbole = {"config": config, "dataset": dataset, "trainer": trainer, "valid_data": valid_data,
                         "test_data": test_data if test is not None else None}
        self._index_vocab(dataset)
        self.from_cache = False
        self.fit_info = {"train_s": round(time.perf_counter() - t0, 2), "best_valid": float(best_score),
                         "epochs_run": int(last.get("epoch", -1)) + 1, "cache_entry": str(entry)}

    def _index_vocab(self, dataset: Any) -> None:
        """RecBole internal id -> catalog index (RecBole id 0 is padding)."""
        tokens = dataset.field2id_token["item_id"]
        self._rb_to_cat = np.full(len(tokens), -1, dtype=np.int64)
        for rid, tok in enumerate(tokens):
            if rid > 0:
                self._rb_to_cat[rid] = int(tok)
        self._cat_to_rb = {int(tok): rid for rid, tok in enumerate(tokens) if rid > 0}
        self._max_len = int(dataset.field2seqlen["item_id_list"])

    # ---- cache -------------------------------------------------------------

    def _save_cached(self, entry: Path) -> None:
        import torch

        state = {"state_dict": self.model.state_dict(), "item_tokens": [str(t) for t in self._rb_dataset_tokens()],
                 "max_len": self._max_len, "fit_info": self.fit_info}
        path = entry / MODEL_FILE
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        manifest = {"sha256": _sha256(path), "size": path.stat().st_size, "args": self.args, "extra": self.extra,
                    "fit_info": self.fit_info}
        tmp = entry / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, default=str))
        tmp.replace(entry / MANIFEST)

    def _rb_dataset_tokens(self) -> list[str]:
        return list(self._recbole["dataset"].field2id_token["item_id"]) if self._recbole else []

    def _load_cached(self, entry: Path, data: TrainData, seed: int) -> bool:
        """Load a cached model; a missing, truncated or altered entry returns False (retrain)."""
        import torch

        path, man_path = entry / MODEL_FILE, entry / MANIFEST
        if not path.exists() or not man_path.exists():
            return False
        try:
            manifest = json.loads(man_path.read_text())
            if path.stat().st_size != manifest["size"] or _sha256(path) != manifest["sha256"]:
                raise ValueError("size or checksum differs from its manifest")
            state = torch.load(path, map_location="cpu", weights_only=True)
            rb.import_recbole()
            from recbole.model.sequential_recommender import SASRec

            with rb.recbole_sandbox(entry, log=False):
                config, dataset = self._prepare(entry, data, seed, None)
            if [str(t) for t in dataset.field2id_token["item_id"]] != state["item_tokens"]:
                raise ValueError("item vocabulary differs from the cached model's")
            model = SASRec(config, dataset)
            model.load_state_dict(state["state_dict"])
            model.eval()
        except BenchError:
            raise
        except Exception as exc:
            warnings.warn(f"sasrec: cached model {entry} is unusable ({type(exc).__name__}: {exc}); retraining", stacklevel=2)
            return False
        self.model = model
        self._recbole = {"config": config, "dataset": dataset}
        self._index_vocab(dataset)
        self.from_cache = True
        self.fit_info = {**state.get("fit_info", {}), "cache_entry": str(entry), "from_cache": True}
        return True

    # ---- inference ---------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.model is None:
            raise BenchError("sasrec: recommend() called before fit(); fit the system first")

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        """Full-sort scores in catalog order; items RecBole has no id for get -inf. History not masked."""
        import torch

        self._check_fitted()
        n = len(self.item_ids)
        out = np.full((len(requests), n), -np.inf, dtype=np.float32)
        if not requests:
            return out
        cols = np.flatnonzero(self._rb_to_cat >= 0)
        cat_cols = self._rb_to_cat[cols]
        bs = self.args["eval_batch_size"]
        threads_before = torch.get_num_threads()
        torch.set_num_threads(self.args["threads"] or threads_before)
        try:
            for start in range(0, len(requests), bs):
                chunk = requests[start:start + bs]
                scores = self._full_sort(chunk)
                out[start:start + len(chunk)][:, cat_cols] = scores[:, cols]
        finally:
            torch.set_num_threads(threads_before)
        return out

    def _full_sort(self, requests: Sequence[Request]) -> np.ndarray:
        import torch
        from recbole.data.interaction import Interaction

        L = self._max_len
        seq = np.zeros((len(requests), L), dtype=np.int64)
        lens = np.ones(len(requests), dtype=np.int64)  # an empty history scores from the padding item alone
        for r, req in enumerate(requests):
            ids = [self._cat_to_rb[int(t)] for t in rb.history_tokens(req.history, self._token) if int(t) in self._cat_to_rb][-L:]
            if ids:
                seq[r, :len(ids)] = ids
                lens[r] = len(ids)
        model = self.model
        inter = Interaction({model.ITEM_SEQ: torch.from_numpy(seq), model.ITEM_SEQ_LEN: torch.from_numpy(lens)})
        with torch.no_grad():
            scores = model.full_sort_predict(inter.to(next(model.parameters()).device))
        return scores.view(len(requests), -1).float().cpu().numpy()

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        scores = self.score_catalog(requests)
        return [top_k(self.item_ids, scores[r], req.exclude, k) for r, req in enumerate(requests)]

    # ---- RecBole's own evaluation of the same model (for the equivalence check) ----

    def recbole_evaluate(self, stage: str = "test", *, mask_history: bool = True) -> dict[str, float]:
        """RecBole's Trainer.evaluate on the model in memory, full sort, Hit/NDCG/MRR@10.

        RecBole masks a user's history for general models but not for sequential
        ones; ``mask_history`` passes the user's whole history (train, and valid for
        the test stage) through the same ``history_index`` path the general models use,
        which is the harness's protocol.
        """
        import torch

        loader = self._recbole.get(f"{stage}_data")
        trainer = self._recbole.get("trainer")
        if loader is None or trainer is None:
            raise BenchError(f"sasrec: no RecBole {stage} data in memory; train with a test stage (cache off) first")
        if mask_history:
            users = {tok: u for u, tok in self._user_token.items()}
            seqs = rb.sequences(self._train)
            valid_item = dict(zip(self._valid.user_ids.tolist(), self._valid.item_ids.tolist(), strict=True))
            uid_tokens = loader._dataset.field2id_token["user_id"]
            base = loader.collate_fn

            def with_history(index: Any) -> Any:
                interaction, _, pos_u, pos_i = base(index)
                rows, cols = [], []
                for r, uid in enumerate(interaction["user_id"].tolist()):
                    u = users[str(uid_tokens[uid])]
                    hist = seqs.get(u, []) + ([valid_item[u]] if stage == "test" and u in valid_item else [])
                    for it in hist:
                        rid = self._cat_to_rb.get(int(self._token[it]))
                        if rid is not None:
                            rows.append(r)
                            cols.append(rid)
                return interaction, (torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)), pos_u, pos_i

            loader.collate_fn = with_history
        try:
            result = trainer.evaluate(loader, load_best_model=False, show_progress=False)
        finally:
            if mask_history:
                loader.collate_fn = base
        return {k: float(v) for k, v in result.items()}


def top_k(item_ids: Sequence[str], scores: np.ndarray, exclude: frozenset[str], k: int) -> Ranking:
    """Best k by score, excluded and unscorable (-inf) items left out; ties keep catalog order."""
    order = np.argsort(-scores, kind="stable")
    items, vals = [], []
    for j in order:
        s = scores[j]
        if not np.isfinite(s):
            break
        it = item_ids[j]
        if it in exclude:
            continue
        items.append(it)
        vals.append(float(s))
        if len(items) == k:
            break
    return Ranking(tuple(items), tuple(vals))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
