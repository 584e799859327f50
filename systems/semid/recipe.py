"""Whole-sequence training of the semantic-id LLM (``-S recipe=seq``, the default).

Three kinds of rows, interleaved in one run with warm-up and cosine decay:

- ``sequence``: a user's chronological history in the compact format of
  ``systems/semid/seq.py`` (``<|rec|>`` then 3 code tokens per item), loss at
  every code position with the softmax restricted to that level's codes; when a
  teacher is given (``-S teacher=semid-tiger``, the from-scratch decoder over
  the same ids), ``distill`` of the loss is the KL to the teacher's
  distribution at the same positions, which gives every level a dense target.
- ``steered``: a history window, then ``Request: <train phrasing>`` and
  ``<|sid_start|>``, with *soft* targets over the items that satisfy the
  phrasing's predicate, weighted by the teacher's (or, without one,
  popularity's) distribution for that user, spread onto every level.
- ``constraint``: ``Request: <train phrasing>`` -> the canonical text of its
  predicate (``systems/semid/constraint.py``), which the ``semid-constrain``
  variant emits at inference.

Only the harness's *train* phrasings are read. Training checkpoints after every
``checkpoint_every`` steps and resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from systems.semid import seq as S
from systems.semid.data import constraints as steer_constraints
from systems.semid.scratch import steer_history
from talkwalk_bench.errors import BenchError

REQUEST = "\nRequest: "


def steered_prefix(tok: Any, vocab: Mapping[str, Any], hist: Sequence[int], utterance: str) -> list[int]:
    """The steered prompt: ``<|rec|>`` + history codes + request text + ``<|sid_start|>``."""
    text = tok(REQUEST + utterance + "\n", add_special_tokens=False)["input_ids"]
    return [vocab["rec"], *hist, *text, vocab["sid_start"]]


class Teacher:
    """Per-position level logits and catalog distributions of a fitted ``semid-tiger``."""

    def __init__(self, system: Any, space: S.CodeSpace) -> None:
        self.sys = system
        if [tuple(s) for s in system.space.sids] != [tuple(s) for s in space.sids]:
            raise ValueError("the teacher's semantic ids differ from the student's; use the same embedder and widths")
        self.space = space
        import torch

        from systems.semid.scratch import BOS

        # student token id -> teacher token id (anything else, the prefix included, -> BOS), built once
        top = max(max(t) for t in space.level_tokens)
        self.lut = torch.full((top + 1,), BOS, dtype=torch.long)
        for j in range(space.m):
            self.lut[torch.as_tensor(space.level_tokens[j])] = torch.as_tensor(system.space.level_tokens[j])

    def level_logits(self, ids: Any, att: Any, mask: Any, levels: Any, with_items: bool = False) -> Any:
        """The teacher's logits over each level's codes at the masked positions (in level order);
        with ``with_items``, also ``None`` (it gives no catalog targets per position)."""
        import torch

        tids = self.lut[ids.clamp(max=len(self.lut) - 1)]
        with torch.inference_mode():
            h = self.sys._forward_hidden(tids, att)[:, :-1][mask]  # its item vectors included
            w = self.sys.model.get_input_embeddings().weight
            out = []
            for j in range(self.space.m):
                toks = torch.as_tensor(self.sys.space.level_tokens[j])
                out.append((h[levels == j] @ w[toks].T).float())
        return (out, None) if with_items else out

    def catalog(self, history: Sequence[str]) -> np.ndarray:
        return self.sys.user_distribution(history)


class CatalogTeacher:
    """Per-position level targets from any fitted system with ``score_catalog`` (e.g. ``sasrec``).

    The teacher's catalog distribution after each history prefix of a window,
    summed onto the trie along the true item's prefix (``CodeSpace.level_targets``,
    batched): dense targets for every level, so levels 2-3 learn from the
    whole distribution and not only the one item that came next.
    """

    def __init__(self, system: Any, space: S.CodeSpace, *, prefix_len: int = 1, max_history: int = 50,
                 temperature: float = 1.0, name: str = "sasrec") -> None:
        self.sys, self.space, self.prefix_len, self.max_history = system, space, prefix_len, max_history
        self.temperature = temperature
        cols = {it: j for j, it in enumerate(system.item_ids)}
        missing = [it for it in space.item_ids if it not in cols]
        if missing:
            raise BenchError(f"-S teacher={name}: the teacher has no score for {len(missing)} catalog items (e.g. item "
                             f"{missing[0]}); use a teacher fitted on the same data, or -S teacher= for none")
        self.cols = np.array([cols[it] for it in space.item_ids])

    def _probs(self, histories: Sequence[Sequence[str]]) -> Any:
        import torch

        from talkwalk_bench.types import Request

        reqs = [Request(user_id="", history=tuple(h[-self.max_history:])) for h in histories]
        sc = torch.as_tensor(self.sys.score_catalog(reqs)[:, self.cols], dtype=torch.float32) / self.temperature
        return torch.softmax(sc, dim=-1)

    def level_logits(self, ids: Any, att: Any, mask: Any, levels: Any, with_items: bool = False) -> Any:
        """Log-targets over each level's codes at the masked positions (in level order), as logits;
        with ``with_items``, also the teacher's catalog log-distribution at the level-0 positions
        ([n, n_items], in the order of ``levels == 0``), for an item head."""
        import torch

        m, pl = self.space.m, self.prefix_len
        n_tok = att.sum(dim=1).tolist()
        hist, rows, lv_of, item_of = [], [], [], []
        sel = mask.nonzero().tolist()  # row-major, the order of h[mask]
        items_by_row: dict[int, list[str]] = {}
        for b, t in sel:
            if b not in items_by_row:
                toks = ids[b, pl:int(n_tok[b])].tolist()
                items_by_row[b] = self.space.items_of(toks)
            q = t + 1 - pl  # the predicted token's offset after the prefix
            i, j = q // m, q % m
            items = items_by_row[b]
            key = (b, i)
            if not rows or rows[-1] != key:
                rows.append(key)
                hist.append(items[:i])
            lv_of.append(j)
            item_of.append((len(rows) - 1, self.space.index[items[i]]))
        with torch.inference_mode():
            P = self._probs(hist).numpy()  # [n_rows, n_items]
        r_idx = np.array([r for r, _ in item_of], dtype=np.int64)
        it_idx = np.array([i for _, i in item_of], dtype=np.int64)
        lv = np.array(lv_of)
        out = []
        for j in range(m):
            s = np.flatnonzero(lv == j)
            w = self.space.level_targets(P[r_idx[s]], it_idx[s], j)
            out.append(torch.log(torch.as_tensor(w).clamp_min(1e-8)))
        if with_items:
            return out, torch.log(torch.as_tensor(P[r_idx[lv == 0]]).clamp_min(1e-12))
        return out

    def catalog(self, history: Sequence[str]) -> np.ndarray:
        return self._probs([history])[0].numpy().astype(float)


def train_seq(
    model: Any,
    core: Any,
    tok: Any,
    vocab: Mapping[str, Any],
    space: S.CodeSpace,
    sequences: Mapping[str, Sequence[str]],
    *,
    data: Any,
    item_ids: Sequence[str],
    teacher: Teacher | None,
    p: Mapping[str, Any],
    params: Sequence[Any],
    root: Any,
    seed: int,
    constraint_rows: Sequence[tuple[list[int], list[int]]] = (),
    desc: str = "semid",
    n_rows: int = 1,
    validate: Any = None,
    item_out: Any = None,
) -> dict[str, Any]:
    """Train ``params`` for ``p['epochs']`` epochs of sequence windows plus steered and constraint rows."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = S.windows(sequences, space, prefix=[vocab["rec"]], window=int(p["window"]), overlap=int(p["overlap"]))
    epochs = float(p["epochs"])
    plan: list[list[int]] = []
    e = 0
    while len(plan) < 1 or e < int(np.ceil(epochs)):
        plan.extend(S.batches(rows, batch_tokens=int(p["batch_tokens"]), seed=seed, epoch=e))
        e += 1
    n_seq = int(round(len(plan) / int(np.ceil(epochs)) * epochs))
    plan = plan[:n_seq]
    every = int(p["steer_every"])  # one steered + constraint batch after every `every` sequence batches
    total = n_seq + (n_seq // every if every > 0 else 0)
    warm = max(1, total // 25)
    weight = core.get_output_embeddings().weight
    # the new id rows (the first n_rows tensors) learn at lr_a, the adapters at lr
    opt = torch.optim.AdamW([{"params": list(params[:n_rows]), "peak": float(p["lr_a"])}, {"params": list(params[n_rows:]), "peak": float(p["lr"])}],
                            lr=float(p["lr"]), weight_decay=0.0)
    cons = steer_constraints(data.card, data.items, seed=seed) if every > 0 else []
    sat = [np.array([it in c.items for it in item_ids]) for c in cons]
    pop = np.bincount([space.index[i] for i in data.train.item_ids.tolist() if i in space.index], minlength=len(item_ids)).astype(float)
    users = sorted(u for u in sequences if sequences[u])
    ckpt = root / "checkpoint.pt"
    step, done_seq, log = 0, 0, []
    if ckpt.exists():  # resume a killed training
        st = torch.load(ckpt, map_location="cpu", weights_only=True)
        with torch.no_grad():
            for q, v in zip(params, st["params"], strict=True):
                q.copy_(v)
        opt.load_state_dict(st["opt"])
        step, done_seq, log = st["step"], st["done_seq"], st["log"]
        rng = np.random.default_rng(seed + step)
    el0 = log[-1]["seconds"] if log else 0.0  # training seconds before a resume
    t0 = time.perf_counter() - el0
    c0 = time.process_time() - (log[-1].get("cpu_seconds", 0.0) if log else 0.0)  # CPU time of this process, all threads
    n_tok = 0  # sequence tokens of this process (tokens/s = n_tok / (el - el0))
    bs_steer = int(p["steer_batch"])
    model.train()
    bar = tqdm(total=total, initial=step, desc=f"{desc} training", file=sys.stderr, mininterval=5.0, unit="step")

    def set_lr() -> None:
        for g in opt.param_groups:
            g["lr"] = S.lr_at(step, total, peak=g["peak"], warmup=warm)

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"params": [q.detach().clone() for q in params], "opt": opt.state_dict(), "step": step,
                    "done_seq": done_seq, "log": log}, tmp)
        os.replace(tmp, ckpt)

    while done_seq < n_seq:
        set_lr()
        b = plan[done_seq]
        ids, att, mask, lv = S.window_batch(rows, b, space.m, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(p["bf16"])):
            h = _body(core, ids, att, p)[:, :-1][mask]
            tl, ti = None, None
            if teacher is not None and float(p["distill"]) > 0:
                tl = teacher.level_logits(ids, att, mask, lv, with_items=item_out is not None)
                if item_out is not None:
                    tl, ti = tl
            loss, _ = S.level_loss(h, weight, ids[:, 1:][mask], lv, space, teacher_logits=tl, alpha=float(p["distill"]))
            if item_out is not None:  # the item head at every position that begins an item
                loss = loss + S.item_loss(h[lv == 0], item_out(), space.next_items(ids, mask, lv), teacher_logp=ti,
                                          alpha=float(p["distill"]) if ti is not None else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        done_seq += 1
        n_tok += int(att.sum())
        rec = {"step": step, "done_seq": done_seq, "loss": float(loss.detach())}
        if every > 0 and done_seq % every == 0 and (cons or constraint_rows):
            set_lr()
            rec["steer_loss"] = _steer_step(model, core, tok, vocab, space, sequences, users, cons, sat, pop, teacher,
                                            constraint_rows, opt, params, rng, bs_steer, int(p["steer_history"]), item_ids,
                                            bool(p["bf16"]), F, int(p.get("train_layers", 0)), item_out)
            step += 1
        el = time.perf_counter() - t0
        rec["seconds"] = round(el, 1)
        rec["cpu_seconds"] = round(time.process_time() - c0, 1)
        log.append(rec)
        bar.update(step - bar.n)
        bar.set_postfix(epoch=f"{done_seq / max(1, n_seq) * epochs:.2f}/{epochs:g}", loss=f"{np.mean([r['loss'] for r in log[-20:]]):.3f}",
                        tok_s=f"{n_tok / max(el - el0, 1e-9):.0f}")
        if validate is not None and int(p.get("val_every", 0)) > 0 and done_seq % int(p["val_every"]) == 0:
            model.eval()
            tv, cv = time.perf_counter(), time.process_time()
            rec["val_ndcg@10"] = validate()
            t0 += time.perf_counter() - tv  # "seconds" and "cpu_seconds" count training only, not validation
            c0 += time.process_time() - cv
            model.train()
            print(f"{desc}: step {step}, {rec['seconds'] / 60:.1f} training min, {n_tok / max(el - el0, 1e-9):.0f} tok/s, "
                  f"val nDCG@10 {rec['val_ndcg@10']:.4f}", file=sys.stderr)
        if step % int(p["checkpoint_every"]) == 0:
            save()
        if p.get("on_step") is not None and p["on_step"](step, done_seq, n_seq, rec):
            break  # the caller's budget (benchmarks/semid_probe.py) is spent
    bar.close()
    model.eval()
    return {"rows": len(rows), "sequence_batches": n_seq, "steps": step, "epochs": epochs,
            "loss_last20": float(np.mean([r["loss"] for r in log[-20:]])) if log else None,
            "seconds": log[-1]["seconds"] if log else 0.0, "log_every_50": log[::50],
            "curve": [{"minutes": round(r["seconds"] / 60, 2), "cpu_minutes": round(r.get("cpu_seconds", 0.0) / 60, 2), "step": r["step"],
                       "sequence_batches": r.get("done_seq"), "val_ndcg@10": r["val_ndcg@10"]}
                      for r in log if "val_ndcg@10" in r]}


def _body(core: Any, ids: Any, att: Any, p: Mapping[str, Any]) -> Any:
    """Last hidden states. With ``train_layers`` > 0 the input embeddings are detached, so the
    backward pass stops at the lowest adapted layer (the id rows learn through the tied head)."""
    if int(p.get("train_layers", 0)) > 0:
        emb = core.get_input_embeddings()(ids).detach()
        return core.model(inputs_embeds=emb, attention_mask=att).last_hidden_state
    return core.model(input_ids=ids, attention_mask=att).last_hidden_state


def _steer_step(model, core, tok, vocab, space, sequences, users, cons, sat, pop, teacher, constraint_rows, opt, params,
                rng, bs, hist_n, item_ids, bf16, F, train_layers, item_out=None) -> float:
    """One batch of steered rows (soft targets) and constraint rows; returns its loss."""
    import torch

    weight = core.get_output_embeddings().weight
    seqs, heads, targets, soft = [], [], [], []
    for _ in range(bs if cons else 0):
        c = int(rng.integers(len(cons)))
        u = users[int(rng.integers(len(users)))]
        hist = steer_history(sequences[u], hist_n, int(rng.integers(2)))
        base = teacher.catalog(hist) if teacher is not None else pop
        q = base * sat[c]
        q = q / q.sum() if q.sum() > 0 else sat[c] / sat[c].sum()
        target = int(rng.choice(len(q), p=q))
        phrase = cons[c].phrases[int(rng.integers(len(cons[c].phrases)))]
        pre = steered_prefix(tok, vocab, space.history_tokens(hist, hist_n), phrase)
        full = pre + space.item_tokens(item_ids[target])[:-1]
        seqs.append(full)
        heads.append(len(pre) - 1)
        targets.append(space.conditional_targets(q, target))
        soft.append(q)
    lab_rows = []
    if constraint_rows:
        for _ in range(bs):
            x, y = constraint_rows[int(rng.integers(len(constraint_rows)))]
            lab_rows.append((x, y))
    all_rows = seqs + [x + y for x, y in lab_rows]
    ids, att = S.pad_batch(all_rows, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = _body(core, ids, att, {"train_layers": train_layers})
        loss = h.new_zeros((), dtype=torch.float32)
        if seqs:
            loss = loss + sum(S.soft_loss(h[i, heads[i] : heads[i] + space.m], weight, targets[i], space) for i in range(len(seqs))) / len(seqs)
            if item_out is not None:  # the item head learns the request's whole satisfying set
                loss = loss + S.soft_item_loss(h[torch.arange(len(seqs)), torch.as_tensor(heads)], item_out(), np.stack(soft))
        if lab_rows:
            hs, ys = [], []
            for j, (x, y) in enumerate(lab_rows):
                i = len(seqs) + j
                hs.append(h[i, len(x) - 1 : len(x) + len(y) - 1])
                ys.append(torch.as_tensor(y))
            # over the base vocabulary only: the constraint is text, and a softmax that held the id
            # rows would push every id row down at each constraint token
            n_old = int(vocab["n_old"])
            logits = (torch.cat(hs) @ weight[:n_old].T).float()
            loss = loss + F.cross_entropy(logits, torch.cat(ys))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return float(loss.detach())
