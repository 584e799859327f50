"""talkwalk-bench judge-calibrate: score a judge endpoint on known-answer cases (no system)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from talkwalk_bench.argtypes import env_flag, whole


def add_parser(sub) -> None:
    p = sub.add_parser(
        "judge-calibrate",
        help="measure an LLM judge on known-answer cases (accuracy, position bias, score variance vs chance)",
        description="Run the judge_calibration task against an OpenAI-compatible endpoint and say whether the judge "
        "does better than chance. Same as `talkwalk-bench run --task judge_calibration --judge-base-url URL`.",
    )
    p.add_argument("--judge-base-url", default=os.environ.get("TALKWALK_JUDGE_BASE_URL"),
                   help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8321/v1 (env TALKWALK_JUDGE_BASE_URL)")
    p.add_argument("--judge-model", default=os.environ.get("TALKWALK_JUDGE_MODEL"),
                   help="model name; default: the one model the endpoint lists at /models (env TALKWALK_JUDGE_MODEL)")
    p.add_argument("--task", default=os.environ.get("TALKWALK_CALIBRATION_TASK", "judge_calibration"),
                   help="calibration spec name or file (env TALKWALK_CALIBRATION_TASK, default judge_calibration)")
    p.add_argument("--dataset", default=os.environ.get("TALKWALK_DATASET"), help="default: the spec's (env TALKWALK_DATASET)")
    p.add_argument("--card", default=os.environ.get("TALKWALK_CARD"), help="dataset card YAML (env TALKWALK_CARD)")
    p.add_argument("--steering-file", default=os.environ.get("TALKWALK_STEERING_FILE"),
                   help="phrasings for the requests (env TALKWALK_STEERING_FILE)")
    p.add_argument("--seed", type=whole("--seed", env="TALKWALK_SEED", minimum=0), default=os.environ.get("TALKWALK_SEED", "0"),
                   help="seed for the cases (env TALKWALK_SEED, default 0)")
    p.add_argument("--output", default=os.environ.get("TALKWALK_OUTPUT"),
                   help="result JSON; default runs/judge_calibration/judge-MODEL__DATASET__seedN.json (env TALKWALK_OUTPUT)")
    p.add_argument("-O", "--option", action="append", metavar="KEY=VALUE", help="judge option, repeatable (e.g. -O judge_timeout=600)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted calibration")
    p.add_argument("--force", action="store_true", help="overwrite an existing result")
    p.add_argument("--no-progress", action="store_true", default=env_flag("TALKWALK_NO_PROGRESS"), help="hide progress bars")
    p.set_defaults(func=cmd_judge_calibrate)


def cmd_judge_calibrate(a: argparse.Namespace) -> int:
    from talkwalk_bench.cli import _judge_options, _print_result, parse_kv
    from talkwalk_bench.judge.calibration import CHANCE, MAIN, verdict
    from talkwalk_bench.tasks.runner import RunConfig, run

    res = run(RunConfig(system=None, task=a.task, dataset=a.dataset, seed=a.seed, output=Path(a.output) if a.output else None,
                        resume=a.resume, force=a.force, progress=not a.no_progress, card=Path(a.card) if a.card else None,
                        steering_file=Path(a.steering_file) if a.steering_file else None,
                        options=_judge_options(a, parse_kv(a.option, "-O"))))
    _print_result(res, res.__dict__.get("_path"))
    if res.status != "success":
        print(f"error: {res.error}", file=sys.stderr)
        return 1
    m = res.metrics.get(MAIN)
    v = verdict(m.model_dump() if m is not None else None)
    if m is not None and m.value is not None:
        print(f"verdict: {v} ({MAIN} {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}], n={m.n}, chance {CHANCE[MAIN]:.2f})")
    else:
        print(f"verdict: {v}")
    return 0
