"""vLLM decoder for GPU hosts (``-S decoder=vllm``), plus ``export_merged``.

vLLM is not part of this environment: it pins its own torch and transformers
versions and has no CPU kernels, so it goes in its own environment on a GPU
host (``pip install vllm`` there, then this project). The fine-tuned model is
handed over as a plain transformers folder: ``export_merged`` merges the LoRA
weights into the base model and saves it with the extended tokenizer (the
semantic-id tokens are ordinary added tokens there) and the id table.

Decoding is grammar-guided *sampling*, the same procedure as the outlines
backend (``outlines_backend.sample_distinct``): vLLM's structured outputs
with the ``guidance`` (llguidance) backend and ``outlines_backend.id_grammar``,
a lark grammar whose terminals are the id tokens' ids; ``n`` samples per
request and round, rounds repeat without the ids already returned until ``k``
distinct items. vLLM's beam search does not take structured outputs.

Scores: the sum of the sampled id tokens' log-probabilities as vLLM reports
them (``cumulative_logprob``: the model's distribution over the full
vocabulary, not renormalised over the valid ids as ``decode.py`` does), so
they order items but are not comparable to ``-S decoder=trie`` scores.

Written against vLLM's ``StructuredOutputsParams`` API (vLLM >= 0.12) and not
run here: no GPU host with vLLM was available (see docs/semid.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from systems.semid.decode import PrefixTrie, Sid
from systems.semid.outlines_backend import Job, Samples, sample_distinct
from talkwalk_bench.errors import BenchError


def check_available() -> None:
    """Raise a one-line BenchError when vLLM is not importable (nothing is imported)."""
    if importlib.util.find_spec("vllm") is None:
        raise BenchError(
            "-S decoder=vllm needs vLLM, which runs on a GPU host in its own environment "
            "(pip install vllm there, then this project); see docs/semid.md, Decoding"
        )


def export_merged(system: Any, path: str | Path) -> Path:
    """Save ``system.model`` (LoRA merged in) and ``system.tok`` as a transformers folder.

    The folder loads with ``AutoModelForCausalLM``/``AutoTokenizer`` and with
    vLLM; the added semantic-id tokens keep their ids. When the system has an
    id table it is written as ``semid_table.json``. The LoRA merge happens on a
    copy, so the system's own model is left as it is. Written to a temporary
    folder, then renamed.
    """
    import copy

    path = Path(path)
    model = system.model
    if callable(getattr(model, "merge_and_unload", None)):  # a peft model: merge on a copy
        model = copy.deepcopy(model).merge_and_unload()
    if getattr(model, "hf_quantizer", None) is not None:  # GGUF-loaded: save dequantised weights
        if model is system.model:
            model = copy.deepcopy(model)
        model.hf_quantizer.remove_quantization_config(model)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    system.tok.save_pretrained(tmp)
    table = getattr(system, "table", None)
    if table is not None:
        (tmp / "semid_table.json").write_text(json.dumps(table.to_json()))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


class VllmSampler:
    """``decode(prompts, excludes, k)`` on a vLLM engine; same result shape as ``decode.beam_search_batch``."""

    def __init__(
        self,
        model_dir: str | Path,
        trie: PrefixTrie,
        level_tokens: Sequence[Sequence[int]],
        *,
        seed: int = 0,
        oversample: int = 2,
        **engine_args: Any,
    ) -> None:
        check_available()
        from vllm import LLM

        self.trie, self.level_tokens = trie, [list(t) for t in level_tokens]
        self.seed, self.oversample = seed, oversample
        self.llm = LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            seed=seed,
            structured_outputs_config={"backend": "guidance"},
            **engine_args,
        )

    @classmethod
    def from_system(cls, system: Any, **engine_args: Any) -> VllmSampler:
        """Export the fitted system's model next to its training cache (once), then load it in vLLM."""
        dtype = str(next(system.model.parameters()).dtype).replace("torch.", "")
        root = Path(system.fit_info.get("cache_dir") or ".")
        folder = root / f"merged-{dtype}"
        if not (folder / "config.json").exists():
            export_merged(system, folder)
        return cls(folder, system.trie, system.level_tokens, **engine_args)

    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        excludes: Sequence[Iterable[Sid]],
        *,
        k: int,
    ) -> list[list[tuple[Sid, float]]]:
        from vllm import SamplingParams

        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as e:
            raise BenchError(
                "-S decoder=vllm needs vLLM >= 0.12 (StructuredOutputsParams); upgrade vllm "
                "in its environment"
            ) from e
        rounds = [0] * len(prompts)
        L = self.trie.length

        def sample(jobs: list[Job]) -> list[Samples]:
            params = []
            for i, grammar, n in jobs:
                rounds[i] += 1
                params.append(
                    SamplingParams(
                        n=n,
                        temperature=1.0,
                        top_p=1.0,
                        max_tokens=L,
                        logprobs=0,
                        seed=zlib.crc32(repr((self.seed, list(prompts[i]), rounds[i])).encode()),
                        structured_outputs=StructuredOutputsParams(grammar=grammar),
                    )
                )
            outs = self.llm.generate(
                [{"prompt_token_ids": list(prompts[i])} for i, _, _ in jobs],
                params,
                use_tqdm=False,
            )
            return [[(list(c.token_ids), c.cumulative_logprob) for c in o.outputs] for o in outs]

        return sample_distinct(
            sample, self.trie, self.level_tokens, list(excludes), k=k, oversample=self.oversample
        )
