"""The semantic-id LLM recommender: ids, vocabulary extension, fine-tuning, constrained decoding."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from systems.semid import data as D
from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir
from talkwalk_bench.types import Ranking, Request, SystemMeta, TrainData

VERSION = "2"
# arguments that change inference only; they are left out of the training cache key
ID_ARGS = ("embedder", "widths", "quantizer", "rqvae_steps", "spread")  # how the semantic ids are built
INFERENCE_ONLY = ("beam", "infer_bf16", "threads", "catalog_chunk", "rec_batch", "explain_top", "constrain", "int8", "max_history_infer", "item_mix", "lm_levels",
                  "reader_steps", "reader_batch", "reader_lr", "reader_r", "reader_layers")
# the semid-constrain reader (an adapter trained on constraint rows only) is cached beside the model, keyed by these
READER_ARGS = ("reader_steps", "reader_batch", "reader_lr", "reader_r", "reader_layers")
READER_VERSION = "2"  # 2: the adapter seeded from the run, the cache keyed by the rows
# training arguments added after models were cached: at these values they stay out of the key,
# so models trained before they existed keep their cache entries
ADDED_LATER = {"explain": 0.0, "quantizer": "rqvae", "recipe": "prompt", "layers": 0, "item_embed": False, "item_head": False}
# arguments of the whole-sequence recipe; in the key only when recipe=seq
# variants that differ from another only in inference arguments share its trained model
TRAINS_AS = {"semid-constrain": "semid"}
SEQ_ONLY = ("item_embed", "item_head", "lr", "val_users", "val_every", "train_layers", "teacher", "teacher_args", "distill", "epochs", "window", "overlap", "batch_tokens", "steer_every", "steer_batch", "steer_history", "checkpoint_every")


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 or AMX), as oneDNN decides.

    Without it torch emulates bf16 matrix products: on an AVX2-only core a 512x576 by 576x1536 product took
    1,212 ms in bf16 against 24 ms in fp32, and a training step of the default recipe 41 s against 4 s.
    """
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the oneDNN query
        return str(torch.backends.cpu.get_cpu_capability()).startswith("AVX512")


def resolve_precision(p: dict[str, Any], native: bool | None = None) -> dict[str, Any]:
    """``-S bf16`` / ``-S infer_bf16`` as asked and as used: bf16 only where the CPU computes it natively,
    fp32 otherwise (the same model; measured there 8-10x faster a training step, 50x a matrix product), said once on
    stderr and recorded in ``fit_info``."""
    import sys

    native = native_bf16() if native is None else native
    asked = {k: bool(p.get(k, False)) for k in ("bf16", "infer_bf16")}
    used = {k: v and native for k, v in asked.items()}
    if used != asked:
        print("semid: this CPU has no native bf16 (emulated bf16 is about 10x slower than fp32 here); training and "
              "inference run in fp32 (-S bf16 and -S infer_bf16 apply where the CPU has it)", file=sys.stderr)
    return {"asked": asked, "used": used, "native_bf16": native}


