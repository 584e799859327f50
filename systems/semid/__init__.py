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


def _build_heeding(name: str, **params: Any) -> Any:
    from systems.semid.dated import DatedSemIdRecommender

    return DatedSemIdRecommender(name, **params)


@register_system(
    "semid",
    description="Semantic-id LLM: RQ-VAE ids, SmolLM2 (first 4 layers) + LoRA trained on whole user sequences, a learned vector per history item and an item head beside the codes, distilled from SASRec, trie-constrained decoding in which the codes pick the first id level and the item head the rest (seed 000); a satisfaction head on the whole base LLM's reading of the request weighs every item by whether it satisfies it, and a date said without a number (the last few years, after a well-known event) is read exactly",
)
def semid(
    base_model: str = "smollm2",
    embedder: str = "minilm",
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
    lr_a: float = 2e-2,
    lr_b: float = 5e-4,
    lora_r: int = 16,
    max_len: int = 128,
    max_history: int = 50,
    bf16: bool = True,
    infer_bf16: bool = True,
    beam: int = 10,
    decoder: str = "trie",
    catalog_chunk: int = 32,
    rec_batch: int = 16,
    explain_top: int = 0,
    threads: int = 0,
    recipe: str = "seq",
    train_layers: int = 0,
    teacher: str = "sasrec",
    teacher_args: str = "epochs=3",
    distill: float = 0.5,
    epochs: float = 3.0,
    window: int = 200,
    overlap: int = 50,
    batch_tokens: int = 2048,
    lr: float = 5e-3,
    steer_every: int = 4,
    steer_batch: int = 12,
    steer_history: int = 20,
    checkpoint_every: int = 20,
    val_users: int = 150,
    val_every: int = 90,
    constrain: bool = False,
    int8: bool = False,
    max_history_infer: int = 12,
    layers: int = 4,
    reader_steps: int = 600,
    reader_batch: int = 16,
    reader_lr: float = 2e-3,
    reader_r: int = 16,
    reader_layers: int = 30,
    item_embed: bool = True,
    item_head: bool = True,
    item_mix: float = 5.0,
    lm_levels: int = 1,
) -> Any:
    return _build_heeding("semid", **{k: v for k, v in locals().items()})


register_variant(
    "semid-align",
    _build,
    like=semid,
    defaults={"steps_a": 360, "steps_b": 0, "explain": 0.0, "embedder": "contrastive", "lora_r": 8, "max_history": 10, "recipe": "prompt",
              "lr_a": 3e-3, "layers": 0, "item_embed": False, "item_head": False},
    description="Semantic-id LLM, embedding-only alignment: new rows projected from item embeddings, stage A only (seed 002)",
)

def _build_constrain(name: str, **params: Any) -> Any:
    from systems.semid.dated import DatedReaderRecommender

    return DatedReaderRecommender(name, **params)


register_variant(
    "semid-constrain",
    _build_constrain,
    like=semid,
    defaults={"constrain": True},
    description="Semantic-id LLM that first reads the request as a card constraint (grammar over the card's constraints, each ordinal one also negated), then decodes only items its likeliest readings make 90 % sure to satisfy it, weighed by plain semid's satisfaction head (the head alone when the reader is unsure or the head reads the request the other way); a date said without a number is read exactly",
)

register_variant(
    "semid-poc",
    _build,
    like=semid,
    defaults={"embedder": "minilm", "init": "mean", "mix": "content", "lora_r": 8, "max_history": 10, "recipe": "prompt",
              "lr_a": 3e-3, "layers": 0, "item_embed": False, "item_head": False},
    description="Semantic-id LLM trained on content only (no interaction logs), cold-start catalog (seeds 003/004)",
)


@register_system(
    "semid-tiger",
    description="From-scratch semantic-id decoder (TIGER-style, decoder-only small transformer over the same codes) with an item head beside the codes, distilled from the converged SASRec (the sasrec row's own model), MiniLM utterance prefix",
)
def semid_tiger(
    embedder: str = "minilm",
    widths: str = "",
    quantizer: str = "rqvae",
    rqvae_steps: int = 1500,
    spread: bool = True,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    dropout: float = 0.2,
    window: int = 50,
    epochs: int = 8,
    patience: int = 8,
    lr: float = 2e-3,
    weight_decay: float = 0.01,
    batch_tokens: int = 8192,
    val_users: int = 500,
    steer_steps: int = 300,
    steer_batch: int = 16,
    steer_history: int = 20,
    steer_lr: float = 5e-3,
    max_history: int = 50,
    beam: int = 40,
    rec_batch: int = 64,
    threads: int = 0,
    teacher: str = "sasrec",
    teacher_args: str = "epochs=100",
    distill: float = 0.5,
    item_embed: bool = True,
    item_head: bool = True,
    item_mix: float = 1.0,
    lm_levels: int = 0,
) -> Any:
    from systems.semid.scratch import ScratchDecoder

    return ScratchDecoder("semid-tiger", **{k: v for k, v in locals().items() if k != "ScratchDecoder"})
