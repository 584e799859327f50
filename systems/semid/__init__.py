"""Semantic-id LLM recommenders (seeds 000, 002, 003/004). See docs/semid.md.

Registers ``semid`` (stage A then LoRA stage B), ``semid-align`` (stage A only,
embedding rows initialised by projection) and ``semid-poc`` (content-only
training, no interaction logs). Heavy imports happen inside the factories.
"""

from __future__ import annotations

from typing import Any

from talkwalk_bench.registry import register_system, register_variant


def _build(name: str, **params: Any) -> Any:
    from systems.semid.system import SemIdRecommender

    return SemIdRecommender(name, **params)


@register_system(
    "semid",
    description="Semantic-id LLM: RQ-VAE ids, embedding warm-up then LoRA, trie-constrained beam search (seed 000)",
)
def semid(
    base_model: str = "smollm2",
    embedder: str = "contrastive",
    widths: str = "",
    quantizer: str = "rqvae",
    rqvae_steps: int = 1500,
    spread: bool = True,
    init: str = "projected",
    mix: str = "full",
    explain: float = 0.05,
    steps_a: int = 160,
    steps_b: int = 280,
    batch_size: int = 8,
    lr_a: float = 3e-3,
    lr_b: float = 5e-4,
    lora_r: int = 8,
    max_len: int = 128,
    max_history: int = 10,
    bf16: bool = True,
    infer_bf16: bool = True,
    beam: int = 10,
    decoder: str = "trie",
    catalog_chunk: int = 32,
    rec_batch: int = 16,
    explain_top: int = 0,
    threads: int = 0,
) -> Any:
    return _build("semid", **{k: v for k, v in locals().items()})


register_variant(
    "semid-align",
    _build,
    like=semid,
    defaults={"steps_a": 360, "steps_b": 0, "explain": 0.0},
    description="Semantic-id LLM, embedding-only alignment: new rows projected from item embeddings, stage A only (seed 002)",
)

register_variant(
    "semid-poc",
    _build,
    like=semid,
    defaults={"embedder": "minilm", "init": "mean", "mix": "content"},
    description="Semantic-id LLM trained on content only (no interaction logs), cold-start catalog (seeds 003/004)",
)
