"""Plain ``semid`` heeds the request: a satisfaction head on the base LLM's reading of it.

The base LLM reads ``Request: <utterance>`` alone, without the history (whether an item satisfies a request
does not depend on who asks): all of its layers as pretrained, frozen, without the id rows
(``HEED["reader"] == "base"``; ``"ranker"`` reads with the ranking model's own 4 layers and adapters, which
read many negated requests as wanting what they name). Its reading is the mean and the max over the request's
tokens of each layer in ``HEED["read_layers"]``, given as a fraction of the depth (0: the input embeddings,
0.5: the middle layer, 1: the last), and the last layer at the closing token. A small head maps that reading to weights over each
item's features from the card (``ItemFeatures``): every categorical value, every bin of the ordinal
attribute and "below the bin's lower edge", and, when the request names or points at an item (the anchor
``SemIdRecommender.anchor_of`` finds), the item's relation to it (lower / higher ordinal value, categorical
overlap, nothing shared). An item's logit of satisfying the request is the dot product.

Training is binary cross-entropy on whether each catalog item satisfies each training request: a dense
label for every item, where the steered rows of ``recipe.train_seq`` give one soft next-item target. The
requests are the harness's *train* phrasings (every filling of each template, up to ``per_template``; a
relation to an item said with "that <noun>" and with random catalog titles), the system's own include /
exclude paraphrases and relation phrases in everyday frames (``contrastive.grounding``, a relation's mirror
image left out as ``reading.relation_phrases`` leaves it out) and the rule-negated relations of
``reading.NegatingSpace.negated_rows``, and two of those requests said as one (an include joined to an
exclude of another value or to a bin, ``per_combination`` of each), never the evaluation phrasings
(tests/test_eval_wall.py). ``heads`` > 1 trains an ensemble from as many starts; its probability is the
mean of theirs. The head is cached beside the model, keyed by its rows and settings.

At decoding, log sigmoid(logit) is added to the item head's logits (``decode.ItemPrior``), so an item's score
is the product of the codes' probability, the item head's and the probability that it satisfies the
request. Lists without a request are decoded exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from systems.semid.decode import ItemPrior
from systems.semid.reading import NegatingReaderRecommender
from systems.semid.system import SemIdRecommender

ANCHORED = ("older", "newer", "similar", "contrast")
JOINS = (", ", " but ", " and ", ", and ")  # how two requests said as one are joined (the train templates' own)
# hidden / steps / batch: chosen on the system's own paraphrases held out of the head's training
# (benchmarks/semid_heed_dev.py); a head of 256 units trained 3,000 steps of 32 rows left exclusions soft
HEED = {"hidden": 512, "steps": 6000, "batch": 128, "lr": 2e-3, "weight_decay": 1e-2, "dropout": 0.1, "per_anchor": 2,
        "per_template": 100, "read_layers": (0.0, 0.5, 1.0), "reader": "base",
        "per_combination": 1500, "heads": 1, "version": 4}


class ItemFeatures:
    """Each item's features from the card, in a given item order (see the module docstring)."""

    def __init__(self, card: Any, values: Any, items: Sequence[str]) -> None:
        from talkwalk_bench.steering import Vocabulary

        vocab = Vocabulary(card)
        self.items = list(items)
        self.cat, self.ord = vocab.categorical, vocab.ordinal
        self.sets = [frozenset(_as_set(values[it].get(self.cat))) if self.cat else frozenset() for it in self.items]
        self.x = np.array([_num(values[it].get(self.ord)) if self.ord else math.nan for it in self.items])
        cols = []
        if self.cat:
            cols += [[v in s for s in self.sets] for v in vocab.values()]
        if self.ord:
            known = ~np.isnan(self.x)
            bins = vocab.bins()
            cols += [known & (self.x >= b.low) & (self.x <= b.high) for b in bins]
            cols += [known & (self.x < b.low) for b in bins[1:]]
        cols.append(np.ones(len(self.items), dtype=bool))
        self.base = np.stack([np.asarray(c, dtype=np.float32) for c in cols], 1)
        self.n_anchor = 6
        self.dim = self.base.shape[1] + self.n_anchor
        self._memo: dict[Any, np.ndarray] = {}

    def of(self, anchor: str | None, values: Any = None) -> np.ndarray:
        """[items, dim]: the base features and the relations to ``anchor`` (zeros without one)."""
        if anchor not in self._memo:
            rel = np.zeros((len(self.items), self.n_anchor), dtype=np.float32)
            if anchor is not None:
                xa = _num(values[anchor].get(self.ord)) if self.ord else math.nan
                sa = frozenset(_as_set(values[anchor].get(self.cat))) if self.cat else frozenset()
                jac = np.array([len(s & sa) / len(s | sa) if s | sa else 0.0 for s in self.sets])
                other = np.array([it != anchor for it in self.items])
                with np.errstate(invalid="ignore"):
                    rel = np.stack([self.x < xa, self.x > xa, (jac >= 0.5) & other,
                                    np.array([bool(s) and not (s & sa) for s in self.sets]), jac,
                                    np.ones(len(self.items))], 1).astype(np.float32)
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[anchor] = np.concatenate([self.base, rel], 1)
        return self._memo[anchor]


