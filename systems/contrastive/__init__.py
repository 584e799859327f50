"""Contrastive TalkWalk (seed 001) and its ablations.

Item metadata, user metadata and language share one embedding space
(InfoNCE + interpolation smoothing); a FAISS index answers the query point
built from text, profile, context, history and the conversation. Heavy
libraries load inside the factories.
"""

from __future__ import annotations

import inspect
from typing import Any

from talkwalk_bench.registry import register_system, register_variant


def _build(name: str, args: dict[str, Any], **fixed: Any):
    """Every variant is ``contrastive`` with its defaults, then ``args`` (-S), then what the variant fixes."""
    from systems.contrastive.system import make

    base = {k: p.default for k, p in inspect.signature(contrastive).parameters.items()}
    kw = {**base, **args, **fixed}
    params = {k: v for k, v in kw.items() if k != "llm"}
    if kw.pop("llm", False):
        from systems.contrastive.llm import Reasoner

        kw["reasoner"] = Reasoner(kw.pop("llm_base_url", ""), kw.pop("llm_model", ""))
    else:
        kw.pop("llm_base_url", None)
        kw.pop("llm_model", None)
    return make(name, params, **kw)


@register_system("contrastive", description="Seed 001: one contrastive space for metadata and language, FAISS search, steerable query")
def contrastive(epochs: int = 3, steps_per_epoch: int = 120, batch_size: int = 256, lr: float = 1e-3,
                hidden: str = "512,256", adapter: bool = True, smooth_weight: float = 1.0, use_user: bool = True,
                use_steering: bool = True,
                use_interactions: bool = True, w_text: float = 1.0, w_user: float = 0.3, w_context: float = 0.3,
                w_history: float = 1.0, w_attract: float = 1.0, w_repulsion: float = 0.6, w_glide: float = 25.0, w_negation: float = 0.5, window: int = 4,
                history_window: int = 20, diversity: float = 1.0, intent_threshold: float = 0.62,
                hnsw_threshold: int = 100_000, text_model: str = "", progress: bool = True, steer_weight: float = 2.0,
                exclude_demote: bool = True, exclude_max_share: float = 0.5, exclude_z: float = 1.0,
                polarity_threshold: float = 1.0, ground_margin: float = 0.1, ground_min: float = 0.6,
                constrain: bool = True, constrain_anchored: bool = True, new_user_prior: str = "demographic",
                lexicon: bool = True, unfreeze_layers: int = 0, lr_text: float = 5e-5):
    return _build("contrastive", dict(locals()))  # the signature above is the one list of arguments and defaults


def _variant(name: str, **args: Any):
    return _build(name, args)


# ablations and options as named variants: `contrastive`'s arguments, some defaults changed
register_variant("contrastive-no-smooth", _variant, like=contrastive, defaults={"smooth_weight": 0.0},
                 description="contrastive without the interpolation smoothing loss")
register_variant("contrastive-no-user", _variant, like=contrastive, defaults={"use_user": False, "w_user": 0.0},
                 description="contrastive without user metadata (no user pairs, no profile in the query)")
register_variant("contrastive-no-steer", _variant, like=contrastive, defaults={"use_steering": False},
                 description="contrastive trained without steering phrasings (descriptions only)")
register_variant("contrastive-ft2", _variant, like=contrastive, defaults={"unfreeze_layers": 2},
                 description="contrastive with MiniLM's top 2 layers fine-tuned on the query side (-S unfreeze_layers=2)")


def contrastive_llm(llm_base_url: str = "", llm_model: str = "", **args: Any):
    return _build("contrastive-llm", {**args, "llm_base_url": llm_base_url, "llm_model": llm_model}, llm=True)


# exactly `contrastive`'s arguments and defaults, plus the endpoint
contrastive_llm.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("llm_base_url", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str),
     inspect.Parameter("llm_model", inspect.Parameter.KEYWORD_ONLY, default="", annotation=str)]
    + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(contrastive).parameters.values()])
register_system("contrastive-llm", description="contrastive plus an LLM rewriting the current steering turn in context "
                "(needs an OpenAI-compatible endpoint)")(contrastive_llm)
