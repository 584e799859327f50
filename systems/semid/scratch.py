"""A from-scratch semantic-id decoder (TIGER-style generative retrieval, decoder-only).

A small Llama (transformers) whose whole vocabulary is the compact code tokens
of the semantic ids, trained from random weights on the users' chronological
sequences in the compact whole-sequence format (``systems/semid/seq.py``):
every code position is a target, softmax restricted to its level. Decoding is
the same prefix-trie beam search as the LLM's (``decode.beam_search_batch``),
so ids are always valid and distinct.

Steering: the request's MiniLM embedding, through a learned projection, is one
extra input position after the history; training rows pair a history window
and a *train* phrasing with soft targets over the items that satisfy its
predicate, weighted by the model's own distribution for that user (so the
request moves the list inside what the user would like). Evaluation phrasings
are never read.

It is the reference point for what semantic ids can do without an LLM, and the
teacher the LLM distils from (``-S teacher=semid-tiger``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from systems.semid import data as D
from systems.semid import seq as S
from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir
from talkwalk_bench.types import Ranking, Request, SystemMeta, TrainData

VERSION = "1"
INFERENCE_ONLY = ("beam", "rec_batch", "threads", "max_history", "item_mix", "lm_levels")
# the steering stage is cached apart from the sequence model, keyed by these (and STEER_VERSION)
STEER_ARGS = ("steer_steps", "steer_batch", "steer_history", "steer_lr")
STEER_VERSION = "2"
# training arguments added after models were cached: at these values they stay out of the key
ADDED_LATER = {"teacher": "", "teacher_args": "epochs=3", "distill": 0.0, "item_embed": False, "item_head": False}
PAD, BOS, UTT = 0, 1, 2  # special token ids; codes follow
N_SPECIAL = 3


@lru_cache(maxsize=1)
def _minilm() -> Any:
    from sentence_transformers import SentenceTransformer

    from systems.semid.embed import minilm_path

    return SentenceTransformer(str(minilm_path()), device="cpu")


class TextVectors:
    """MiniLM sentence vectors of utterances, memoised."""

    def __init__(self) -> None:
        self.memo: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            vec = _minilm().encode(list(todo), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
            self.memo.update(zip(todo, np.asarray(vec, dtype=np.float32), strict=True))
        return np.stack([self.memo[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def steer_history(seq: Sequence[str], n: int, half: int) -> list[str]:
    """The last ``n`` items of a train history (``half=1``: of its first half), for steering rows."""
    end = len(seq) if not half else max(1, len(seq) // 2)
    return list(seq[max(0, end - n) : end])


class ScratchDecoder:
    """See the module docstring. Capabilities: scores, semantic_ids, steering."""

    def __init__(self, name: str, **params: Any) -> None:
        self.p = dict(params)
        self.meta = SystemMeta(
            name=name,
            version=VERSION,
            params=dict(params),
            capabilities=frozenset({"scores", "semantic_ids", "steering"}),
        )
        if self.p.get("item_head") and not self.p.get("item_embed"):
            raise BenchError("-S item_head=true needs -S item_embed=true: the item head's output vectors are the "
                             "items' input vectors (plus their codes'); add -S item_embed=true, or -S item_head=false")
        self.fit_info: dict[str, Any] = {}
        self.text = TextVectors()

    # ---- the semantic_ids capability -------------------------------------------------
    def semantic_id(self, item_id: str) -> tuple[int, ...]:
        return self.table.sid(item_id)

    @property
    def semantic_id_stats(self) -> dict[str, Any]:
        return {"widths": list(self.table.widths), **self.table.stats}

    # ---- model ----------------------------------------------------------------------
    def _new_model(self, vocab: int) -> Any:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(self.seed)
        d = int(self.p["hidden"])
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=d,
            intermediate_size=4 * d,
            num_hidden_layers=int(self.p["layers"]),
            num_attention_heads=int(self.p["heads"]),
            num_key_value_heads=int(self.p["heads"]),
            max_position_embeddings=4 * int(self.p["window"]) + 64,
            tie_word_embeddings=True,
            attention_dropout=float(self.p["dropout"]),
            pad_token_id=PAD,
            bos_token_id=BOS,
            eos_token_id=PAD,
        )
        model = LlamaForCausalLM(cfg)
        self.proj = torch.nn.Linear(384, d)
        # -S item_embed: an input vector per item, added where the item's last code is read
        self.item_emb = None
        if self.p.get("item_embed"):
            self.item_emb = torch.nn.Embedding(len(self.item_ids) + 1, d, padding_idx=0)
            torch.nn.init.normal_(self.item_emb.weight, std=cfg.initializer_range)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()
        return model

    def _modules(self) -> dict[str, Any]:
        """Everything trained in the sequence stage, by the name it is saved under."""
        out = {"model": self.model, "proj": self.proj}
        if self.item_emb is not None:
            out["item_emb"] = self.item_emb
        return out

    def _out_vectors(self) -> Any:
        """``-S item_head``: each item's output vector, its own input vector plus its codes' embeddings
        (tied, as SASRec ties its item embeddings), [n_items, d] in catalog order."""
        import torch

        if getattr(self, "_tok_matrix", None) is None:
            self._tok_matrix = torch.as_tensor(self.space.token_matrix())
        return S.tied_out_vectors(self.item_emb.weight, self.model.get_input_embeddings().weight, self._tok_matrix)

    def _prior(self) -> Any:
        """The item head as a decoding prior (``decode.ItemPrior``), or None without one."""
        if not self.p.get("item_head"):
            return None
        from systems.semid.decode import ItemPrior

        return ItemPrior(lambda h: S.item_logits(h, self._out_vectors()), self.space.index_of_sid, float(self.p.get("item_mix", 1.0)))

    def _lm_levels(self) -> int | None:
        """Levels the decoder's codes score (``-S lm_levels``; 0: all); deeper ones are left to the item head."""
        n = int(self.p.get("lm_levels") or 0)
        return n if n > 0 and self.p.get("item_head") else None

    def _input_embeds(self, ids: Any) -> Any:
        """Token embeddings, plus each complete item's own vector under ``-S item_embed``."""
        import torch

        emb = self.model.get_input_embeddings()(ids)
        if self.item_emb is not None:
            emb = emb + self.item_emb(torch.as_tensor(self.space.item_slots(ids.numpy())))
        return emb

    def _key(self, data: TrainData, seed: int) -> str:
        """The sequence model's cache key: every training argument but the steering stage's."""
        keep = {k: v for k, v in self.p.items()
                if k not in INFERENCE_ONLY + STEER_ARGS and not (k in ADDED_LATER and v == ADDED_LATER[k])}
        payload = json.dumps({"v": VERSION, "data": data.key, "seed": seed, **keep}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _steer_key(self) -> str:
        payload = json.dumps({"v": STEER_VERSION, **{k: self.p[k] for k in STEER_ARGS}}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def fit(self, data: TrainData, *, seed: int) -> None:
        import torch

        from systems.semid.decode import PrefixTrie
        from systems.semid.system import _train_sequences, semantic_table

        if self.p.get("threads"):
            torch.set_num_threads(int(self.p["threads"]))
        t0 = time.perf_counter()
        self.seed = seed
        self.item_ids = tuple(data.item_ids)
        texts = [D.describe(data.card, data.items.get(it, {}), it) for it in self.item_ids]
        root = cache_dir() / "semid-tiger" / self._key(data, seed)
        root.mkdir(parents=True, exist_ok=True)
        _, self.table = semantic_table(self.p, data, seed, texts, own=root / "ids.json")
        self.space = S.CodeSpace(self.table, self.item_ids)
        self.space.level_tokens = self.space.own_tokens(N_SPECIAL)
        vocab = N_SPECIAL + sum(self.space.widths)
        self.model = self._new_model(vocab)
        self.trie = PrefixTrie(self.space.sids)
        self._col = {it: j for j, it in enumerate(self.item_ids)}
        self._trie_cols = np.array([self._col[self.space.by_sid[s]] for s in self.trie.sids])
        self.popularity = np.bincount(
            [self.space.index[i] for i in data.train.item_ids.tolist() if i in self.space.index],
            minlength=len(self.item_ids),
        ).astype(np.float64)
        weights = root / "sequence.pt"
        if weights.exists():
            state = torch.load(weights, map_location="cpu", weights_only=True)
            for name, mod in self._modules().items():
                if name in state:
                    mod.load_state_dict(state[name])
            self.fit_info = {**json.loads((root / "train_log.json").read_text()), "cached": True}
        else:
            seqs = _train_sequences(data)
            valid = dict(zip(data.valid.user_ids.tolist(), data.valid.item_ids.tolist(), strict=False))
            self.teacher = self._teacher(data, seed)
            info = self._train(seqs, valid, data, root)
            if self.teacher is not None:
                info["teacher"] = {"system": str(self.p["teacher"]), "distill": float(self.p["distill"]),
                                   "fit_info": {k: v for k, v in getattr(self.teacher.sys, "fit_info", {}).items()
                                                if isinstance(v, (int, float, str))}}
            self.teacher = None
            tmp = weights.with_suffix(".tmp")
            torch.save({n: mod.state_dict() for n, mod in self._modules().items() if n != "proj"}, tmp)
            os.replace(tmp, weights)
            (root / "train_log.json").write_text(json.dumps(info, default=str))
            self.fit_info = {**info, "cached": False}
        # the steering stage: only the utterance projection learns, so lists without a request
        # are exactly the sequence model's
        steer_path = root / f"steer-{self._steer_key()}.pt"
        if int(self.p["steer_steps"]) > 0 and data.card is not None:
            if steer_path.exists():
                st = torch.load(steer_path, map_location="cpu", weights_only=True)
                self.proj.load_state_dict(st["proj"])
                self.fit_info["steering"] = json.loads(st["info"])
            else:
                self.fit_info["steering"] = self._train_steering(_train_sequences(data), data, int(self.p["steer_steps"]))
                tmp = steer_path.with_suffix(".tmp")
                torch.save({"proj": self.proj.state_dict(), "info": json.dumps(self.fit_info["steering"])}, tmp)
                os.replace(tmp, steer_path)
        for mod in self._modules().values():
            mod.eval()
        self.fit_info["fit_seconds"] = round(time.perf_counter() - t0, 1)
        self.fit_info["cache_dir"] = str(root)

    # ---- training -------------------------------------------------------------------
    def _teacher(self, data: TrainData, seed: int) -> Any:
        """``-S teacher=sasrec``: any fitted catalog scorer, its distribution summed onto the trie
        (``recipe.CatalogTeacher``); ``distill`` of the loss is the KL to it. None without one."""
        name = str(self.p.get("teacher") or "")
        if not name or float(self.p.get("distill", 0.0)) <= 0:
            return None
        from systems.semid.recipe import CatalogTeacher
        from systems.semid.system import teacher_args
        from talkwalk_bench.registry import build_system

        tsys, _ = build_system(name, teacher_args(name, str(self.p.get("teacher_args", ""))))
        tsys.fit(data, seed=seed)
        return CatalogTeacher(tsys, self.space, prefix_len=1, max_history=int(self.p["window"]), name=name)

    def _forward_hidden(self, ids: Any, att: Any, utt: Any = None, utt_pos: Any = None) -> Any:
        """Hidden states; ``utt`` [B, 384] replaces the embedding at ``utt_pos`` [B] (the UTT token)."""
        import torch

        emb = self._input_embeds(ids)
        if utt is not None:
            emb = emb.clone()
            emb[torch.arange(len(ids)), utt_pos] = self.proj(utt).to(emb.dtype)
        if self.model.training and self.p["dropout"] > 0:
            emb = torch.nn.functional.dropout(emb, p=float(self.p["dropout"]))
        return self.model.model(inputs_embeds=emb, attention_mask=att).last_hidden_state

    def _train(self, seqs: dict[str, list[str]], valid: dict[str, str], data: TrainData, root: Any) -> dict[str, Any]:
        import torch
        from tqdm.auto import tqdm

        rows = S.windows(seqs, self.space, prefix=[BOS], window=int(self.p["window"]))
        params = [q for mod in self._modules().values() for q in mod.parameters()]
        opt = torch.optim.AdamW(params, lr=float(self.p["lr"]), weight_decay=float(self.p["weight_decay"]))
        epochs = int(self.p["epochs"])
        plan = [S.batches(rows, batch_tokens=int(self.p["batch_tokens"]), seed=self.seed, epoch=e) for e in range(epochs)]
        total = sum(len(b) for b in plan)
        warm = max(1, total // 20)
        ckpt = root / "checkpoint.pt"
        start_epoch, step, curve, best = 0, 0, [], (-1.0, None)
        if ckpt.exists():  # resume a killed training
            st = torch.load(ckpt, map_location="cpu", weights_only=True)
            for name, mod in self._modules().items():
                mod.load_state_dict(st[name])
            opt.load_state_dict(st["opt"])
            start_epoch, step, curve, best = st["epoch"], st["step"], st["curve"], st["best"]
        val_users = [u for u in sorted(valid) if u in seqs][: int(self.p["val_users"])]
        t0 = time.perf_counter() - (curve[-1]["seconds"] if curve else 0.0)
        n_tok = 0
        bar = tqdm(total=total, initial=step, desc="semid-tiger", file=sys.stderr, mininterval=5.0, unit="batch")
        for epoch in range(start_epoch, epochs):
            for mod in self._modules().values():
                mod.train()
            for b in plan[epoch]:
                for g in opt.param_groups:
                    g["lr"] = S.lr_at(step, total, peak=float(self.p["lr"]), warmup=warm)
                loss = self._sequence_loss(rows, b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                step += 1
                n_tok += sum(len(rows[r].tokens) for r in b)
                bar.update(1)
                el = time.perf_counter() - t0
                bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{float(loss.detach()):.3f}", tok_s=f"{n_tok / max(el, 1e-9):.0f}")
            score = self._validate(seqs, valid, val_users)
            curve.append({"epoch": epoch + 1, "step": step, "seconds": round(time.perf_counter() - t0, 1), "val_ndcg@10": score})
            if score > best[0]:
                best = (score, epoch + 1)
                torch.save({n: mod.state_dict() for n, mod in self._modules().items()}, root / "best.pt")
            tmp = ckpt.with_suffix(".tmp")
            torch.save({**{n: mod.state_dict() for n, mod in self._modules().items()}, "opt": opt.state_dict(),
                        "epoch": epoch + 1, "step": step, "curve": curve, "best": best}, tmp)
            os.replace(tmp, ckpt)
            print(f"semid-tiger epoch {epoch + 1}: val nDCG@10 {score:.4f}", file=sys.stderr)
            if epoch + 1 - best[1] >= int(self.p["patience"]):
                break  # early stopping on validation nDCG@10
        bar.close()
        st = torch.load(root / "best.pt", map_location="cpu", weights_only=True)
        for name, mod in self._modules().items():
            mod.load_state_dict(st[name])
        return {"rows": len(rows), "steps": step, "best_epoch": best[1], "best_val_ndcg@10": best[0], "curve": curve}

    def _validate(self, seqs: dict[str, list[str]], valid: dict[str, str], users: Sequence[str]) -> float:
        """nDCG@10 of the held-out validation item over ``users`` (history masked)."""
        if not users:
            return 0.0
        reqs = [Request(user_id=u, history=tuple(seqs[u]), exclude=frozenset(seqs[u])) for u in users]
        for mod in self._modules().values():
            mod.eval()
        return S.ndcg_at_10([r.items for r in self.recommend(reqs, k=10)], [valid[u] for u in users])

    def _sequence_loss(self, rows: Sequence[S.Window], b: Sequence[int]) -> Any:
        """The whole-sequence loss of one batch of windows."""
        ids, att, mask, lv = S.window_batch(rows, b, self.space.m, PAD)
        h = self._forward_hidden(ids, att)
        weight = self.model.get_input_embeddings().weight
        teacher = getattr(self, "teacher", None)
        head = bool(self.p.get("item_head"))
        tl, ti = None, None
        if teacher is not None:
            tl = teacher.level_logits(ids, att, mask, lv, with_items=head)
            if head:
                tl, ti = tl
        alpha = float(self.p.get("distill", 0.0)) if teacher is not None else 0.0
        hm = h[:, :-1][mask]
        loss = S.level_loss(hm, weight, ids[:, 1:][mask], lv, self.space, teacher_logits=tl, alpha=alpha)[0]
        if head:  # the item head at every position that begins an item
            loss = loss + S.item_loss(hm[lv == 0], self._out_vectors(), self.space.next_items(ids, mask, lv), teacher_logp=ti, alpha=alpha)
        return loss

    def _train_steering(self, seqs: dict[str, list[str]], data: TrainData, steps: int) -> dict[str, Any]:
        """Steering rows: history window + a train phrasing -> soft targets over the satisfying items.

        Only the utterance projection learns; the transformer is frozen. Training it
        too, on steering rows alone, took test nDCG@10 from 0.061 to 0.013 (400 users),
        and mixing in sequence batches still from about 0.07 to 0.048 (943 users).
        """
        import torch
        from tqdm.auto import tqdm

        cons = D.constraints(data.card, data.items, seed=self.seed)
        if not cons:
            return {"rows": 0}
        rng = np.random.default_rng(self.seed + 7)
        users = sorted(seqs)
        sat = [np.array([it in c.items for it in self.item_ids]) for c in cons]
        bs = int(self.p["steer_batch"])
        hist_n = int(self.p["steer_history"])
        for mod in self._modules().values():
            if mod is not self.proj:
                for q in mod.parameters():
                    q.requires_grad_(False)
        params = list(self.proj.parameters())
        peak = float(self.p["steer_lr"])
        opt = torch.optim.AdamW(params, lr=peak, weight_decay=0.0)
        weight = self.model.get_input_embeddings().weight
        losses = []
        bar = tqdm(range(steps), desc="semid-tiger steering", file=sys.stderr, mininterval=5.0)
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = S.lr_at(step, steps, peak=peak, warmup=max(1, steps // 20))
            us = [users[i] for i in rng.integers(len(users), size=bs)]
            cs = rng.integers(len(cons), size=bs)
            phr = [cons[c].phrases[rng.integers(len(cons[c].phrases))] for c in cs]
            # two history cut points per user (its whole train history and its first half), so the
            # model's distribution for each is computed once
            hists = [steer_history(seqs[u], hist_n, int(rng.integers(2))) for u in us]
            self.model.eval()
            p = np.stack([self.user_distribution(h) for h in hists])
            toks, targets = [], []
            soft = []
            for i, c in enumerate(cs):
                q = p[i] * sat[c]
                q = q / q.sum() if q.sum() > 0 else sat[c] / sat[c].sum()
                soft.append(q)
                target = int(rng.choice(len(q), p=q))
                targets.append(self.space.conditional_targets(q, target))
                toks.append([BOS, *self.space.history_tokens(hists[i], hist_n), UTT, *self.space.item_tokens(self.item_ids[target])[:-1]])
            ids, att = S.pad_batch(toks, PAD)
            utt_pos = torch.as_tensor([len(t) - self.space.m for t in toks])
            h = self._forward_hidden(ids, att, torch.as_tensor(self.text(phr)), utt_pos)
            loss = sum(
                S.soft_loss(h[i, int(utt_pos[i]) : int(utt_pos[i]) + self.space.m], weight, targets[i], self.space)
                for i in range(len(toks))
            ) / len(toks)
            if self.p.get("item_head"):  # the item head learns the request's whole satisfying set
                with torch.no_grad():
                    out_vec = self._out_vectors()
                loss = loss + S.soft_item_loss(h[torch.arange(len(toks)), utt_pos], out_vec, np.stack(soft))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        return {"rows": steps * bs, "constraints": len(cons), "loss_last20": float(np.mean(losses[-20:]))}

    # ---- inference ------------------------------------------------------------------
    def _prompt(self, r: Request, text: bool = True) -> tuple[list[int], str]:
        hist = self.space.history_tokens(r.history, int(self.p["max_history"]))
        utt = r.utterance if text else ""
        return [BOS, *hist] + ([UTT] if utt else []), utt

    def _embeds(self, prompts: Sequence[Sequence[int]], utts: Sequence[str]) -> Any:
        """Left-padded input embeddings with the projected utterance at each UTT position."""
        import torch

        width = max(len(p) for p in prompts)
        emb_layer = self.model.get_input_embeddings()
        out = torch.zeros((len(prompts), width, emb_layer.weight.shape[1]))
        vecs = self.proj(torch.as_tensor(self.text([u for u in utts if u]))) if any(utts) else None
        j = 0
        for i, (p, u) in enumerate(zip(prompts, utts, strict=True)):
            e = self._input_embeds(torch.as_tensor([list(p)]))[0]
            if u:
                e = e.clone()
                e[len(p) - 1] = vecs[j]
                j += 1
            out[i, width - len(p) :] = e
        return out

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        import torch

        from systems.semid.decode import beam_search_batch

        built = [self._prompt(r) for r in requests]
        excludes = [[self.space.sids[self.space.index[it]] for it in r.exclude if it in self.space.index] for r in requests]
        order = sorted(range(len(requests)), key=lambda i: len(built[i][0]))
        size = max(1, int(self.p["rec_batch"]))
        got: dict[int, list] = {}
        with torch.inference_mode():
            for s in range(0, len(order), size):
                part = order[s : s + size]
                prompts = [built[i][0] for i in part]
                embeds = self._embeds(prompts, [built[i][1] for i in part])
                res = beam_search_batch(
                    self.model, prompts, self.trie, self.space.level_tokens, k=k, beam=int(self.p["beam"]),
                    excludes=[excludes[i] for i in part], prompt_embeds=embeds, item_prior=self._prior(),
                    lm_levels=self._lm_levels(),
                )
                got.update(zip(part, res, strict=True))
        return [
            Ranking(
                tuple(self.space.by_sid[s] for s, _ in got[i]),
                tuple(float(v) for _, v in got[i]),
                trace={"semantic_ids": [list(self.table.sid(self.space.by_sid[s])) for s, _ in got[i]]},
            )
            for i in range(len(requests))
        ]

    def user_distribution(self, history: Sequence[str]) -> np.ndarray:
        """The model's catalog distribution after ``history`` without any request (memoised; history masked)."""
        key = tuple(history)
        memo = self.__dict__.setdefault("_dist_memo", {})
        if key not in memo:
            lp = self.score_catalog([Request(user_id="", history=key, exclude=frozenset(key))], text=False)[0]
            p = np.exp(lp)
            p[[self._col[i] for i in set(key) if i in self._col]] = 0.0
            memo[key] = (p / p.sum()).astype(np.float32) if p.sum() > 0 else p.astype(np.float32)
        return memo[key]

    def score_catalog(self, requests: Sequence[Request], text: bool = True) -> np.ndarray:
        """Exact constrained log-probability of every catalog item (catalog order)."""
        import torch

        from systems.semid.decode import item_log_probs

        out = np.full((len(requests), len(self.item_ids)), -np.inf)
        with torch.inference_mode():
            for i, r in enumerate(requests):
                prompt, utt = self._prompt(r, text)
                lp = item_log_probs(self.model, prompt, self.trie, self.space.level_tokens, chunk=512,
                                    prompt_embeds=self._embeds([prompt], [utt]), item_prior=self._prior(),
                                    lm_levels=self._lm_levels())
                out[i, self._trie_cols] = lp
        return out
