"""The ``mmh-bench`` command line."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from .commands.options import DEFAULT_BOARD, DEFAULT_RESULTS, add_options


class CLIError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _cmd_tasks(args: argparse.Namespace) -> int:
    from .registry import all_tasks
    rows = []
    for spec in all_tasks().values():
        data = spec.section("data")
        rows.append({"name": spec.name, "family": spec.family, "track": spec.track,
                     "version": spec.version, "dim": data.get("dim"), "conditional": spec.conditional,
                     "suites": list(spec.suites), "hash": spec.hash, "description": spec.description})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from tabulate import tabulate
        print(tabulate([[r["name"], r["family"], r["track"], r["version"], r["dim"],
                         "yes" if r["conditional"] else "", ",".join(r["suites"])] for r in rows],
                       headers=["task", "family", "track", "version", "dim", "conditional", "suites"]))
    return 0


def _cmd_detectors(args: argparse.Namespace) -> int:
    from .registry import all_detectors
    rows = [{"name": name, "access": cls.access.label, "version": cls.version,
             "reference": cls.reference, "lid_estimator": hasattr(cls, "estimate"),
             "cost": cls.cost_note, "source": f"{cls.__module__}:{cls.__qualname__}",
             "summary": (cls.__doc__ or "").strip().split("\n")[0]}
            for name, cls in all_detectors().items()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from tabulate import tabulate
        print(tabulate([[r["name"], r["access"], r["cost"], r["summary"][:70]] for r in rows],
                       headers=["detector", "access", "cost", "summary"]))
    return 0


def _sd_model(inst):  # type: ignore[no-untyped-def]
    """Stable Diffusion tasks get their pipeline (from ``--model`` or the spec); others keep theirs."""
    if inst.spec.family != "stable-diffusion":
        return inst._model
    from .models.stable_diffusion import load_for_instance
    return load_for_instance(inst)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from .models.stable_diffusion import model_source
    from .runner import evaluate
    with model_source(args.model):  # SD tasks need the weights both to build and to evaluate
        report = evaluate(args.tasks, args.detectors, args.results, cache_dir=args.cache, seed=args.seed,
                          batch_size=args.batch_size, force=args.force, progress=not args.quiet,
                          model_override=_sd_model, isolation=args.isolation, timeout=args.timeout,
                          instances=None if args.instances == "none" else args.instances)
    for task, det, why in report.not_applicable:
        print(f"skipped {det} on {task}: {why}", file=sys.stderr)
    print(f"{len(report.ran)} evaluated, {len(report.skipped_current)} already current, "
          f"{len(report.failed)} failed; results in {args.results}")
    for path in report.failed:
        print(f"failed: {path}", file=sys.stderr)
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from .board import render_board
    for path in render_board(args.results, args.out):
        print(f"wrote {path}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import build_task
    from .registry import resolve_tasks
    from .models.stable_diffusion import model_source
    from .instances import test_instance_key
    if args.replicate and not args.test_secret_env:
        print("mmh-bench build: --replicate needs --test-secret-env", file=sys.stderr)
        return 2
    key = test_instance_key(args.test_secret_env, args.replicate)
    for spec in resolve_tasks(args.tasks):
        with model_source(args.model):
            inst = build_task(spec, args.cache, instance=key, force=args.force, progress=not args.quiet)
        print(json.dumps({**inst.summary(), "instance": inst.instance_info()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmh-bench",
        description="Benchmark memorization detectors for generative models under one protocol: "
                    "fixed tasks with ground-truth copy labels, one evaluator, one leaderboard.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages (e.g. tracebacks of failing detectors)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("tasks", help="list the available tasks",
                       description="List every task spec the registry finds (shipped tasks/ and MMH_BENCH_TASKS_PATH).")
    s.add_argument("--json", action="store_true", help="print JSON objects instead of a table")
    s.set_defaults(func=_cmd_tasks)

    s = sub.add_parser("detectors", help="list the registered detectors",
                       description="List detectors registered under the 'mmh_bench.detectors' entry-point group.")
    s.add_argument("--json", action="store_true", help="print JSON objects instead of a table")
    s.set_defaults(func=_cmd_detectors)

    s = sub.add_parser("run", help="evaluate detectors on tasks",
                       description="Evaluate a grid of tasks x detectors. Builds (or loads cached) tasks, "
                                   "writes one JSON result per pair, skips pairs already current.")
    add_options(s, "tasks")
    s.add_argument("--detectors", default="all",
                   help="comma-separated registered names, module:Class or path/file.py:Class (default: all); "
                        "each may carry constructor parameters, recorded with its results: "
                        "'flipd(t0=0.05,probes=8),cfg-norm(n_steps=5)' (values are TOML literals, null, "
                        "or a bare word read as a string; unknown names are refused)")
    s.add_argument("--results", default=DEFAULT_RESULTS, help=f"results folder (default: {DEFAULT_RESULTS})")
    add_options(s, "cache", "seed", "batch-size")
    s.add_argument("--force", action="store_true", help="re-evaluate pairs whose results are current")
    s.add_argument("--isolation", choices=("auto", "sealed", "in-process"), default="auto",
                   help="sealed: each detector runs in a sandboxed worker that holds only what its access "
                        "grants; in-process: in this process (trusted code only); auto (default): sealed "
                        "for all but the shipped baselines")
    s.add_argument("--timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="sealed runs only: a (task, detector) pair running longer fails (default: no limit)")
    s.add_argument("--instances", default="leaderboard/instances", metavar="DIR",
                   help="published instances (default: the board's, leaderboard/instances): a task whose spec "
                        "has one there is evaluated on it, verified byte for byte; other tasks on this "
                        "machine's own build. 'none': always this machine's dev build")
    add_options(s, "model", "quiet")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("build", help="build (or verify the cache of) tasks without evaluating",
                       description="Build tasks and print their summaries as JSON lines.")
    s.add_argument("tasks", help="comma-separated task names, suite:NAME, or .toml paths")
    add_options(s, "cache")
    s.add_argument("--force", action="store_true", help="rebuild even when a valid cache exists")
    s.add_argument("--test-secret-env", default=None, metavar="VAR",
                   help="maintainers: build the TEST instance whose seed and placement follow the secret "
                        "held in environment variable VAR (>= 16 characters; never written anywhere). "
                        "Default: the dev instance, from the spec's own seed")
    s.add_argument("--replicate", type=int, default=0, metavar="R",
                   help="with --test-secret-env: build test replicate R (0 .. [instances] test_replicates - 1) "
                        "of that secret (default 0)")
    add_options(s, "model", "quiet")
    s.set_defaults(func=_cmd_build)

    s = sub.add_parser("leaderboard", help="render the leaderboard from results",
                       description="Render the leaderboard from a results folder: README.md (Markdown), "
                                   "index.html (static, sortable, filterable) and ROC / cost plots.")
    s.add_argument("--results", default=DEFAULT_RESULTS, help=f"results folder (default: {DEFAULT_RESULTS})")
    s.add_argument("--out", default=DEFAULT_BOARD, help=f"output folder (default: {DEFAULT_BOARD})")
    s.set_defaults(func=_cmd_leaderboard)

    import importlib
    from .commands import MODULES
    for mod in MODULES:
        importlib.import_module(f".commands.{mod}", __package__).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    from . import builders  # noqa: F401  (registers task builders)
    from .build import BuildError
    from .registry import RegistryError
    from .results import ResultError
    from .spec import SpecError
    try:
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