def _as_set(v: Any) -> list[str]:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    return [v] if isinstance(v, str) else list(v)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def heed_rows(card: Any, titled: Sequence[tuple[str, str]], seed: int, per_anchor: int,
              per_template: int = 20, per_combination: int = 0) -> list[tuple[str, str, Any]]:
    """(kind, utterance, target) for the head: the train phrasings, the system's own paraphrases and the
    rule-negated relations. The target
    is a predicate dict, or ``(kind, anchor)`` for a relation to an item (anchor None: "that <noun>", which
    training gives a random catalog item)."""
    from systems.contrastive.grounding import EXTRA, FRAMES
    from systems.semid.reading import NegatingSpace, relation_phrases
    from talkwalk_bench.steering import Vocabulary, train_phrasings

    vocab = Vocabulary(card)
    that = f"that {vocab.noun}"
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str, Any]] = []
    for ph in train_phrasings(card, seed=seed, per_template=per_template):
        if ph.kind in ANCHORED:
            out.append((ph.kind, ph.text, (ph.kind, None)))
            for _ in range(per_anchor if that in ph.text else 0):
                it, title = titled[int(rng.integers(len(titled)))]
                out.append((ph.kind, ph.text.replace(that, title), (ph.kind, it)))
        elif ph.predicate is not None:
            out.append((ph.kind, ph.text, dict(ph.predicate)))
    # the system's own paraphrases: the include / exclude ones and every relation in everyday frames, a
    # relation's mirror image left out as ``reading.relation_phrases`` leaves it out
    paraphrases = {k: EXTRA[k] for k in ("include", "exclude")}
    for k in (*ANCHORED, "before", "after"):
        paraphrases[k] = tuple(f.replace("{R}", r) for r in relation_phrases(k) for f in FRAMES)
    for kind, temps in paraphrases.items():
        for t in temps:
            for st in vocab.all_steers(kind):
                said = st.say(t, noun=vocab.noun)
                if kind in ANCHORED:
                    out.append((kind, said, (kind, None)))
                    for _ in range(per_anchor if that in said else 0):
                        it, title = titled[int(rng.integers(len(titled)))]
                        out.append((kind, said.replace(that, title), (kind, it)))
                elif st.predicate is not None:
                    out.append((kind, said, st.predicate.to_dict()))
    # two requests said as one ("I love comedy, but no war at all"): an include joined to an exclude of another
    # value, or to a bin, both drawn from the rows above; the request is both
    said = {k: [(u, t) for kk, u, t in out if kk == k and isinstance(t, dict)] for k in ("include", "exclude", "range_bin")}
    for kind, second in (("include_exclude", "exclude"), ("include_range", "range_bin")):
        if not said["include"] or not said[second]:
            continue
        for _ in range(per_combination):
            (a, pa), (b, pb) = (said["include"][int(rng.integers(len(said["include"])))],
                                said[second][int(rng.integers(len(said[second])))])
            if pa == pb or (pb.get("kind") == "lacks" and pb.get("value") == pa.get("value")):
                continue
            join = JOINS[int(rng.integers(len(JOINS)))]
            first, then = (a, b) if second == "exclude" or rng.random() < 0.5 else (b, a)
            out.append((kind, f"{first}{join}{then}", {"kind": "all", "parts": [pa, pb]}))
    space = NegatingSpace(card, anchored=True)
    by_title = {t: it for it, t in titled}
    for kind, utt, text in space.negated_rows(card, [t for _, t in titled], seed=seed, per_anchor=per_anchor):
        text = space.resolve(text)
        if text in space.anchored:
            named = next((it for t, it in by_title.items() if t in utt and that not in utt), None)
            out.append((kind, utt, (space.anchored[text], named)))
        elif space.preds.get(text) is not None:
            out.append((kind, utt, space.preds[text].to_dict()))
    return out


