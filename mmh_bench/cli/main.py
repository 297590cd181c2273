"""The ``mmh-bench`` command line: the top-level parser and error handling.

Each command is a module of :mod:`mmh_bench.cli` with ``register(subparsers)`` that adds its parser
and sets ``func=handler``; a handler takes the parsed arguments and returns an exit status. Add a
command by writing its module and naming it in :data:`COMMANDS` (the order of ``--help``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from .errors import CLIError

COMMANDS: tuple[str, ...] = ("tasks", "detectors", "run", "build", "leaderboard", "dedup", "mitigate",
                             "publish", "show", "submit", "validate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmh-bench",
        description="Benchmark memorization detectors for generative models under one protocol: "
                    "fixed tasks with ground-truth copy labels, one evaluator, one leaderboard.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages (e.g. tracebacks of failing detectors)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for mod in COMMANDS:
        importlib.import_module(f".{mod}", __package__).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    from mmh_bench.task.build import BuildError
    from mmh_bench.registry import RegistryError
    from mmh_bench.leaderboard.store import ResultError
    from mmh_bench.task.spec import SpecError
    try:
        from .options import apply_limits
        apply_limits(args)
        return int(args.func(args) or 0)
    except (CLIError, RegistryError, SpecError, ResultError, BuildError, ValueError, FileNotFoundError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mmh-bench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmh-bench: interrupted; finished results are saved, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
