"""Initialising the new token rows and fine-tuning: stage A (new embedding rows only), stage B (LoRA).

Logits are computed only at the positions where the loss is taken; on CPU,
bf16 autocast with fp32 master weights is used when ``bf16`` is set.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from systems.semid.data import Example


def _tied(model: Any) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def init_new_rows(
    model: Any,
    tok: Any,
    vocab: Mapping[str, Any],
    *,
    how: str,
    codes: np.ndarray | None = None,
    item_emb: np.ndarray | None = None,
    item_texts: Sequence[str] | None = None,
    seed: int = 0,
) -> None:
    """Set the rows of the added tokens.

    ``mean``: the mean of the existing rows plus small noise (so codes differ).
    ``projected``: a ridge map from the item embedding space to the LM's input
    space is fitted on (item embedding, mean token embedding of the item's text)
    pairs; each code's row is the projected mean embedding of the items carrying
    that code at that level, rescaled to the typical row norm. The
    disambiguation level and the control tokens fall back to ``mean``.
    """
    import torch

    emb = model.get_input_embeddings().weight
    n_old = vocab["n_old"]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        old = emb[:n_old].float()
        mu, sd = old.mean(0), old.std(0)
        norm = old.norm(dim=1).mean()
        n_new = emb.shape[0] - n_old
        rows = mu + 0.1 * sd * torch.randn(n_new, emb.shape[1], generator=g)
        if how == "projected":
            if codes is None or item_emb is None or item_texts is None:
                raise ValueError("projected init needs codes, item embeddings and item texts")
            E = torch.as_tensor(item_emb, dtype=torch.float32)
            M = torch.stack(
                [
                    old[tok(t, add_special_tokens=False)["input_ids"][:64] or [0]].mean(0)
                    for t in item_texts
                ]
            )
            lam = 1e-2 * E.shape[0]
            W = torch.linalg.solve(E.T @ E + lam * torch.eye(E.shape[1]), E.T @ (M - M.mean(0)))
            levels = vocab["levels"]
            for lv in range(len(levels) - 1):  # the last level only disambiguates
                for c, tid in enumerate(levels[lv]):
                    mask = codes[:, lv] == c
                    if mask.any():
                        v = M.mean(0) + E[torch.as_tensor(mask)].mean(0) @ W
                        rows[tid - n_old] = v / v.norm() * norm
        elif how != "mean":
            raise ValueError(f"unknown init '{how}' (use 'projected' or 'mean')")
        emb[n_old:] = rows.to(emb.dtype)
        if not _tied(model) and model.get_output_embeddings() is not None:
            model.get_output_embeddings().weight[n_old:] = rows.to(emb.dtype)


def encode(
    tok: Any, examples: Sequence[Example], max_len: int
) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per example; the prompt is cut from the left to fit."""
    out = []
    for ex in examples:
        p = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        t = tok(ex.target, add_special_tokens=False)["input_ids"][: max_len - 8]
        p = p[-(max_len - len(t)) :]
        out.append((p + t, [-100] * len(p) + t))
    return out


def _batch(rows: Sequence[tuple[list[int], list[int]]], pad: int) -> tuple[Any, Any, Any]:
    import torch

    n = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), n), pad, dtype=torch.long)
    lab = torch.full((len(rows), n), -100, dtype=torch.long)
    att = torch.zeros((len(rows), n), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.as_tensor(x)
        lab[i, : len(y)] = torch.as_tensor(y)
        att[i, : len(x)] = 1
    return ids, lab, att


def loss_on_targets(core: Any, ids: Any, labels: Any, att: Any) -> Any:
    """Next-token cross-entropy, with the LM head applied only where labels exist."""
    import torch.nn.functional as F

    hidden = core.model(input_ids=ids, attention_mask=att).last_hidden_state
    y = labels[:, 1:]
    mask = y != -100
    logits = core.lm_head(hidden[:, :-1][mask])
    return F.cross_entropy(logits.float(), y[mask])


def train_new_rows_only(core: Any, n_old: int) -> tuple[list[Any], list[Any]]:
    """Freeze ``core`` except the rows from ``n_old`` on of its input and output embeddings.

    Returns (the embedding tensors, their gradient hooks; remove the hooks after training).
    With tied embeddings the head shares the input tensor, which is then listed once.
    """
    import torch

    for p in core.parameters():
        p.requires_grad_(False)
    rows = [core.get_input_embeddings().weight]
    head = core.get_output_embeddings()
    if head is not None and head.weight is not rows[0]:
        rows.append(head.weight)
    hooks = []
    for w in rows:
        w.requires_grad_(True)
        keep = torch.zeros(w.shape[0], 1, dtype=w.dtype)
        keep[n_old:] = 1.0
        hooks.append(w.register_hook(lambda g, keep=keep: g * keep))  # only the new rows may move
    return rows, hooks


def add_lora(model: Any, *, r: int = 8, alpha: int = 16, top_layers: int = 0) -> Any:
    """Wrap the attention and MLP projections with LoRA adapters (peft); returns the peft model.

    ``top_layers`` > 0 puts adapters on the top that many decoder layers only.
    """
    from peft import LoraConfig, get_peft_model

    n = model.config.num_hidden_layers
    layers = list(range(n - top_layers, n)) if 0 < top_layers < n else None
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "up_proj",
            "down_proj",
            "gate_proj",
        ],
        bias="none",
        layers_to_transform=layers,
    )
    return get_peft_model(model, cfg)


