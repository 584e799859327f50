"""Jinja2 environment for the HTML pages (leaderboard site, episode viewer); templates live in ``templates/``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, d=4: "n/a" if v is None else f"{v:.{d}f}"
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
