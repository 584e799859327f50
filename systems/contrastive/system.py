"""The contrastive TalkWalk recommender: fit (train or load the shared space), then encode + search."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from systems.contrastive.query import (
    INTENTS,
    Weights,
    build_query,
    exclusion_mask,
    fold_conversation,
    normalize,
)
from systems.contrastive.training import TrainConfig, config_dict
from talkwalk_bench.errors import BenchError
from talkwalk_bench.paths import cache_dir
from talkwalk_bench.types import Ranking, Request, SystemMeta, TrainData

VERSION = "2"  # 2: popularity-known flag (cold items read as unknown, not obscure)


class ContrastiveSystem:
    """Seed 001: one space for item metadata, user metadata and language; FAISS nearest neighbours."""

    def __init__(self, name: str, cfg: TrainConfig, weights: Weights, *, params: Mapping[str, Any],
                 text_model: str = "", intent_threshold: float = 0.62, hnsw_threshold: int = 100_000,
                 diversity: float = 1.0, progress: bool = True, cache: bool = True, reasoner: Any = None,
                 text_encoder: Any = None, exclude_demote: bool = True, exclude_max_share: float = 0.5,
                 exclude_z: float = 1.0, polarity_threshold: float = 1.0, ground_margin: float = 0.1,
                 ground_min: float = 0.6, constrain: bool = True, constrain_anchored: bool = True,
                 new_user_prior: str = "demographic", lexicon: bool = True) -> None:
        self.cfg, self.w = cfg, weights
        self.text_model = text_model
        self.intent_threshold = intent_threshold
        self.hnsw_threshold = hnsw_threshold
        self.diversity = diversity
        self.progress, self.cache = progress, cache
        self.reasoner = reasoner
        self.exclude_demote = exclude_demote
        self.exclude_max_share, self.exclude_z = exclude_max_share, exclude_z
        self.polarity_threshold = polarity_threshold  # cue-free negation: the probe's logit must exceed this
        self.ground_margin, self.ground_min = ground_margin, ground_min  # ground_margin <= 0: no grounding
        # inference only (never in the artifact key): card values and ranges the request names filter the list;
        # anchored relations (older / newer / similar / different from a named item) filter it too
        self.constrain, self.constrain_anchored = constrain, constrain_anchored
        self.lexicon = lexicon  # inference only: words no exemplar holds are read through their WordNet definition
        self._con_memo: dict[Any, np.ndarray] = {}
        self._read_memo: dict[tuple[str, bool], Any] = {}
        if new_user_prior not in ("demographic", "popularity", "none"):
            raise BenchError("-S new_user_prior: choose demographic, popularity or none, not " + repr(new_user_prior))
        self.new_user_prior = new_user_prior  # inference only: how a user without history is placed (see _prior)
        self.prior_weight = 0.0  # weight of the space's cosine beside the prior, chosen at fit on training users
        self._neg_memo: dict[str, np.ndarray] = {}
        self._carry_memo: dict[tuple[str, str], np.ndarray] = {}
        self.llm_fallbacks = 0  # turns whose LLM rewrite failed and used the raw utterance
        self._llm_turn: str | None = None
        self._text_encoder = text_encoder  # tests inject a small stand-in
        self.meta = SystemMeta(name=name, version=VERSION, params=dict(params),
                               capabilities=frozenset({"scores", "steering", "query_trace", "explanations"}))
        self.loaded_from_cache = False
        self.losses: list[float] = []
        self.artifact_dir: Path | None = None

    # ------------------------------------------------------------------ fit

    def _key(self, data: TrainData, card_hash: str, seed: int) -> str:
        payload = {"data": data.key, "card": card_hash, "cfg": config_dict(self.cfg), "seed": seed, "v": VERSION,
                   "w": [self.w.user, self.w.history, self.w.text, self.w.history_window], "text": self.text_model,
                   "n_items": len(data.item_ids)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def fit(self, data: TrainData, *, seed: int) -> None:
        import torch

        from systems.contrastive.index import ItemIndex
        from systems.contrastive.text import TextEncoder
        from systems.contrastive.training import build_corpus, train

        card = data.card
        if card is None:
            from talkwalk_bench.data.card import load_card

            card = load_card(data.dataset_name)
        self.card = card
        card_hash = hashlib.sha256(card.model_dump_json().encode()).hexdigest()[:16]
        self.enc = self._text_encoder or TextEncoder(self.text_model, cache=self.cache)
        self.qenc = None  # the query-side copy whose top layers train (-S unfreeze_layers); None = frozen text
        if self.cfg.unfreeze_layers:
            from systems.contrastive.text import QueryEncoder

            self.qenc = QueryEncoder(self.text_model, self.cfg.unfreeze_layers)
            if self.qenc.dim != self.enc.dim:
                raise BenchError(f"-S unfreeze_layers={self.cfg.unfreeze_layers}: the tuned text model is {self.qenc.dim}-d "
                                 f"but the description encoder is {self.enc.dim}-d; use the same -S text_model for both")
        key = self._key(data, card_hash, seed)
        art = cache_dir() / "contrastive" / "models" / key
        self.artifact_dir = art
        corpus = build_corpus(data, card, self.enc, self.cfg, seed, progress=self.progress)
        self.corpus_stats = {**corpus.stats, "steering_source": corpus.steer_source}
        self.space = corpus.space
        tuned_ok = self.qenc is None or (art / "text_layers.pt").exists()
        if (art / "model.pt").exists() and (art / "meta.json").exists() and tuned_ok:
            from systems.contrastive.model import SharedSpace

            model = SharedSpace(corpus.space.dim, self.enc.dim, tuple(self.cfg.hidden), adapter=self.cfg.adapter)
            model.load_state_dict(torch.load(art / "model.pt", weights_only=True))
            model.eval()
            if self.qenc is not None:
                self.qenc.load_top_state_dict(torch.load(art / "text_layers.pt", weights_only=True))
            meta = json.loads((art / "meta.json").read_text())
            self.losses = meta.get("losses", [])
            self.index = ItemIndex.load(art, hnsw_threshold=self.hnsw_threshold)
            self.loaded_from_cache = True
        else:
            model, self.losses = train(corpus, self.cfg, self.w, seed, progress=self.progress, query_encoder=self.qenc)
            self.loaded_from_cache = False
        self.model = model
        with torch.no_grad():
            item_vecs = model.meta(torch.from_numpy(corpus.item_X)).numpy()
        if not self.loaded_from_cache:
            self.index = ItemIndex(item_vecs.shape[1], hnsw_threshold=self.hnsw_threshold)
            self.index.add(list(data.item_ids), item_vecs)
            if self.cache:
                tmp = art.with_name(art.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                torch.save(model.state_dict(), tmp / "model.pt")
                extra: dict[str, Any] = {}
                if self.qenc is not None:  # only the trained layers; the rest is the packaged model
                    torch.save(self.qenc.top_state_dict(), tmp / "text_layers.pt")
                    extra["text_layers"] = {"unfrozen": self.cfg.unfreeze_layers, "fingerprint": self.qenc.fingerprint()}
                self.index.save(tmp)
                (tmp / "meta.json").write_text(json.dumps({
                    "card_hash": card_hash, "train_key": data.key, "seed": seed, "config": config_dict(self.cfg),
                    "weights": asdict(self.w), "stats": self.corpus_stats, "losses": self.losses, **extra}, indent=1))
                shutil.rmtree(art, ignore_errors=True)
                os.replace(tmp, art)
        self.item_ids = tuple(data.item_ids)
        self._rows = {i: dict(r) for i, r in data.items.items()}
        self._pop = dict(zip(data.item_ids, corpus.item_X[:, corpus.space.pop_col].tolist(), strict=False))
        for i, known in zip(data.item_ids, corpus.item_X[:, corpus.space.pop_known_col], strict=False):
            if not known:
                self._pop[i] = float("nan")
        self._pos = {it: j for j, it in enumerate(self.index.ids)}
        self._user_memo: dict[Any, np.ndarray] = {}
        self._text_memo: dict[str, np.ndarray] = {}
        from systems.contrastive.pairs import control_phrases

        protos = {k: list(v) for k, v in INTENTS.items()}
        for intent, texts in control_phrases(card).items():
            protos.setdefault(intent, []).extend(texts)
        self.prototypes = {k: self.enc.encode(v) for k, v in protos.items()}
        from systems.contrastive.pairs import polarity_phrases

        pol = polarity_phrases(card)
        self.polarity = None
        if len(pol) == 2 and all(pol.values()):
            X = self.enc.encode(pol["exclude"] + pol["other"])
            self.polarity = fit_probe(X, np.r_[np.ones(len(pol["exclude"])), np.zeros(len(pol["other"]))])
        self._neg_memo.clear()
        self._con_memo.clear()
        self._ground_protos()
        self._build_grounder(data)
        self._fallback = normalize(self.index.vectors[: len(self.item_ids)].mean(0))
        self._fit_prior(data)

    def _ground_protos(self) -> None:
        """One text prototype per categorical item value: the mean steering-text vector of its card texts.

        The card's language bridge (the value's description and aliases, the texts
        the space was trained to align) encoded like an utterance. A ruled-out
        phrase is grounded in the value whose prototype is nearest when that
        cosine is at least ``ground_min`` and beats the runner-up by ``ground_margin``
        (both chosen on the steering *train* templates and on made-up phrases,
        ``benchmarks/contrastive_exclusion_dev.py``). Ordinal bins are left to
        the direction mask: "nothing before 1970" is a range, not a bin.
        """
        self._ground_labels, P = [], []
        for name, attr in self.card.item.attributes.items():
            if attr.kind not in ("multi_categorical", "categorical"):
                continue
            for label, spec in attr.values.items():
                texts = [t for t in (spec.description, *spec.aliases) if t]
                if texts:
                    v = np.mean([self.steer_text(t) for t in texts], axis=0)
                    P.append(v / max(float(np.linalg.norm(v)), 1e-12))
                    self._ground_labels.append((name, label))
        self._ground_P = np.array(P, np.float32) if P else np.zeros((0, self.index.dim), np.float32)

    # ------------------------------------------------------------------ new users

    def _user_keys(self, user: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(attribute, value or bin label) of a user's metadata: the groups whose taste is counted."""
        out = []
        if self.card.user is None:
            return out
        for name, attr in self.card.user.attributes.items():
            v = attr.value_of(dict(user))
            if attr.kind == "ordinal":
                b = attr.bin_of(v)
                if b is not None:
                    out.append((name, b.label))
            elif attr.kind == "categorical" and v is not None and str(v) not in attr.unknown:
                out.append((name, str(v)))
        return out

    # mixture weights of the group and neighbour distributions beside popularity (the rest), and the weight of
    # the space's cosine beside the log mixture; chosen together at fit
    GROUP_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
    NEIGHBOUR_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
    COS_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    # how many training users nearest a new user in the space (metadata vectors); a grid of (50, 200, 800) chose
    # differently per seed and placed new users no better (3 seeds, 282 new users)
    NEIGHBOURS = 200
    # how "nearest" is measured: "space" (cosine of the users' metadata vectors in the trained space) or "card"
    # (the card's user attributes: shared categorical values minus ordinal distance in units of spread); both
    # are tried at fit and the better kept
    NEAR_BY = ("space", "card")
    PRIOR_USERS = 300  # training users the weights are chosen on

    def _fit_prior(self, data: TrainData) -> None:
        """A new user's prior: a mixture of the catalog's popularity, the popularity within the user's
        demographic groups and the popularity among the training users whose metadata vectors lie nearest in
        the space, beside the space's cosine to the items. The weights are chosen together on 300 training
        users, each scored on all of their training items with their own interactions taken out of every count
        (leave-user-out nDCG@10): the cold-start users are never read."""
        from scipy import sparse

        n = len(self.item_ids)
        pos = {it: j for j, it in enumerate(self.item_ids)}
        tr = data.train
        rows = np.array([pos.get(i, -1) for i in tr.item_ids.tolist()], dtype=np.int64)
        ok = rows >= 0
        users = tr.user_ids.tolist()
        self._train_users = sorted({u for u, o in zip(users, ok.tolist(), strict=True) if o})
        upos = {u: j for j, u in enumerate(self._train_users)}
        ur = np.array([upos[u] for u, o in zip(users, ok.tolist(), strict=True) if o], dtype=np.int64)
        # users x items: did the user interact with the item (training split)
        uc = sparse.csr_matrix((np.ones(len(ur)), (ur, rows[ok])), shape=(len(self._train_users), n))
        uc.sum_duplicates()
        uc.data[:] = 1.0  # a repeated interaction counts once
        self._uc = uc
        self._c_all = np.asarray(self._uc.sum(0)).ravel()
        keys = {u: self._user_keys(data.users.get(u, {})) for u in self._train_users}
        self._group_users = {key: np.array([key in keys[u] for u in self._train_users], bool)
                             for key in {k for ks in keys.values() for k in ks}}
        self._c_group = {key: np.asarray(self._uc[sel].sum(0)).ravel() for key, sel in self._group_users.items()}
        V = [self.user_vec(data.users.get(u, {})) for u in self._train_users]
        self._nb_V = np.stack(V) if V and all(v is not None for v in V) else None
        self._attr_fit([data.users.get(u, {}) for u in self._train_users])
        self.group_weight, self.neighbour_weight, self.prior_weight = 0.0, 0.0, 0.0
        self.near_by = self.NEAR_BY[0]
        self.prior_fit: dict[str, Any] = {}
        if self.new_user_prior == "none" or not len(tr) or self.card.user is None or not self.cfg.use_user:
            return
        rs = np.random.default_rng(0)
        cand = [u for u in self._train_users if u in data.users]
        pick = rs.choice(len(cand), size=min(self.PRIOR_USERS, len(cand)), replace=False) if cand else []
        sample = [cand[i] for i in sorted(pick)]
        if not sample:
            return
        Q = np.stack([v if (v := self.user_vec(data.users[u])) is not None else self._fallback for u in sample])
        C = Q @ self.index.vectors[:n].T
        own = {u: self._uc[upos[u]].toarray().ravel() for u in sample}
        groups = self.GROUP_WEIGHTS if self.new_user_prior == "demographic" else (0.0,)
        nbs = self.NEIGHBOUR_WEIGHTS if self.new_user_prior == "demographic" and self._nb_V is not None else (0.0,)
        best = (-1.0, 0.0, 0.0, 0.0, self.NEAR_BY[0])
        tried = []
        for by in self.NEAR_BY if len(nbs) > 1 else self.NEAR_BY[:1]:
            self.near_by = by
            parts = [self._prior_parts(data.users[u], minus=own[u], keys=keys[u], skip=upos[u]) for u in sample]
            for g in groups:
                for nw in nbs:
                    if g + nw > 1.0 + 1e-9 or (nw == 0 and by != self.NEAR_BY[0]):
                        continue
                    P = np.log(np.stack([(1.0 - g - nw) * p + g * gr + nw * nb for p, gr, nb in parts]))
                    for w in self.COS_WEIGHTS:
                        S = P + w * C
                        top = np.argsort(-S, axis=1, kind="stable")[:, :10]
                        ndcg = float(np.mean([_ndcg_all(top[i], own[u] > 0) for i, u in enumerate(sample)]))
                        tried.append((g, nw, w, by, round(ndcg, 5)))
                        if ndcg > best[0] + 1e-9:
                            best = (ndcg, g, nw, w, by)
        _, self.group_weight, self.neighbour_weight, self.prior_weight, self.near_by = best
        self.prior_fit = {"group_weight": self.group_weight, "neighbour_weight": self.neighbour_weight,
                          "cosine_weight": self.prior_weight, "neighbours": self.NEIGHBOURS, "near_by": self.near_by,
                          "ndcg@10_train_users": best[0], "users": len(sample),
                          "popularity_ndcg@10_train_users": next(t[-1] for t in tried if t[:3] == (0.0, 0.0, 0.0)),
                          "target": "all of a training user's items, the user's own interactions out of every count",
                          "grid": {"group_weight": list(groups), "neighbour_weight": list(nbs),
                                   "cosine_weight": list(self.COS_WEIGHTS), "near_by": list(self.NEAR_BY)},
                          "tried": tried}

    def _attr_row(self, user: Mapping[str, Any]) -> np.ndarray:
        """A user's card attributes as numbers: each ordinal value in units of its spread over the training users
        (NaN when unknown), each categorical value one-hot."""
        out = []
        for name, attr in (self.card.user.attributes.items() if self.card.user is not None else ()):
            v = attr.value_of(dict(user))
            if attr.kind == "ordinal":
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    x = np.nan
                out.append(np.array([x / self._attr_scale.get(name, 1.0)]))
            elif attr.kind == "categorical":
                vals = self._attr_values.get(name, [])
                out.append(np.array([float(str(v) == c) for c in vals]))
        return np.concatenate(out) if out else np.zeros(0)

    def _attr_fit(self, users: Sequence[Mapping[str, Any]]) -> None:
        """Scales and values of the card's user attributes over the training users (for ``_attr_row``)."""
        self._attr_scale: dict[str, float] = {}
        self._attr_values: dict[str, list[str]] = {}
        self._attr_ord = np.zeros(0, bool)
        if self.card.user is None or not users:
            self._attr_X = None
            return
        ords = []
        for name, attr in self.card.user.attributes.items():
            vals = [attr.value_of(dict(u)) for u in users]
            if attr.kind == "ordinal":
                xs = np.array([float(x) for x in vals if isinstance(x, (int, float)) and x == x])
                self._attr_scale[name] = float(xs.std()) if len(xs) > 1 and xs.std() > 0 else 1.0
                ords.append(True)
            elif attr.kind == "categorical":
                self._attr_values[name] = sorted({str(x) for x in vals if x is not None and str(x) not in attr.unknown})
                ords += [False] * len(self._attr_values[name])
        self._attr_ord = np.array(ords, bool)
        self._attr_X = np.stack([self._attr_row(u) for u in users]) if ords else None

    def _attr_similarity(self, user: Mapping[str, Any]) -> np.ndarray | None:
        """Similarity of ``user`` to every training user by the card's user attributes: one per categorical value
        shared, minus the distance of each ordinal value in units of its spread (an unknown value adds nothing)."""
        if self._attr_X is None:
            return None
        x = self._attr_row(user)
        X, o = self._attr_X, self._attr_ord
        cat = X[:, ~o] @ x[~o]
        dist = np.nan_to_num(np.abs(X[:, o] - x[o]), nan=0.0).sum(1)
        return cat - dist

    def _prior_parts(self, user: Mapping[str, Any], *, minus: np.ndarray | None = None, keys=None,
                     skip: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(item); the mean over the user's demographic groups of P(item | group); P(item | the ``NEIGHBOURS``
        training users nearest in the space)), each the share of users who chose the item, add-one smoothed.
        ``minus`` (a training user's own items) is taken out of every count and ``skip`` (that user's row) out
        of the neighbours. Without groups or neighbours their part is P(item)."""
        n = len(self._c_all)
        minus = np.zeros(n) if minus is None else minus

        def dist(c: np.ndarray) -> np.ndarray:
            return (c + 1.0) / (c.sum() + n)

        base = dist(self._c_all - minus)
        gs = []
        for key in (keys if keys is not None else self._user_keys(user)):
            g = self._c_group.get(key)
            if g is not None:
                gs.append(dist(g - minus if skip is not None and self._group_users[key][skip] else g))
        grp = np.mean(gs, axis=0) if gs else base
        nb = base
        sim = None
        if self.near_by == "space" and self._nb_V is not None and (v := self.user_vec(user)) is not None:
            sim = self._nb_V @ v
        elif self.near_by == "card":
            sim = self._attr_similarity(user)
        if sim is not None:
            if skip is not None:
                sim[skip] = -np.inf
            near = np.argsort(-sim, kind="stable")[: self.NEIGHBOURS]
            nb = dist(np.asarray(self._uc[near].sum(0)).ravel())
        return base, grp, nb

    def _prior(self, user: Mapping[str, Any]) -> np.ndarray:
        """A new user's log prior over the catalog: the fitted mixture of popularity, group popularity and the
        neighbours' popularity (``_prior_parts``); popularity alone unless ``new_user_prior`` is demographic."""
        base, grp, nb = self._prior_parts(user)
        if self.new_user_prior != "demographic":
            return np.log(base)
        g, nw = self.group_weight, self.neighbour_weight
        return np.log((1.0 - g - nw) * base + g * grp + nw * nb)

    def _new_user_scores(self, r: Request, q: np.ndarray) -> np.ndarray:
        """prior + prior_weight * cosine over the whole index; items added after fit get the lowest prior."""
        cos = self.index.scores(q[None, :])[0].astype(np.float64)
        p = self._prior(r.user)
        prior = np.full(len(cos), float(p.min()) if len(p) else 0.0)
        prior[: len(p)] = p
        return prior + self.prior_weight * cos

    def _new_user(self, r: Request) -> bool:
        return (self.new_user_prior != "none" and not r.history and not any(t.utterance.strip() for t in r.conversation)
                and bool(r.user))

    def _build_grounder(self, data: TrainData) -> None:
        """The reader of card values, ranges and anchored relations (``grounding.Grounder``), from the train templates."""
        from systems.contrastive.grounding import Grounder
        from systems.contrastive.pairs import train_template_set

        ent = self.card.item
        self._ordinal = next((n for n, a in ent.attributes.items() if a.kind == "ordinal" and a.bins), None)
        self._categorical = next((n for n, a in ent.attributes.items()
                                  if a.kind in ("multi_categorical", "categorical") and a.values), None)
        newest = None
        if self._ordinal:
            attr = ent.attributes[self._ordinal]
            xs = [attr.value_of(dict(r)) for r in data.items.values()]
            xs = [float(x) for x in xs if x is not None and x == x]
            newest = max(xs) if xs else None
        lexicon, familiar = None, frozenset()
        if self.lexicon:
            from systems.contrastive.lexicon import Lexicon
            from systems.contrastive.text import whole_words

            lexicon, familiar = Lexicon(), whole_words(self.text_model)
        self.grounder = Grounder(self.card, train_template_set(), self.enc.encode, newest=newest, lexicon=lexicon,
                                 familiar=familiar)
        self._read_memo.clear()

    def read(self, said: str, named: str | None):
        """What the card can check in an utterance (``grounding.Reading``), or None when grounding is off."""
        if not (self.constrain or self.constrain_anchored):
            return None
        from systems.contrastive.grounding import Reading

        key = (said, named is not None)
        r = self._read_memo.get(key)
        if r is None:
            r = self.grounder.read(said, anchored=named is not None)
            if len(self._read_memo) > 50_000:
                self._read_memo.clear()
            self._read_memo[key] = r
        return Reading(list(r.constraints) if self.constrain else [], r.relation if self.constrain_anchored else None,
                       r.skeleton)

    def relate(self, kind: str, item: str):
        """The constraint an anchored relation puts on the list: older/newer on the ordinal, similar/contrast on the
        categorical attribute, relative to ``item``."""
        from systems.contrastive.grounding import Constraint

        if not self.constrain_anchored:
            return None
        attr = self._ordinal if kind in ("older", "newer") else self._categorical
        return Constraint(kind, attr or "", anchor=item) if attr else None

    def steer_parts(self, utterance: str, reading) -> tuple[str, list[str]]:
        """A grounded steer: move toward the utterance; past what it rules out. A wish ("I want X") is never a
        negation; a refusal said without a cue moves past the refused values' card texts instead of toward them."""
        from systems.contrastive.query import split_negation

        lacks = [v for c in reading.constraints if c.kind == "lacks" for v in sorted(c.values)]
        if not lacks:
            return utterance, []
        keep, negs = split_negation(utterance)
        if negs:
            return keep, negs
        attr = self.card.item.attributes[self._categorical]
        has = [attr.values[v].description for c in reading.constraints if c.kind == "has" for v in sorted(c.values)
               if v in attr.values]
        return ", ".join(has), [attr.values[v].description if v in attr.values else v for v in lacks]

    def _values(self, name: str) -> list[Any]:
        key = ("values", name)
        out = self._con_memo.get(key)
        if out is None:
            attr = self.card.item.attributes[name]
            out = [attr.value_of(dict(self._rows.get(it, {}))) for it in self.index.ids]
            self._con_memo[key] = out
        return out

    def satisfying(self, constraints) -> np.ndarray | None:
        """Items that meet every constraint, as a mask over the index (None: no constraint). An item whose value on
        the constrained attribute is unknown meets none (no genre, no year), exclusions included."""
        cs = [c for c in constraints if c is not None and c.attribute]
        if not cs:
            return None
        mask = np.ones(len(self.index.ids), bool)
        for c in cs:
            m = self._con_memo.get(c)
            if m is None:
                m = self._constraint_mask(c)
                if len(self._con_memo) > 10_000:
                    self._con_memo.clear()
                self._con_memo[c] = m
            mask &= m
        return mask

    def _constraint_mask(self, c) -> np.ndarray:
        vals = self._values(c.attribute)
        n = len(vals)
        attr = self.card.item.attributes[c.attribute]

        def as_set(v: Any) -> frozenset:
            if attr.kind == "multi_categorical":
                return frozenset(v or ())
            return frozenset() if v is None or (isinstance(v, float) and v != v) else frozenset([str(v)])

        if c.kind in ("has", "lacks"):
            sets = [as_set(v) for v in vals]
            if c.kind == "has":
                return np.array([bool(s) and c.values <= s for s in sets], bool)
            return np.array([bool(s) and not (c.values & s) for s in sets], bool)
        if c.kind == "range":
            return np.array([v is not None and v == v and c.low <= float(v) <= c.high for v in vals], bool)
        j = self._pos.get(c.anchor)
        if j is None:
            return np.ones(n, bool)
        a = vals[j]
        if c.kind in ("older", "newer"):
            if a is None or a != a:
                return np.ones(n, bool)
            lower = c.kind == "older"
            return np.array([v is not None and v == v and (float(v) < float(a) if lower else float(v) > float(a)) for v in vals], bool)
        A = as_set(a)
        if not A:
            return np.ones(n, bool)
        sets = [as_set(v) for v in vals]
        if c.kind == "similar":  # most of the genres in common (Jaccard >= 1/2), not the item itself
            m = np.array([bool(s) and len(s & A) / len(s | A) >= 0.5 for s in sets], bool)
            m[j] = False
            return m
        return np.array([bool(s) and not (s & A) for s in sets], bool)  # contrast: no genre in common

    def _carries(self, name: str, label: str) -> np.ndarray:
        """Mask over the index: items whose categorical ``name`` has the value ``label``; memoised."""
        out = self._carry_memo.get((name, label))
        if out is None:
            attr = self.card.item.attributes[name]
            multi = attr.kind == "multi_categorical"
            values = (attr.value_of(self._rows.get(it, {})) for it in self.index.ids)
            out = np.array([(label in v) if multi else (v is not None and str(v) == label) for v in values], bool)
            self._carry_memo[(name, label)] = out
        return out

    def ground(self, phrase: str) -> tuple[str, str] | None:
        """The item value a phrase names (attribute, value), or None when no prototype is clearly nearest."""
        if self.ground_margin <= 0 or not len(self._ground_P):
            return None
        s = self._ground_P @ self.steer_text(phrase)
        order = np.argsort(-s, kind="stable")
        gap = float(s[order[0]] - s[order[1]]) if len(s) > 1 else float("inf")
        if s[order[0]] < self.ground_min or gap < self.ground_margin:
            return None
        return self._ground_labels[int(order[0])]

    # ------------------------------------------------------------------ encoders

    def _np_meta(self, X: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model.meta(torch.from_numpy(X)).numpy()

    def steer_text(self, text: str) -> np.ndarray:
        v = self._text_memo.get(text)
        if v is None:
            import torch

            # what the user says: the tuned query-side encoder when its top layers were trained
            raw = (self.qenc or self.enc).encode([text])
            with torch.no_grad():
                v = self.model.text(torch.from_numpy(raw)).numpy()[0]
            if len(self._text_memo) > 100_000:
                self._text_memo.clear()
            self._text_memo[text] = v
        return v

    def raw_text(self, text: str) -> np.ndarray:
        """Frozen MiniLM: the intent prototypes and the polarity probe live in this space (never the tuned one)."""
        return self.enc.encode([text])[0]

    def user_vec(self, user: Mapping[str, Any]) -> np.ndarray | None:
        if not user or not self.cfg.use_user or self.card.user is None:
            return None
        key = tuple(sorted((k, str(v)) for k, v in user.items()))
        v = self._user_memo.get(key)
        if v is None:
            v = self._np_meta(self.space.user_vectors([dict(user)]))[0]
            self._user_memo[key] = v
        return v

    def item_vecs(self, items: Sequence[str]) -> np.ndarray:
        rows = [self._pos[i] for i in items if i in self._pos]
        return self.index.vectors[rows] if rows else np.zeros((0, self.index.dim), np.float32)

    def _title(self, item: str) -> str:
        ent = self.card.item
        if not ent.title:
            return ""
        t = ent.attributes[ent.title].value_of(dict(self._rows.get(item, {})))
        return str(t) if t else ""

    def anchor(self, utterance: str, shown: Sequence[str]) -> tuple[str | None, str]:
        """The shown item the utterance names by title (latest first), and the utterance with it said as 'that <noun>'."""
        low = utterance.lower()
        for item in reversed(list(shown)):
            title = self._title(item)
            for form in (title, title.rsplit(" (", 1)[0]):
                f = form.strip().lower()
                if len(f) >= 3 and f in low:
                    start = low.index(f)
                    said = utterance[:start] + f"that {self.card.item.noun}" + utterance[start + len(f):]
                    return item, said
        return None, utterance

    def shift(self, item: str, direction: float) -> np.ndarray:
        """The item's metadata embedding with its ordered attribute moved by ``direction * glide``."""
        slot = next((s for s in self.space.item_slots if s.attr.kind == "ordinal"), None)
        j = self._pos.get(item)
        if slot is None or j is None or item not in self._rows:
            return self.item_vecs([item])[0]
        x = slot.attr.value_of(dict(self._rows[item]))
        if x != x:  # unknown value: nothing to glide along
            return self.item_vecs([item])[0]
        y = float(np.clip(x + direction * self.w.glide, slot.lo, slot.hi))
        X = self.space.item_vectors([self._rows[item]], [float(self._pop.get(item, float("nan")))], text_fn=self.enc.encode,
                                    overrides=[{slot.name: y}])
        return self._np_meta(X)[0]

    def add_items(self, items: Mapping[str, Mapping[str, Any]]) -> None:
        """Cold start: embed new items' metadata (popularity unknown) and insert them; no retraining."""
        new = [i for i in items if i not in self._pos]
        if not new:
            return
        X = self.space.item_vectors([dict(items[i]) for i in new], [float("nan")] * len(new), text_fn=self.enc.encode)
        self._rows.update({i: dict(items[i]) for i in new})
        self.index.add(new, self._np_meta(X))
        self._neg_memo.clear()
        self._carry_memo.clear()
        self._con_memo.clear()
        self._pos = {it: j for j, it in enumerate(self.index.ids)}

    # ------------------------------------------------------------------ queries

    def base_query(self, r: Request) -> np.ndarray:
        ctx = None
        if r.context:
            ctx = self.steer_text(". ".join(f"{k}: {v}" for k, v in sorted(r.context.items())))
        hist = self.item_vecs(r.history[-self.w.history_window:]) if r.history else None
        user = self.user_vec(r.user)
        if user is None and ctx is None and (hist is None or not len(hist)):
            return self._fallback
        return build_query(None, user, ctx, hist, None, None, self.w)

    def trace(self, r: Request):
        base = self.base_query(r)
        turns = [(t.utterance, tuple(t.shown)) for t in r.conversation]
        self._llm_turn = None
        if not turns:
            return base, [], "none"
        rewrite = None
        if self.reasoner is not None:
            def rewrite() -> str | None:
                text = self.reasoner.rewrite(r.conversation, self._title)
                self._llm_turn = "rewritten" if text else "fallback"
                if not text:
                    self.llm_fallbacks += 1
                return text
        traces = fold_conversation(turns, base, raw_text=self.raw_text, steer_text=self.steer_text,
                                   item_vec=self.item_vecs, prototypes=self.prototypes,
                                   threshold=self.intent_threshold, w=self.w, shift=self.shift,
                                   anchor=lambda u, shown: self.anchor(u, list(r.history[-300:]) + list(shown)),
                                   rewrite=rewrite, negative=self.is_negative, read=self.read, relate=self.relate,
                                   parts=self.steer_parts)
        return traces[-1].query, traces, traces[-1].intent

    def query(self, r: Request) -> np.ndarray:
        return self.trace(r)[0]

    def is_negative(self, utterance: str) -> bool:
        """Does the utterance rule something out? A linear probe on raw MiniLM, fit on the train phrasings
        (exclude vs include/range kinds); only asked when no negation cue is found."""
        if self.polarity is None or not self.exclude_demote:
            return False
        w, b = self.polarity
        return float(self.raw_text(utterance) @ w + b) > self.polarity_threshold

    def demoted(self, negated: Sequence[str]) -> np.ndarray | None:
        """Items carrying a ruled-out phrase ("no horror": the horror films), as a mask over the index, or None.

        The items near the phrase's text direction, split off by ``exclusion_mask``;
        they go below every other item (the query's repel alone leaves many in the top 10).
        """
        if not negated or not self.exclude_demote:
            return None
        mask = np.zeros(len(self.index.ids), bool)
        for phrase in negated:
            m = self._neg_memo.get(phrase)
            if m is None:
                value = self.ground(phrase)
                if value is not None:  # the phrase names one item value: rule out exactly its items
                    m = self._carries(*value)
                else:
                    m = exclusion_mask(self.index.vectors @ self.steer_text(phrase), z=self.exclude_z,
                                       max_share=self.exclude_max_share)
                if len(self._neg_memo) > 10_000:
                    self._neg_memo.clear()
                self._neg_memo[phrase] = m
            mask |= m
        return mask if mask.any() else None

    def _filtered(self, traces) -> np.ndarray | None:
        """Items to put below every other item: those failing the grounded constraints, else those carrying an
        ungrounded ruled-out phrase (``demoted``)."""
        if not traces:
            return None
        sat = self.satisfying(traces[-1].constraints)
        if sat is not None:
            return ~sat
        return self.demoted(traces[-1].negated)

    # ------------------------------------------------------------------ protocol

    def recommend(self, requests: Sequence[Request], *, k: int) -> list[Ranking]:
        out = []
        for r in requests:
            q, traces, intent = self.trace(r)
            exclude = set(r.exclude)
            if intent in ("attract", "repel", "diverse"):
                exclude |= set(r.shown)
            diverse = bool(traces) and traces[-1].diversify
            pool = k + len(exclude) + (20 * k if diverse else 0)
            demoted = self._filtered(traces)
            if self._new_user(r):  # no history, no words: the demographic prior plus the space's cosine
                all_s = self._new_user_scores(r, q)
                order = np.argsort(-all_s, kind="stable")
                cand = [(int(p), float(all_s[p])) for p in order[:pool] if self.index.ids[p] not in exclude]
            elif demoted is None:
                scores, pos = self.index.search(q[None, :], pool)
                cand = [(int(p), float(s)) for p, s in zip(pos[0], scores[0], strict=False) if p >= 0 and self.index.ids[p] not in exclude]
            if not self._new_user(r) and (demoted is not None or (len(cand) < k and len(self.index.ids) > pool)):  # exact scores (demotion, or too much excluded)
                all_s = self.index.scores(q[None, :])[0]
                if demoted is not None:
                    all_s = all_s - 2.0 * demoted  # below every item that is not ruled out
                order = np.argsort(-all_s, kind="stable")
                cand = [(int(p), float(all_s[p])) for p in order[: pool + int(demoted.sum() if demoted is not None else len(order))]
                        if self.index.ids[p] not in exclude]
            if diverse:
                cand = self._mmr(cand, k)
            cand = cand[:k]
            items = tuple(self.index.ids[p] for p, _ in cand)
            trace: dict[str, Any] = {"query": [round(float(x), 6) for x in q], "intent": intent}
            read = [c for c in (traces[-1].constraints if traces else ()) if c is not None]
            if read:  # what the list was filtered by: the system's own reading
                trace["constraint"] = "; ".join(self._describe(c) for c in read)
            if self.reasoner is not None:  # this turn: rewritten / fallback / not needed; run totals so far
                trace["llm"] = {"turn": self._llm_turn or "unused", "fallbacks": self.llm_fallbacks,
                                "calls": self.reasoner.calls}
            out.append(Ranking(items, tuple(s for _, s in cand), explanation=self._explain(intent, traces), trace=trace))
        return out

    def _mmr(self, cand: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        chosen: list[tuple[int, float]] = []
        V = self.index.vectors
        rest = list(cand)
        while rest and len(chosen) < k:
            if not chosen:
                best = 0
            else:
                S = V[[p for p, _ in rest]] @ V[[p for p, _ in chosen]].T
                val = np.array([s for _, s in rest]) - self.diversity * S.max(1)
                best = int(np.argmax(val))
            chosen.append(rest.pop(best))
        return chosen

    def _describe(self, c) -> str:
        """A grounded constraint in words, an anchor item by its title and year."""
        text = c.describe()
        if c.anchor:
            name = self._title(c.anchor) or str(c.anchor)
            if self._ordinal:
                v = self.card.item.attributes[self._ordinal].value_of(dict(self._rows.get(c.anchor, {})))
                name += f" ({v:g})" if isinstance(v, (int, float)) and v == v else ""
            text = text.replace(str(c.anchor), name)
        return text

    def _explain(self, intent: str, traces) -> str:
        if not traces:
            return "nearest items to your profile and history"
        return {"back": "went back to the previous query point", "attract": "moved toward the items you liked",
                "repel": "moved away from the items shown", "diverse": "moved away from the items shown and spread the list",
                "steer": f"moved toward: {traces[-1].utterance}"}.get(intent, "kept the query point")

    def score_catalog(self, requests: Sequence[Request]) -> np.ndarray:
        n = len(self.item_ids)
        if not requests:
            return np.zeros((0, n))
        traces = [self.trace(r) for r in requests]
        S = self.index.scores(np.stack([t[0] for t in traces])).astype(np.float64)
        for row, r in enumerate(requests):
            if self._new_user(r):
                S[row] = self._new_user_scores(r, traces[row][0])
        for row, (_, tr, _) in enumerate(traces):
            demoted = self._filtered(tr)
            if demoted is not None:
                S[row] -= 2.0 * demoted
        return S[:, :n].astype(np.float64)


def fit_probe(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression (LBFGS); returns (weights, bias) of the logit."""
    import torch
    import torch.nn.functional as F

    Xt, yt = torch.from_numpy(np.asarray(X, np.float32)), torch.from_numpy(np.asarray(y, np.float32))
    w = torch.zeros(Xt.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)
    pw = (1 - yt).sum() / yt.sum().clamp(min=1)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(Xt @ w + b, yt, pos_weight=pw) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def make(name: str, params: Mapping[str, Any], **kw: Any) -> ContrastiveSystem:
    keys = set(TrainConfig.__dataclass_fields__)
    wkeys = set(Weights.__dataclass_fields__)
    cfg_args = {k: v for k, v in kw.items() if k in keys}
    if "hidden" in cfg_args:
        h = cfg_args["hidden"]
        cfg_args["hidden"] = tuple(int(x) for x in (h.split(",") if isinstance(h, str) else h))
    w_args = {k[2:] if k.startswith("w_") else k: v for k, v in kw.items() if (k[2:] if k.startswith("w_") else k) in wkeys}
    rest = {k: v for k, v in kw.items() if k not in keys and (k[2:] if k.startswith("w_") else k) not in wkeys}
    bad = set(rest) - {"text_model", "intent_threshold", "hnsw_threshold", "diversity", "progress", "cache", "reasoner", "text_encoder",
                       "exclude_demote", "exclude_max_share", "exclude_z", "polarity_threshold", "ground_margin", "ground_min",
                       "constrain", "constrain_anchored", "new_user_prior", "lexicon"}
    if bad:
        raise BenchError(f"system '{name}': unknown argument(s) {', '.join(sorted(bad))}")
    n = cfg_args.get("unfreeze_layers", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise BenchError(f"-S unfreeze_layers={n}: give a whole number >= 0 (0 keeps the text encoder frozen)")
    if n:
        from systems.contrastive.text import num_layers

        top = num_layers(str(rest.get("text_model", "") or ""))
        if top is not None and n > top:
            raise BenchError(f"-S unfreeze_layers={n}: the text model has {top} transformer layers; give 0..{top}")
    return ContrastiveSystem(name, TrainConfig(**cfg_args), Weights(**w_args), params=params, **rest)


def _ndcg_all(top: np.ndarray, relevant: np.ndarray) -> float:
    """nDCG of a ranked list of item rows against a boolean relevance vector (every relevant item counts)."""
    gains = relevant[top].astype(float)
    ideal = min(int(relevant.sum()), len(top))
    if not ideal:
        return 0.0
    disc = 1.0 / np.log2(np.arange(2, len(top) + 2))
    return float(gains @ disc / disc[:ideal].sum())