def train(
    core: Any,
    tok: Any,
    examples: Sequence[Example],
    *,
    n_old: int,
    steps: int,
    batch_size: int = 8,
    lr: float = 2e-3,
    lora_params: Sequence[Any] = (),
    lr_lora: float = 5e-4,
    max_len: int = 128,
    bf16: bool = True,
    seed: int = 0,
    desc: str = "train",
) -> dict[str, Any]:
    """Train the new vocabulary rows (gradient masked to them) and any ``lora_params``.

    ``core`` is the causal-LM module (inside a peft wrapper when LoRA is used);
    everything else stays frozen.
    """
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rows_w, hooks = train_new_rows_only(core, n_old)
    for p in lora_params:
        p.requires_grad_(True)
    groups = [{"params": rows_w, "lr": lr, "weight_decay": 0.0}]
    if lora_params:
        groups.append({"params": list(lora_params), "lr": lr_lora, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    rows = encode(tok, examples, max_len)
    order = np.random.default_rng(seed).permutation(len(rows))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    losses: list[float] = []
    core.train()
    bar = tqdm(range(steps), desc=desc, file=sys.stderr, mininterval=5.0, disable=steps == 0)
    for step in bar:
        pick = [rows[order[(step * batch_size + j) % len(rows)]] for j in range(batch_size)]
        ids, lab, att = _batch(pick, pad)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_on_targets(core, ids, lab, att)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    core.eval()
    for h in hooks:
        h.remove()
    for p in core.parameters():
        p.requires_grad_(False)
    return {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "loss_first": losses[:1],
        "loss_last20": float(np.mean(losses[-20:])) if losses else None,
    }


def train_reader(
    model: Any,
    by_kind: Mapping[str, Sequence[tuple[Sequence[int], Sequence[int]]]],
    kinds: Sequence[str],
    *,
    steps: int,
    batch: int,
    lr: float,
    n_old: int,
    seed: int,
    bf16: bool,
    desc: str = "reader",
) -> dict[str, Any]:
    """Train the LoRA adapters of a peft ``model`` on (prompt, constraint) rows; kinds drawn uniformly.

    Cross-entropy on the constraint tokens over the base vocabulary only (the constraint is text).
    Warm-up over 5 % of the steps, cosine decay to 10 %.
    """
    import time

    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from systems.semid.seq import lr_at, pad_batch

    params = [q for n, q in model.named_parameters() if "lora_" in n]
    for q in model.parameters():
        q.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed + 11)
    core = model.get_base_model()
    head = core.get_output_embeddings().weight
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, file=sys.stderr, mininterval=5.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, peak=lr, warmup=max(1, steps // 20))
        rows = []
        for _ in range(batch):
            pool = by_kind[kinds[int(rng.integers(len(kinds)))]]
            rows.append(pool[int(rng.integers(len(pool)))])
        ids, att = pad_batch([[*x, *y] for x, y in rows], 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            h = core.model(input_ids=ids, attention_mask=att).last_hidden_state
            hs = torch.cat([h[i, len(x) - 1 : len(x) + len(y) - 1] for i, (x, y) in enumerate(rows)])
            logits = (hs @ head[:n_old].T).float()
        loss = F.cross_entropy(logits, torch.cat([torch.as_tensor(list(y)) for _, y in rows]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    for q in params:
        q.requires_grad_(False)
    return {"loss_last20": float(np.mean(losses[-20:])) if losses else None, "seconds": round(time.perf_counter() - t0, 1)}