class HeedingSemIdRecommender(SemIdRecommender):
    """``semid``: ``SemIdRecommender`` whose lists also heed the request through the satisfaction head."""

    def fit(self, data: Any, *, seed: int) -> None:
        super().fit(data, seed=seed)
        self.heed = None
        if data.card is None or self.p.get("recipe", "prompt") != "seq" or getattr(self, "item_prior", None) is None:
            return  # the head multiplies into the item head's distribution; without one there is nothing to heed with
        from talkwalk_bench.steering import ItemValues, Vocabulary

        self._iv = ItemValues(data.card, data.items, self.item_ids)
        self._order = np.array([self._iv.index[it] for it in self.space.item_ids], dtype=np.int64)  # code space -> values
        self._vocab = Vocabulary(data.card)
        self._titles = sorted(((t.lower(), it) for it, t in self._iv.titles.items() if " " in t.strip() or len(t) >= 8),
                              key=lambda x: -len(x[0]))
        self.features = ItemFeatures(data.card, self._iv, self.space.item_ids)
        self.heed = self._fit_heed(data, seed)

    # ---- reading ----------------------------------------------------------------------
    def _body(self) -> Any:
        """The transformer that reads: the ranking model's own (``HEED["reader"] == "ranker"``) or the whole base
        LLM as it was pretrained, frozen and without the id rows (``"base"``)."""
        if HEED["reader"] == "base":
            if getattr(self, "_base_reader", None) is None:
                from systems.semid.lm import load_base

                self._base_reader = load_base(self.p["base_model"])[0].model.eval()
            return self._base_reader
        core = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return core.model

    def _tokens(self, utterance: str) -> list[int]:
        from systems.semid.recipe import steered_prefix

        said = steered_prefix(self.tok, self.vocab, [], utterance)
        if HEED["reader"] == "base":  # no id rows: the request's own tokens, its closing newline last
            return [self.tok.bos_token_id or 0, *said[1:-1]]
        return said

    def reading(self, utterances: Sequence[str], batch: int = 64) -> np.ndarray:
        """[n, (2 x len(read_layers) + 1) x hidden]: the model's reading of each request, the mean and the max
        over the request's tokens of each layer in ``HEED["read_layers"]`` (a fraction of the depth: 0 the input
        embeddings, 1 the last layer), and the last layer at the closing token (``<|sid_start|>`` for the ranker, the newline
        for the base LLM)."""
        import torch

        body = self._body()
        layers = tuple(HEED["read_layers"])
        seqs = [self._tokens(u) for u in utterances]
        out = []
        with torch.inference_mode():
            for s in range(0, len(seqs), batch):
                part = seqs[s : s + batch]
                w = max(len(x) for x in part)
                ids = torch.zeros((len(part), w), dtype=torch.long)
                att = torch.zeros((len(part), w), dtype=torch.long)
                for i, x in enumerate(part):
                    ids[i, : len(x)] = torch.as_tensor(x)
                    att[i, : len(x)] = 1
                o = body(input_ids=ids, attention_mask=att, output_hidden_states=True)
                m = att.clone()
                last = att.sum(1) - 1
                m[:, 0] = 0  # the opening token and the closing one are not the request
                m[torch.arange(len(part)), last] = 0
                mf = m[..., None].float()
                feats = []
                depth = len(o.hidden_states) - 1  # hidden_states[depth] is the last layer's output
                for f in layers:
                    h = o.hidden_states[round(f * depth)].float()
                    feats += [(h * mf).sum(1) / mf.sum(1).clamp(min=1), (h + (mf - 1) * 1e4).max(1).values]
                feats.append(o.last_hidden_state.float()[torch.arange(len(part)), last])
                out.append(torch.cat(feats, 1).numpy())
        return np.concatenate(out).astype(np.float32)

    def _weights(self, x: np.ndarray) -> list[np.ndarray]:
        """Each head's weights over the item features, for each reading: [heads] of [n, dim]."""
        import torch

        with torch.inference_mode():
            z = torch.as_tensor((x - self.heed["mu"]) / self.heed["sd"])
            return [net(z).numpy() for net in self.heed["nets"]]

    # ---- training ---------------------------------------------------------------------
    def _fit_heed(self, data: Any, seed: int) -> dict[str, Any]:
        import torch

        from talkwalk_bench.steering.predicates import predicate_from_dict

        titled = sorted((it, t) for it, t in self._iv.titles.items() if t and it in self.space.index)
        rows = heed_rows(data.card, titled, seed, int(HEED["per_anchor"]), int(HEED["per_template"]),
                         int(HEED["per_combination"]))
        key = hashlib.sha256(json.dumps({"rows": [(k, u, t if isinstance(t, dict) else list(t)) for k, u, t in rows],
                                         "heed": HEED, "dim": self.features.dim}, sort_keys=True, default=str).encode()).hexdigest()[:16]
        path = Path(self.fit_info["cache_dir"]) / f"heed-{key}.pt"
        width = (2 * len(HEED["read_layers"]) + 1) * int(self._body().config.hidden_size)
        starts = [seed + 1000 * j for j in range(int(HEED["heads"]))]  # each head of the ensemble its own start
        nets = [_head(width, self.features.dim, int(HEED["hidden"]), float(HEED["dropout"]), st) for st in starts]
        if path.exists():
            st = torch.load(path, map_location="cpu", weights_only=False)
            for net, sd_ in zip(nets, st["nets"], strict=True):
                net.load_state_dict(sd_)
            self.fit_info["heed"] = {**st["info"], "cached": True}
            return {"nets": [n.eval() for n in nets], "mu": st["mu"], "sd": st["sd"]}
        rng = np.random.default_rng(seed)
        masks: dict[Any, np.ndarray] = {}
        ys, anchors, kept = [], [], []
        for i, (_, _, target) in enumerate(rows):
            anchor = None
            if isinstance(target, tuple):
                k, anchor = target
                if anchor is None:
                    anchor = titled[int(rng.integers(len(titled)))][0]
                mkey = (k, anchor)
                if mkey not in masks:
                    steer = self._vocab.relative(k, anchor, self._iv[anchor], self._iv.titles.get(anchor, ""))
                    masks[mkey] = self._mask(steer.predicate)
            else:
                mkey = json.dumps(target, sort_keys=True)
                if mkey not in masks:
                    masks[mkey] = self._mask(predicate_from_dict(target))
            y = masks[mkey]
            if 0 < y.sum() < len(y):
                ys.append(y)
                anchors.append(anchor)
                kept.append(i)
        x = self.reading([rows[i][1] for i in kept])
        mu, sd = x.mean(0), x.std(0) + 1e-4
        xt = torch.as_tensor((x - mu) / sd)
        yt = torch.as_tensor(np.stack(ys))
        feats = {a: torch.as_tensor(self.features.of(a, self._iv)) for a in set(anchors)}
        losses = [_train_head(net, xt, yt, feats, anchors, st) for net, st in zip(nets, starts, strict=True)]
        info = {"rows": len(kept), "steps": int(HEED["steps"]), "heads": len(nets),
                "loss_first50": float(np.mean([lo[:50] for lo in losses])), "loss_last50": float(np.mean([lo[-50:] for lo in losses]))}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"nets": [n.state_dict() for n in nets], "mu": mu, "sd": sd, "info": info}, tmp)
        os.replace(tmp, path)
        self.fit_info["heed"] = {**info, "cached": False}
        return {"nets": nets, "mu": mu, "sd": sd}

    def _mask(self, pred: Any) -> np.ndarray:
        """Whether each item (in the code space's order) satisfies ``pred``."""
        return np.asarray(self._iv.mask(pred), dtype=np.float32)[self._order]

    def satisfaction(self, r: Any) -> np.ndarray:
        """log P(item satisfies the request) for every item, in the code space's order."""
        anchor = self.anchor_of(r)
        anchor = anchor if anchor in self._iv.index else None
        f = self.features.of(anchor, self._iv)
        # the ensemble's probability is the mean of its heads'
        logp = np.stack([-np.logaddexp(0.0, -(f @ w[0])) for w in self._weights(self.reading([r.utterance]))])
        return np.logaddexp.reduce(logp, axis=0) - np.log(len(logp))

    # ---- decoding ---------------------------------------------------------------------
    def _heeded(self, r: Any) -> Any:
        import torch

        base = self.item_prior
        bias = torch.as_tensor(self.satisfaction(r), dtype=torch.float32)
        return ItemPrior(lambda h: base.scores(h).float() + bias, base.col_of, base.weight)

    def _one_by_one(self, requests: Sequence[Any], run: Any) -> Any:
        """``run`` over the requests, each request with a request of its own decoded with its own prior."""
        if getattr(self, "heed", None) is None or not any(r.utterance for r in requests):
            return run(list(requests))
        plain = [i for i, r in enumerate(requests) if not r.utterance]
        out: dict[int, Any] = dict(zip(plain, run([requests[i] for i in plain]), strict=True)) if plain else {}
        base = self.item_prior
        try:
            for i, r in enumerate(requests):
                if r.utterance:
                    self.item_prior = self._heeded(r)
                    out[i] = run([r])[0]
                    self.item_prior = base
        finally:
            self.item_prior = base
        return [out[i] for i in range(len(requests))]

    def _recommend_seq(self, requests: Sequence[Any], *, k: int) -> list[Any]:
        return self._one_by_one(requests, lambda rs: super(HeedingSemIdRecommender, self)._recommend_seq(rs, k=k))

    def score_catalog(self, requests: Sequence[Any]) -> np.ndarray:
        if self.p.get("recipe", "prompt") != "seq":
            return super().score_catalog(requests)
        return np.stack(self._one_by_one(requests, lambda rs: list(super(HeedingSemIdRecommender, self).score_catalog(rs))))


