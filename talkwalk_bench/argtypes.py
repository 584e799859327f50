"""Argument types that check a value (from the command line or its environment variable) before any work.

Defaults read from the environment are passed to argparse as strings, so
argparse checks them with the same type as a value typed on the command line,
and only for the command being run (a bad ``TALKWALK_SEED`` does not break ``list``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: PROG: MESSAGE; see PROG --help``."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def whole(name: str, *, env: str | None = None, minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An int type for argparse; the message names the option, its environment variable and the range."""
    source = f" (from {name} or ${env})" if env else ""
    if minimum is not None and maximum is not None:
        want = f"a whole number from {minimum} to {maximum}"
    elif minimum is not None:
        want = f"a whole number >= {minimum}"
    else:
        want = "a whole number"

    def parse(raw: str) -> int:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {raw!r}: expected {want}{source}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{name} {value}: expected {want}{source}")
        return value

    parse.__name__ = "int"
    return parse


def number(name: str, *, env: str | None = None, minimum: float | None = None) -> Callable[[str], float]:
    """A finite float type for argparse, at least ``minimum``."""
    source = f" (from {name} or ${env})" if env else ""
    want = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")

    def parse(raw: str) -> float:
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {raw!r}: expected {want}{source}") from None
        if value != value or value in (float("inf"), float("-inf")) or (minimum is not None and value < minimum):
            raise argparse.ArgumentTypeError(f"{name} {raw}: expected {want}{source}")
        return value

    parse.__name__ = "float"
    return parse


def env(name: str, default: Any = None) -> Any:
    return os.environ.get(name, default)


def env_flag(name: str) -> bool:
    """A boolean environment variable: 1/true/yes/on or 0/false/no/off (or unset); anything else is an error."""
    from talkwalk_bench.errors import BenchError

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return False
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise BenchError(f"${name} is {raw!r}; set it to 1 or 0 (or unset it)")
