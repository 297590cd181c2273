"""Command-line options shared by several subcommands, defined once so they read the same everywhere."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

DEFAULT_RESULTS = "leaderboard/results"
DEFAULT_BOARD = "leaderboard"


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "tasks": (("--tasks",), dict(default="suite:default",
                                 help="comma-separated task names, suite:NAME, or .toml paths "
                                      "(default: suite:default)")),
    "cache": (("--cache",), dict(default=None, help="build cache folder "
                                                    "(default: $MMH_BENCH_CACHE or ~/.cache/mmh-bench)")),
    "seed": (("--seed",), dict(type=int, default=0, help="detector seed (default: 0)")),
    "batch-size": (("--batch-size",), dict(type=int, default=512,
                                           help="samples per detector call (default: 512)")),
    "board": (("--board",), dict(default=DEFAULT_BOARD, help=f"leaderboard folder (default: {DEFAULT_BOARD})")),
    "model": (("--model",), dict(default=None, metavar="PATH_OR_ID",
                                 help="Stable Diffusion weights for stable-diffusion tasks: a local diffusers "
                                      "folder or a hub id in the Hugging Face cache (default: the id named "
                                      "in each task spec)")),
    "quiet": (("-q", "--quiet"), dict(action="store_true", help="no progress bars")),
    "json": (("--json",), dict(action="store_true", help="print JSON objects instead of a table")),
    "cluster": (("--cluster",), dict(default=None, metavar="ADDRESS",
                                     help="run on the Dask scheduler at ADDRESS (e.g. tcp://host:8786; "
                                          "docs/ENGINE.md); exits 2 when it cannot be reached within 10 s")),
    "workers": (("--workers",), dict(type=lambda text: whole_number(text, "--workers"), default=None, metavar="N",
                                     help="without --cluster: a local cluster of N worker processes, one "
                                          "thread each; 0 or 1: serially in this process (default: "
                                          "$MMH_BENCH_WORKERS, else one worker per core with at least 2 "
                                          "cores and more than one pair to evaluate, else serial)")),
    "isolation": (("--isolation",), dict(choices=("auto", "sealed", "in-process"), default="auto",
                                         help="sealed: each detector (mitigator) runs in a sandboxed worker that "
                                              "holds only what its access grants; in-process: in this process "
                                              "(trusted code only); auto (default): sealed for all but the "
                                              "shipped baselines")),
    "timeout": (("--timeout",), dict(type=_positive_seconds, default=None, metavar="SECONDS",
                                     help="sealed runs only: a (task, detector or mitigator setting) pair running "
                                          "longer fails (default: $MMH_BENCH_SANDBOX_TIMEOUT, else 3600)")),
    "memory-limit": (("--memory-limit",), dict(type=lambda text: whole_number(text, "--memory-limit"), default=None,
                                               metavar="MB", help="sealed runs only: heap a worker may allocate "
                                               "(default: $MMH_BENCH_SANDBOX_MEMORY_MB, else half the machine's "
                                               "memory, at least 2048)")),
    "process-limit": (("--process-limit",), dict(type=lambda text: whole_number(text, "--process-limit"), default=None,
                                                 metavar="N", help="sealed runs only: processes and threads of the "
                                                 "sandbox's user (default: $MMH_BENCH_SANDBOX_PROCESSES, else 1024)")),
    "disk-limit": (("--disk-limit",), dict(type=lambda text: whole_number(text, "--disk-limit"), default=None,
                                           metavar="MB", help="sealed runs only: what a worker may write to its "
                                           "output folder and /tmp together (default: $MMH_BENCH_SANDBOX_DISK_MB, "
                                           "else 4096)")),
}
#: the sandbox's limits, as one group of options (applied by :func:`apply_limits`)
LIMITS = ("timeout", "memory-limit", "process-limit", "disk-limit")


def apply_limits(args: argparse.Namespace) -> None:
    """Make the limit options the sandbox's for this run (and for the local workers it starts)."""
    from mmh_bench.evaluation.sealed.bwrap import set_limit_env
    set_limit_env(memory_mb=getattr(args, "memory_limit", None), processes=getattr(args, "process_limit", None),
                  disk_mb=getattr(args, "disk_limit", None), timeout=getattr(args, "timeout", None))


def instances_option(value: str | None) -> str | None:
    """The published-instances folder a command was given: ``None`` (the option left out) is the
    board's folder when this checkout has one; ``"none"`` means always this machine's dev build; a
    folder the user named that does not exist is bad input (an error naming it, exit status 2),
    never a silent fall-back to another instance."""
    from mmh_bench.task.publish import DEFAULT_INSTANCES
    from .errors import CLIError
    if value is None:
        return DEFAULT_INSTANCES
    if value == "none":
        return None
    if not Path(value).is_dir():
        raise CLIError(f"--instances {value}: no such folder (give a folder of published instances, "
                       "'none' for this machine's dev build, or 'fresh' where the command takes it)")
    return value


def whole_number(text: str, flag: str) -> int:
    """A command-line count (>= 0), refused with a message naming ``flag`` otherwise."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{flag} takes a whole number >= 0, got {text!r}")
    return int(text)


def add_options(parser: Any, *names: str, **overrides: dict[str, Any]) -> None:
    """Add the shared options ``names`` to ``parser``; ``overrides[name]`` changes keyword arguments
    (e.g. ``{"batch_size": {"default": None, "help": ...}}``, dashes written as underscores)."""
    for name in names:
        flags, kwargs = _OPTIONS[name]
        parser.add_argument(*flags, **{**kwargs, **overrides.get(name.replace("-", "_"), {})})


def print_listing(rows: list[dict[str, Any]], as_json: bool, table: Sequence[Sequence[Any]],
                  headers: Sequence[str]) -> int:
    """What the listing commands print: ``rows`` as JSON, or ``table`` under ``headers``."""
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        from tabulate import tabulate
        print(tabulate(table, headers=list(headers)))
    return 0
