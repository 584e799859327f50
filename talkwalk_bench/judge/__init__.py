"""LLM-as-judge through the openai client: rubrics, a persistent cache, a local endpoint."""

from talkwalk_bench.judge.cache import JudgeCache
from talkwalk_bench.judge.client import Judge, JudgeConfig, Judgment
from talkwalk_bench.judge.rubrics import ParseError, Rubric, load_rubric

__all__ = ["Judge", "JudgeCache", "JudgeConfig", "Judgment", "ParseError", "Rubric", "load_rubric"]
