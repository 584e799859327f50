"""A tiny randomly initialised Llama and a word-level tokenizer, for tests and smoke runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# a toy id space for decoder tests: 4-level ids over widths (3, 4, 4, 2), two collisions
TOY_WIDTHS = (3, 4, 4, 2)
TOY_SIDS = [
    (0, 0, 0, 0),
    (0, 0, 0, 1),
    (0, 1, 2, 0),
    (0, 3, 3, 0),
    (1, 0, 1, 0),
    (1, 2, 2, 0),
    (1, 2, 3, 0),
    (2, 1, 0, 0),
    (2, 1, 0, 1),
    (2, 3, 1, 0),
]

WORDS = (
    "user history request which film is this what the genre of a an and with for me something "
    "i want show funny scary old new recent film films movie action comedy drama romance horror "
    "sci-fi thriller war western children's crime documentary fantasy musical mystery adventure "
    "animation film-noir , . : ; ? ! \" '"
).split()


def tiny_tokenizer(extra_words: tuple[str, ...] = ()) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {
        w: i
        for i, w in enumerate(
            ["<unk>", "<pad>", "<s>", "</s>", *dict.fromkeys([*WORDS, *extra_words])]
        )
    }
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_llama(vocab_size: int, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
    )
    return LlamaForCausalLM(cfg).eval()


def save_tiny(path: Path, *, seed: int = 0) -> Path:
    """Write a tiny model folder usable as ``-S base_model=PATH``."""
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok), seed=seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