class SemIdRecommender:
    """See docs/semid.md. Capabilities: scores (exact constrained distribution), semantic_ids, steering."""

    def __init__(self, name: str, **params: Any) -> None:
        self.p = dict(params)
        if self.p.get("quantizer", "rqvae") not in ("rqvae", "rkmeans"):
            raise BenchError(f"-S quantizer={self.p['quantizer']}: choose rqvae (default) or rkmeans")
        if not 0 <= float(self.p.get("explain", 0.0)) < 1:
            raise BenchError(f"-S explain={self.p['explain']}: give the share of explanation examples, 0 <= x < 1")
        # item_embed is an argument of the whole-sequence recipe (SEQ_ONLY): the prompt recipe ignores it
        if self.p.get("item_embed") and self.p.get("recipe", "prompt") == "seq" and int(self.p.get("train_layers", 0)) > 0:
            raise BenchError("-S item_embed=true needs -S train_layers=0: with adapters on the top layers only, "
                             "the input embeddings are detached and the item vectors would never learn (add -S item_embed=false -S item_head=false)")
        if self.p.get("item_head") and self.p.get("recipe", "prompt") == "seq" and not self.p.get("item_embed"):
            raise BenchError("-S item_head=true needs -S item_embed=true: the item head's output vectors are the "
                             "items' input vectors (plus their codes'); add -S item_embed=true, or -S item_head=false")
        if self.p.get("teacher_args"):  # a bad -S teacher_args fails here, before any work (teacher or not)
            teacher_args(str(self.p.get("teacher") or "semid-tiger"), str(self.p["teacher_args"]))
        if self.p["decoder"] not in ("trie", "outlines", "vllm"):
            raise BenchError(
                f"-S decoder={self.p['decoder']}: choose trie (default), outlines or vllm "
                "(see docs/semid.md, Decoding)"
            )
        if self.p["decoder"] == "outlines":
            from systems.semid.outlines_backend import check_available

            check_available()
        elif self.p["decoder"] == "vllm":
            from systems.semid.vllm_backend import check_available

            check_available()
        self.meta = SystemMeta(
            name=name,
            version=VERSION,
            params=dict(params),
            capabilities=frozenset(
                {"scores", "semantic_ids", "steering"}
                | ({"explanations"} if int(self.p.get("explain_top", 0)) > 0 else set())
            ),
        )
        self.fit_info: dict[str, Any] = {}

    # ---- the semantic_ids capability -------------------------------------------------
    def semantic_id(self, item_id: str) -> tuple[int, ...]:
        """The item's semantic id (level codes, then the disambiguation code)."""
        return self.table.sid(item_id)

    def item_for(self, sid: Sequence[int]) -> str | None:
        return self.table.item(sid)

    @property
    def semantic_id_stats(self) -> dict[str, Any]:
        """Codebook widths, usage and perplexity per level, collisions, genre coherence of level 1."""
        return {"widths": list(self.table.widths), **self.table.stats}

    # ---- fitting ---------------------------------------------------------------------
    def _cache_key(self, data: TrainData, seed: int) -> str:
        keep = {
            k: v
            for k, v in self.p.items()
            if k not in INFERENCE_ONLY and not (k in ADDED_LATER and v == ADDED_LATER[k])
            and not (k in SEQ_ONLY and self.p.get("recipe", "prompt") != "seq")
        }
        if keep.get("recipe") == "seq" and keep.get("teacher"):  # the teacher's own defaults can move; its model with them
            from talkwalk_bench.registry import system_defaults

            keep["teacher_resolved"] = {**system_defaults(str(keep["teacher"])), **teacher_args(str(keep["teacher"]), str(keep.get("teacher_args", "")))}
        if "decoder" in keep:  # inference only, but kept as "trie" so existing keys do not move
            keep["decoder"] = "trie"
        payload = json.dumps(
            {"v": VERSION, "data": data.key, "seed": seed, "name": TRAINS_AS.get(self.meta.name, self.meta.name), **keep},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def fit(self, data: TrainData, *, seed: int) -> None:
        import torch

        from systems.semid.decode import PrefixTrie
        from systems.semid.lm import extend_vocabulary, load_base
        from systems.semid.train import add_lora, init_new_rows, train

        if self.p.get("threads"):
            torch.set_num_threads(int(self.p["threads"]))
        t0 = time.perf_counter()
        precision = resolve_precision(self.p)
        self.p = {**self.p, **precision["used"]}  # before the cache key: a model trained in fp32 is its own
        self.item_ids = tuple(data.item_ids)
        card = data.card
        texts = [D.describe(card, data.items.get(it, {}), it) for it in self.item_ids]
        root = cache_dir() / "semid" / self._cache_key(data, seed)
        root.mkdir(parents=True, exist_ok=True)
        # 1. semantic ids
        emb, self.table = semantic_table(self.p, data, seed, texts, own=root / "ids.json")
        # 2. the LM with its extended vocabulary
        model, tok = load_base(self.p["base_model"])
        if int(self.p.get("layers", 0)) > 0:
            keep_layers(model, int(self.p["layers"]))
        self.vocab = extend_vocabulary(model, tok, self.table.widths)
        n_old = self.vocab["n_old"]
        weights = root / "trained.pt"
        log_path = root / "train_log.json"
        use_lora = self.p["steps_b"] > 0
        if use_lora:
            seq = self.p.get("recipe", "prompt") == "seq"
            model = add_lora(model, r=self.p["lora_r"], top_layers=int(self.p.get("train_layers", 0)) if seq else 0)
        core = model.get_base_model() if use_lora else model
        self.item_vec = self._item_vectors(core) if self.p.get("item_embed") and self.p.get("recipe", "prompt") == "seq" else None
        if weights.exists():
            state = torch.load(weights, map_location="cpu", weights_only=True)
            with torch.no_grad():
                core.get_input_embeddings().weight[n_old:] = state["new_rows"]
                if self.item_vec is not None:
                    self.item_vec.weight.copy_(state["item_vec"])
                if "new_head_rows" in state:
                    core.get_output_embeddings().weight[n_old:] = state["new_head_rows"]
            if use_lora:
                from peft import set_peft_model_state_dict

                set_peft_model_state_dict(model, state["lora"])
            self.fit_info = json.loads(log_path.read_text()) if log_path.exists() else {}
            self.fit_info["cached"] = True
        else:
            init_new_rows(
                core,
                tok,
                self.vocab,
                how=self.p["init"],
                codes=self.table.codes,
                item_emb=emb,
                item_texts=texts,
                seed=seed,
            )
            if self.p.get("recipe", "prompt") == "seq":
                info = {"ids": self.table.stats, "widths": list(self.table.widths), "recipe": "seq"}
                info["training"] = self._fit_seq(model, core, tok, data, seed, root, use_lora)
            else:
                sids = {it: self.table.sid(it) for it in self.item_ids}
                seqs = _train_sequences(data) if self.p["mix"] == "full" else {}
                bs = self.p["batch_size"]
                common = dict(
                    sids=sids,
                    items=data.items,
                    card=card,
                    sequences=seqs,
                    mix=self.p["mix"],
                    max_history=self.p["max_history"],
                    eos=tok.eos_token or "",
                    explain=float(self.p.get("explain", 0.0)),
                )
                info: dict[str, Any] = {"ids": self.table.stats, "widths": list(self.table.widths)}
                if self.p["steps_a"] > 0:
                    ex = D.make_examples(self.p["steps_a"] * bs, seed=seed, **common)
                    info["stage_a"] = train(
                        core,
                        tok,
                        ex,
                        n_old=n_old,
                        steps=self.p["steps_a"],
                        batch_size=bs,
                        lr=self.p["lr_a"],
                        max_len=self.p["max_len"],
                        bf16=self.p["bf16"],
                        seed=seed,
                        desc=f"{self.meta.name} stage A",
                    )
                if use_lora:
                    ex = D.make_examples(self.p["steps_b"] * bs, seed=seed + 1, **common)
                    lora = [p for n, p in model.named_parameters() if "lora_" in n]
                    info["stage_b"] = train(
                        core,
                        tok,
                        ex,
                        n_old=n_old,
                        steps=self.p["steps_b"],
                        batch_size=bs,
                        lr=self.p["lr_a"],
                        lora_params=lora,
                        lr_lora=self.p["lr_b"],
                        max_len=self.p["max_len"],
                        bf16=self.p["bf16"],
                        seed=seed + 1,
                        desc=f"{self.meta.name} stage B",
                    )
            state = {"new_rows": core.get_input_embeddings().weight[n_old:].detach().clone()}
            if self.item_vec is not None:
                state["item_vec"] = self.item_vec.weight.detach().clone()
            if (
                core.get_output_embeddings() is not None
                and core.get_output_embeddings().weight is not core.get_input_embeddings().weight
            ):
                state["new_head_rows"] = (
                    core.get_output_embeddings().weight[n_old:].detach().clone()
                )
            if use_lora:
                from peft import get_peft_model_state_dict

                state["lora"] = get_peft_model_state_dict(model, save_embedding_layers=False)
            tmp = weights.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, weights)
            log_path.write_text(json.dumps(info, default=str))
            self.fit_info = {**info, "cached": False}
        if use_lora:
            model = model.merge_and_unload()
        reader = None
        if self.p.get("constrain") and card is not None and self.p.get("recipe", "prompt") == "seq":
            reader = self._fit_reader(model, tok, data, root, seed)
        if self.p["infer_bf16"]:
            model = model.to(torch.bfloat16)
            reader = reader.to(torch.bfloat16) if reader is not None else None
        self.model, self.tok = model.eval(), tok
        self.reader = reader.eval() if reader is not None else self.model
        self._has_reader = reader is not None
        self.trie = PrefixTrie([self.table.sid(it) for it in self.item_ids])
        self.level_tokens = self.vocab["levels"]
        self._col = {it: j for j, it in enumerate(self.item_ids)}
        self._trie_cols = np.array([self._col[self.table.item(s)] for s in self.trie.sids])
        if self.p.get("recipe", "prompt") == "seq":
            self.space = self._code_space()
            self.trie = PrefixTrie(self.space.sids)
            self.level_tokens = self.space.level_tokens
            self._trie_cols = np.array([self._col[self.space.by_sid[s]] for s in self.trie.sids])
            if self.p.get("int8"):
                # the body's Linear layers only: the LM head rows are read directly by the decoder
                model = model.float()
                model.model = torch.ao.quantization.quantize_dynamic(model.model, {torch.nn.Linear}, dtype=torch.qint8)
                self.model = model.eval()
            if self.p.get("constrain") and card is not None:
                self._constraint_setup(data)
            self.item_prior = self._prior(self.model, self.space)
        self.fit_info["fit_seconds"] = round(time.perf_counter() - t0, 1)
        self.fit_info["cache_dir"] = str(root)
        self.fit_info["precision"] = precision


    # ---- the whole-sequence recipe (docs/semid.md, Training) ---------------------------
    def _code_space(self) -> Any:
        """The compact code tokens of the whole-sequence recipe, over the extended vocabulary's levels."""
        from systems.semid.seq import CodeSpace

        space = CodeSpace(self.table, self.item_ids, level_tokens=None)
        space.level_tokens = space.from_full(self.vocab["levels"])
        return space

    def _item_vectors(self, core: Any) -> Any:
        """``-S item_embed``: one learned vector per item, added to the input embedding where a
        history item's last code token is read (``CodeSpace.item_slots``), through a forward hook
        on the input embedding, so training, validation, decoding and the exact distribution all
        read it. Zero at the start: the model begins as the code-only one."""
        import torch

        space = self._code_space()
        vec = torch.nn.Embedding(len(self.item_ids) + 1, core.config.hidden_size, padding_idx=0)
        torch.nn.init.zeros_(vec.weight)

        def add(module: Any, args: Any, out: Any) -> Any:
            ids = args[0]
            slots = space.item_slots(np.atleast_2d(ids.detach().cpu().numpy())).reshape(tuple(ids.shape))
            if not slots.any():
                return out
            return out + vec(torch.as_tensor(slots)).to(out.dtype)

        core.get_input_embeddings().register_forward_hook(add)
        return vec

    def _out_vectors(self, core: Any) -> Any:
        """``-S item_head``: each item's output vector, its own input vector plus its code tokens'
        input embeddings (tied, as SASRec ties its item embeddings), [n_items, d] in catalog order."""
        import torch

        if getattr(self, "_tok_matrix", None) is None:
            self._tok_matrix = torch.as_tensor(self._code_space().token_matrix())
        from systems.semid.seq import tied_out_vectors

        return tied_out_vectors(self.item_vec.weight, core.get_input_embeddings().weight, self._tok_matrix)

    def _prior(self, core: Any, space: Any, frozen: bool = True) -> Any:
        """The item head as a decoding prior (``decode.ItemPrior``), or None without one. ``frozen``:
        the output vectors are computed once (inference), else at every call (validation in training)."""
        if not (self.p.get("item_head") and self.item_vec is not None):
            return None
        from systems.semid.decode import ItemPrior
        from systems.semid.seq import item_logits

        if frozen:
            out = self._out_vectors(core).detach().float()
            return ItemPrior(lambda h: item_logits(h, out), space.index_of_sid, float(self.p.get("item_mix", 1.0)))
        return ItemPrior(lambda h: item_logits(h, self._out_vectors(core)), space.index_of_sid, float(self.p.get("item_mix", 1.0)))

    def _fit_seq(self, model: Any, core: Any, tok: Any, data: TrainData, seed: int, root: Any, use_lora: bool) -> dict[str, Any]:
        import torch

        from systems.semid.constraint import PROMPT, ConstraintSpace
        from systems.semid.recipe import CatalogTeacher, Teacher, train_seq
        space = self._code_space()
        teacher = None
        if self.p.get("teacher"):
            from talkwalk_bench.registry import build_system, system_defaults

            name = str(self.p["teacher"])
            targs = teacher_args(name, self.p.get("teacher_args", ""))
            # a teacher that builds semantic ids builds them as the student does (same embedder, widths, ...)
            targs.update({k: self.p[k] for k in ID_ARGS if k in system_defaults(name) and k not in targs})
            tsys, _ = build_system(name, targs)
            tsys.fit(data, seed=seed)
            if "semantic_ids" in tsys.meta.capabilities:  # reads the student's own ids, level by level
                teacher = Teacher(tsys, space)
            else:  # any catalog scorer: its distribution summed onto the trie
                teacher = CatalogTeacher(tsys, space, name=name)
        rows: list[tuple[list[int], list[int]]] = []
        if data.card is not None and int(self.p["steer_every"]) > 0:
            for utt, text in ConstraintSpace(data.card).rows(data.card, seed=seed):
                x = tok(PROMPT.format(utterance=utt), add_special_tokens=False)["input_ids"]
                y = tok(" " + text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                rows.append((x, y))
        from systems.semid.train import train_new_rows_only

        rows_w, hooks = train_new_rows_only(core, self.vocab["n_old"])
        params = list(rows_w)
        if self.item_vec is not None:  # learns at the adapters' rate (after the n_rows id rows)
            self.item_vec.weight.requires_grad_(True)
            params.append(self.item_vec.weight)
        if use_lora:
            lora = [q for n, q in model.named_parameters() if "lora_" in n]
            for q in lora:
                q.requires_grad_(True)
            params += lora
        valid = dict(zip(data.valid.user_ids.tolist(), data.valid.item_ids.tolist(), strict=False))
        seqs = _train_sequences(data)
        val_users = [u for u in sorted(valid) if u in seqs][: int(self.p.get("val_users", 0))]

        from systems.semid.decode import PrefixTrie, beam_search_batch
        from systems.semid.seq import ndcg_at_10

        trie = PrefixTrie(space.sids)

        def validate() -> float:
            """nDCG@10 of the validation item for ``val_users`` (history masked), with the model as it is now."""
            n = int(self.p["max_history"])
            ranked = []
            for i in range(0, len(val_users), 16):
                us = val_users[i : i + 16]
                prompts = [[self.vocab["rec"], *space.history_tokens(seqs[u], n)] for u in us]
                ex = [[space.sids[space.index[it]] for it in set(seqs[u]) if it in space.index] for u in us]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(self.p["bf16"])):
                    res = beam_search_batch(core, prompts, trie, space.level_tokens, k=10, beam=10, excludes=ex,
                                            item_prior=self._prior(core, space, frozen=False))
                ranked += [[space.by_sid[s] for s, _ in r] for r in res]
            return ndcg_at_10(ranked, [valid[u] for u in val_users])

        try:
            info = train_seq(model, core, tok, self.vocab, space, seqs, data=data,
                             item_ids=self.item_ids, teacher=teacher, p=self.p, params=params, root=root, seed=seed,
                             constraint_rows=rows, desc=self.meta.name, n_rows=len(rows_w),
                             item_out=(lambda: self._out_vectors(core)) if self.p.get("item_head") and self.item_vec is not None else None,
                             validate=validate if val_users else None)
        finally:
            for hk in hooks:
                hk.remove()
            for q in core.parameters():
                q.requires_grad_(False)
            if self.item_vec is not None:
                self.item_vec.weight.requires_grad_(False)
        info["teacher"] = ({"system": str(self.p["teacher"]), "fit_info": {k: v for k, v in teacher.sys.fit_info.items() if isinstance(v, (int, float, str))}}
                           if teacher is not None and hasattr(teacher.sys, "fit_info") else None)
        info["constraint_rows"] = len(rows)
        return info

    def _reader_key(self) -> str:
        payload = json.dumps({"v": READER_VERSION, **{k: self.p.get(k) for k in READER_ARGS}}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def _fit_reader(self, model: Any, tok: Any, data: TrainData, root: Any, seed: int) -> Any:
        """The semid-constrain reader: a copy of the fitted LLM with its own LoRA adapter, trained on
        constraint rows only (``ConstraintSpace.reader_rows``), so reading a request never moves the
        model that ranks. Cached as ``reader-<key>.pt`` beside the model; ``-S reader_steps=0`` reads
        with the ranking model itself."""
        import copy

        import torch
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        from systems.semid.constraint import PROMPT, ConstraintSpace
        from systems.semid.train import add_lora, train_reader

        steps = int(self.p.get("reader_steps", 0))
        if steps <= 0:
            return None
        n_layers = int(self.p.get("reader_layers", 0))
        if n_layers > 0:  # the base LLM cut after its first n layers (all of them if n >= its depth), without the id rows
            from systems.semid.lm import load_base

            base, _ = load_base(self.p["base_model"])
            if n_layers < base.config.num_hidden_layers:
                keep_layers(base, n_layers)
        else:  # a copy of the fitted ranking model
            base = copy.deepcopy(model)
        # the adapter's start comes from the run's seed, not from whatever the process drew before
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            reader = add_lora(base, r=int(self.p["reader_r"]))
        from talkwalk_bench.steering import ItemValues

        titles = [t for t in ItemValues(data.card, data.items, self.item_ids).titles.values() if t]
        rows = ConstraintSpace(data.card, anchored=True).reader_rows(data.card, titles, seed=seed)
        # the cache key holds the rows themselves: new phrasings or paraphrases train a new reader
        rows_hash = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
        path = root / f"reader-{self._reader_key()}-{rows_hash}.pt"
        if n_layers > 0:
            # cut from the base LLM, it does not depend on the ranking model: cached by data, seed, base
            # model and rows, so a retrained ranking model reuses it (a reader cached beside its model still counts)
            own = json.dumps({"data": data.key, "seed": seed, "base": str(self.p["base_model"]), "bf16": bool(self.p["bf16"]),
                              "reader": self._reader_key(), "rows": rows_hash}, sort_keys=True)
            shared = cache_dir() / "semid-reader" / f"{hashlib.sha256(own.encode()).hexdigest()[:16]}.pt"
            path = path if path.exists() else shared
            path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            st = torch.load(path, map_location="cpu", weights_only=False)
            set_peft_model_state_dict(reader, st["lora"])
            self.fit_info["reader"] = {**st["info"], "cached": True}
            return reader.merge_and_unload()
        by_kind: dict[str, list[tuple[list[int], list[int]]]] = {}
        for kind, utt, text in rows:
            x = tok(PROMPT.format(utterance=utt), add_special_tokens=False)["input_ids"]
            y = tok(" " + text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            by_kind.setdefault(kind, []).append((x, y))
        kinds = sorted(by_kind)
        info = {"rows": len(rows), "kinds": {k: len(v) for k, v in by_kind.items()}, "steps": steps}
        info.update(train_reader(reader, by_kind, kinds, steps=steps, batch=int(self.p["reader_batch"]),
                                 lr=float(self.p["reader_lr"]), n_old=int(self.vocab["n_old"]), seed=seed,
                                 bf16=bool(self.p["bf16"]), desc=f"{self.meta.name} reader"))
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two jobs may train the same shared reader at once
        torch.save({"lora": get_peft_model_state_dict(reader, save_embedding_layers=False), "info": info}, tmp)
        os.replace(tmp, path)
        self.fit_info["reader"] = {**info, "cached": False}
        return reader.merge_and_unload()

    def _constraint_setup(self, data: TrainData) -> None:
        from systems.semid.constraint import ConstraintSpace, TokenTrie
        from talkwalk_bench.steering import ItemValues, Vocabulary

        # the reader's language holds the relations to a named or shown item; without a reader
        # the ranking model reads, and it was trained on the language without them
        self.cspace = ConstraintSpace(data.card, anchored=self._has_reader)

        def trie(texts: list[str]) -> tuple[Any, list[str]]:
            return TokenTrie([self.tok(" " + t, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id] for t in texts]), texts

        # with an item to refer to, every constraint; without one, none of the anchored relations
        self._ctries = {True: trie(self.cspace.texts), False: trie([t for t in self.cspace.texts if t not in self.cspace.anchored])}
        self.ctrie = self._ctries[True][0]
        self._vocab = Vocabulary(data.card)
        self._iv = ItemValues(data.card, data.items, self.item_ids)
        # catalog titles a request may name without the item having been shown: longest first, and only
        # those unlikely to be everyday words (two words or more, or 8 characters or more)
        self._titles = sorted(((t.lower(), it) for it, t in self._iv.titles.items() if " " in t.strip() or len(t) >= 8),
                              key=lambda x: -len(x[0]))
        self._sub: dict[Any, Any] = {}

    def read_constraint(self, utterance: str, anchored: bool = True) -> tuple[str, Any]:
        """(canonical text, predicate or None) the reader emits for an utterance (semid-constrain).

        An anchored text ("year < that") comes back with None; ``read`` resolves it. With
        ``anchored=False`` the anchored relations are not in the grammar.
        """
        from systems.semid.constraint import PROMPT, greedy_emit

        trie, texts = self._ctries[bool(anchored) and bool(self.cspace.anchored)]
        ids = self.tok(PROMPT.format(utterance=utterance), add_special_tokens=False)["input_ids"]
        i, _ = greedy_emit(self.reader, ids, trie)
        return texts[i], self.cspace.preds[texts[i]]

    def read(self, r: Request) -> tuple[str, Any, Any]:
        """(text, predicate or None, cache key) of a request's constraint: the reader's reading, with "that"
        resolved to the item the request names or was shown (anchored relations only when there is one)."""
        anchor = self.anchor_of(r) if self.cspace.anchored else None
        text, pred = self.read_constraint(r.utterance, anchored=anchor is not None)
        if text in self.cspace.anchored and anchor is not None and anchor in self._iv.index:
            kind = self.cspace.anchored[text]
            s = self._vocab.relative(kind, anchor, self._iv[anchor], self._iv.titles.get(anchor, ""))
            return text, s.predicate, (kind, anchor)
        return text, pred, text

    def anchor_of(self, r: Request) -> str | None:
        """The item a request refers to: a shown or history item whose title the utterance says, else a
        catalog title it says (longest first), else, when it points ("that", "this", "it", ...), the first
        item of the last list shown; None without one."""
        said = r.utterance.lower()
        near = [*reversed(r.shown), *reversed(r.history)]
        for it in near:
            t = self._iv.titles.get(it, "").lower()
            if len(t) >= 3 and _says(said, t):
                return it
        for t, it in self._titles:
            if _says(said, t):
                return it
        last = next((t.shown for t in reversed(r.conversation[:-1]) if t.shown), ())
        return last[0] if last and _POINTS.search(said) else None

    def _sid_set(self, key: Any, sub: Any) -> set:
        """The ids in a constraint's sub-trie, as a set (memoised with it)."""
        got = self._sub.get(("ids", key))
        if got is None:
            got = self._sub[("ids", key)] = set(map(tuple, sub.sids))
        return got

    def _trie_for(self, key: Any, pred: Any) -> Any:
        """The prefix trie of the items that satisfy a constraint (None when none or all do)."""
        from systems.semid.decode import PrefixTrie

        if key not in self._sub:
            ok = self._iv.mask(pred)
            self._sub[key] = PrefixTrie([self.space.sids[i] for i in np.flatnonzero(ok)]) if 0 < ok.sum() < len(ok) else None
        return self._sub[key]

    def _seq_prompt(self, r: Request) -> list[int]:
        from systems.semid.recipe import steered_prefix

        n = int(self.p.get("max_history_infer") or self.p["max_history"])
        hist = self.space.history_tokens(r.history, n)
        if r.utterance:
            return steered_prefix(self.tok, self.vocab, hist, r.utterance)
        return [self.vocab["rec"], *hist]

    def _recommend_seq(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        from systems.semid.decode import beam_search_batch

        prompts = [self._seq_prompt(r) for r in requests]
        excludes = [[self.space.sids[self.space.index[it]] for it in r.exclude if it in self.space.index] for r in requests]
        tries, parsed = [self.trie] * len(requests), [None] * len(requests)
        if self.p.get("constrain"):
            for i, r in enumerate(requests):
                if r.utterance:
                    text, pred, key = self.read(r)
                    parsed[i] = text
                    if pred is not None:
                        sub = self._trie_for(key, pred)
                        # enough satisfying items left once the request's exclusions (its history) are
                        # taken out of them, not out of the whole catalog
                        if sub is not None and len(sub.sids) - len(self._sid_set(key, sub) & set(map(tuple, excludes[i]))) >= k:
                            tries[i] = sub
        size = max(1, int(self.p.get("rec_batch", 16)))
        got: dict[int, list] = {}
        groups: dict[int, list[int]] = {}
        for i in range(len(requests)):
            groups.setdefault(id(tries[i]), []).append(i)
        for idx in groups.values():
            idx = sorted(idx, key=lambda i: len(prompts[i]))
            for start in range(0, len(idx), size):
                part = idx[start : start + size]
                res = beam_search_batch(self.model, [prompts[i] for i in part], tries[part[0]], self.level_tokens, k=k,
                                        beam=self.p["beam"], excludes=[excludes[i] for i in part], item_prior=self.item_prior,
                                        lm_levels=self._lm_levels())
                got.update(zip(part, res, strict=True))
        out = []
        for i in range(len(requests)):
            items = tuple(self.space.by_sid[s] for s, _ in got[i])
            trace = {"semantic_ids": [list(self.table.sid(it)) for it in items]}
            if parsed[i] is not None:
                trace["constraint"] = parsed[i]
                # whether decoding kept to it (False: nothing to keep to, or fewer than k items left)
                trace["constraint_kept"] = tries[i] is not self.trie
            out.append(Ranking(items, tuple(float(v) for _, v in got[i]), trace=trace))
        return out

    def _lm_levels(self) -> int | None:
        """Levels the LLM's codes score (``-S lm_levels``; 0 or unset: all); deeper ones are left to the item head."""
        n = int(self.p.get("lm_levels") or 0)
        return n if n > 0 and self.item_prior is not None else None

    # ---- inference -------------------------------------------------------------------
    def _prompt_ids(self, r: Request) -> list[int]:
        hist = [self.table.sid(it) for it in r.history if it in self.table]
        text = D.rec_prompt(hist, r.utterance, max_history=self.p["max_history"])
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        return ids[-self.p["max_len"] :]

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        """Top-``k`` lists; requests are decoded together in groups of ``rec_batch`` of similar length."""
        from systems.semid.decode import beam_search_batch

        if self.p.get("recipe", "prompt") == "seq" and self.p["decoder"] == "trie":
            return self._recommend_seq(requests, k=k)
        prompts = [self._prompt_ids(r) for r in requests]
        excludes = [[self.table.sid(it) for it in r.exclude if it in self.table] for r in requests]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        size = max(1, int(self.p.get("rec_batch", 16)))
        got: dict[int, list] = {}
        if self.p["decoder"] != "trie":  # sampling backends (docs/semid.md, Decoding)
            got.update(enumerate(self._sampler().decode(prompts, excludes, k=k)))
            order = []
        for start in range(0, len(order), size):
            part = order[start : start + size]
            res = beam_search_batch(
                self.model,
                [prompts[i] for i in part],
                self.trie,
                self.level_tokens,
                k=k,
                beam=self.p["beam"],
                excludes=[excludes[i] for i in part],
            )
            got.update(zip(part, res, strict=True))
        out = []
        for i in range(len(requests)):
            items = tuple(self.table.item(s) for s, _ in got[i])
            why = None
            if int(self.p.get("explain_top", 0)) > 0 and got[i]:
                why = self.explain(prompts[i], [s for s, _ in got[i][: int(self.p["explain_top"])]])
            out.append(
                Ranking(
                    items,
                    tuple(float(v) for _, v in got[i]),
                    explanation=why,
                    trace={"semantic_ids": [list(s) for s, _ in got[i]]},
                )
            )
        return out

    def explain(self, prompt_ids: Sequence[int], sids: Sequence[Sequence[int]], max_new_tokens: int = 48) -> str:
        """The model's own short explanation of each recommended id (greedy; trained by the ``explain`` kind).

        Free text in the base vocabulary (the id tokens are suppressed): it is what
        the model says, and may be wrong.
        """
        import torch

        no_ids = list(range(self.vocab["n_old"], len(self.tok)))
        no_ids += [t for t in self.tok.all_special_ids if t != self.tok.eos_token_id and t < self.vocab["n_old"]]
        texts = []
        for sid in sids:
            tail = self.tok(D.target_text(sid) + D.EXPLAIN_PROMPT, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([list(prompt_ids) + tail])
            with torch.inference_mode():
                gen = self.model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    suppress_tokens=no_ids,
                    pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id,
                )
            texts.append(self.tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True).strip())
        return " | ".join(t for t in texts if t) or None

    def _sampler(self) -> Any:
        """The ``decoder=outlines`` or ``decoder=vllm`` backend, built on first use."""
        if getattr(self, "_sampler_obj", None) is None:
            if self.p["decoder"] == "outlines":
                from systems.semid.outlines_backend import OutlinesSampler

                self._sampler_obj = OutlinesSampler(
                    self.model, self.tok, self.trie, self.level_tokens
                )
            else:
                from systems.semid.vllm_backend import VllmSampler

                self._sampler_obj = VllmSampler.from_system(self)
        return self._sampler_obj

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        """Log-probability of every catalog item under the constrained decoder (catalog order)."""
        from systems.semid.decode import item_log_probs

        out = np.full((len(requests), len(self.item_ids)), -np.inf)
        seq = self.p.get("recipe", "prompt") == "seq"
        for i, r in enumerate(requests):
            lp = item_log_probs(
                self.model,
                self._seq_prompt(r) if seq else self._prompt_ids(r),
                self.trie,
                self.level_tokens,
                chunk=self.p["catalog_chunk"],
                item_prior=self.item_prior if seq else None,
                lm_levels=self._lm_levels() if seq else None,
            )
            out[i, self._trie_cols] = lp
        return out


_POINTS = re.compile(r"\b(?:that|this|it|those|these|them)\b")


def _says(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words ("film1" is not in "film12")."""
    i = text.find(phrase)
    while i >= 0:
        end = i + len(phrase)
        if (i == 0 or not text[i - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
            return True
        i = text.find(phrase, i + 1)
    return False


def keep_layers(model: Any, n: int) -> None:
    """Keep the base model's first ``n`` decoder layers (``-S layers=N``; all of them when it has
    no more than ``n``); the final norm and the head stay."""
    total = model.config.num_hidden_layers
    if n >= total:
        return
    model.model.layers = model.model.layers[:n]
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]


def teacher_args(name: str, text: str) -> dict[str, Any]:
    """``-S teacher_args=epochs=20,hidden=64``: the teacher's own arguments, typed by its defaults."""
    from talkwalk_bench.registry import system_defaults

    defaults = system_defaults(name)
    out: dict[str, Any] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        key, sep, val = part.partition("=")
        if not sep or key not in defaults:
            raise BenchError(f"-S teacher_args={text}: '{part}' is not KEY=VALUE with KEY an argument of {name}; see talkwalk-bench list")
        d = defaults[key]
        if isinstance(d, bool):
            out[key] = val.lower() in ("1", "true", "yes")
        elif isinstance(d, int):
            out[key] = int(val)
        elif isinstance(d, float):
            out[key] = float(val)
        else:
            out[key] = val
    return out


def _first_multi_labels(card: Any, items: Any, item_ids: Sequence[str]) -> list[frozenset] | None:
    if card is None:
        return None
    for attr in card.item.attributes.values():
        if attr.kind == "multi_categorical":
            return [frozenset(attr.value_of(dict(items.get(it, {})))) for it in item_ids]
    return None


def _train_sequences(data: TrainData) -> dict[str, list[str]]:
    seqs: dict[str, list[str]] = {}
    for u, it in zip(data.train.user_ids.tolist(), data.train.item_ids.tolist(), strict=False):
        seqs.setdefault(u, []).append(it)
    return seqs


def semantic_table(p: dict[str, Any], data: TrainData, seed: int, texts: Sequence[str], *, own: Any) -> tuple[np.ndarray, Any]:
    """(item embeddings, the semantic-id table) for arguments ``p``; cached, shared by every variant.

    ``own`` is the file of the ids a cached model was trained with; it wins over the shared cache.
    """
    from systems.semid.embed import item_embeddings
    from systems.semid.ids import SemanticIdTable, build_table

    item_ids = tuple(data.item_ids)
    card = data.card
    emb = item_embeddings(p["embedder"], texts, data, seed)
    # ids depend only on the embeddings and the RQ-VAE settings: shared by all variants
    ids_key = hashlib.sha256(
        json.dumps(
            [
                VERSION,
                data.key,
                seed,
                p["embedder"],
                p["widths"],
                p["rqvae_steps"],
                p.get("spread", True),
                texts,
            ]
            + ([] if p.get("quantizer", "rqvae") == ADDED_LATER["quantizer"] else [p["quantizer"]])
        ).encode()
    ).hexdigest()[:16]
    tpath = cache_dir() / "semid" / "ids" / f"{ids_key}.json"
    tpath.parent.mkdir(parents=True, exist_ok=True)
    if own.exists():
        table = SemanticIdTable.from_json(json.loads(own.read_text()))
    elif tpath.exists():
        table = SemanticIdTable.from_json(json.loads(tpath.read_text()))
    else:
        labels = _first_multi_labels(card, data.items, item_ids)
        widths = (
            tuple(int(w) for w in str(p["widths"]).split("x"))
            if p["widths"]
            else None
        )
        table = build_table(
            item_ids,
            emb,
            widths=widths,
            labels=labels,
            steps=p["rqvae_steps"],
            seed=seed,
            spread=p.get("spread", True),
            quantizer=p.get("quantizer", "rqvae"),
        )
        tmp = tpath.with_suffix(".tmp")
        tmp.write_text(json.dumps(table.to_json()))
        os.replace(tmp, tpath)
    if not own.exists():
        own.write_text(json.dumps(table.to_json()))
    return emb, table