def _train_head(net: Any, xt: Any, yt: Any, feats: dict, anchors: Sequence[Any], seed: int) -> list[float]:
    """``HEED["steps"]`` AdamW steps of binary cross-entropy (warm-up, cosine decay) from ``seed``; the losses."""
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=float(HEED["lr"]), weight_decay=float(HEED["weight_decay"]))
    steps, bs = int(HEED["steps"]), int(HEED["batch"])
    gen = np.random.default_rng(seed + 1)
    net.train()
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = float(HEED["lr"]) * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
            b = gen.integers(len(anchors), size=bs)
            w = net(xt[b])
            logits = torch.stack([feats[anchors[i]] @ w[j] for j, i in enumerate(b)])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    net.eval()
    return losses


def _head(width: int, dim: int, hidden: int, dropout: float, seed: int) -> Any:
    """The reading (``width``) -> weights over the item features (``dim``): a small MLP, started from ``seed``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout),
                                   torch.nn.Linear(hidden, dim))


class HeedingNegatingReaderRecommender(HeedingSemIdRecommender, NegatingReaderRecommender):
    """``semid-constrain``: decoding keeps to the items its reader's likeliest readings make sure to satisfy the
    request (``NegatingReaderRecommender``), and the satisfaction head weighs them; where the reader is unsure
    (no constraint kept), the head alone heeds the request, as in plain ``semid``."""
