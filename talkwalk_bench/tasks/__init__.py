"""Tasks: specs, families and the runner."""

from talkwalk_bench.tasks.base import FAMILIES, Episode, Family, TaskContext, register_family
from talkwalk_bench.tasks.spec import TaskSpec, load_spec, load_spec_file, spec_files

__all__ = ["FAMILIES", "Episode", "Family", "TaskContext", "TaskSpec", "load_spec", "load_spec_file", "register_family", "spec_files"]
