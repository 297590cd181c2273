"""``mmh-bench run``: evaluate a grid of tasks x detectors, one result file per pair."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import DEFAULT_RESULTS, LIMITS, add_options, instances_option, whole_number


def _sd_model(inst):  # type: ignore[no-untyped-def]
    """Stable Diffusion tasks get their pipeline (from ``--model`` or the spec); others keep theirs."""
    if inst.spec.family != "stable-diffusion":
        return inst.attached_model
    from mmh_bench.task.models.stable_diffusion import load_for_instance
    return load_for_instance(inst)


def _cmd_run(args: argparse.Namespace) -> int:
    from mmh_bench.task.fresh import PoolError, fresh_pool
    from .errors import CLIError
    if args.instances != "fresh" and (args.fresh_pool or args.fresh_replicates is not None):
        raise CLIError("--fresh-pool and --fresh-replicates go with --instances fresh")
    if args.instances != "fresh":
        return _evaluate(args, instances_option(args.instances))
    from mmh_bench.evaluation.sealed.selftest import SandboxUnavailable, require_sandbox
    try:  # a held-out score counts only where no detector could reach the fresh instances
        require_sandbox("mmh-bench run --instances fresh")
    except SandboxUnavailable as exc:
        raise CLIError(str(exc)) from None
    try:  # held-out instances: a private temporary pool (removed afterwards) unless one is kept
        with fresh_pool(args.fresh_pool, args.fresh_replicates) as pool:
            return _evaluate(args, pool)
    except PoolError as exc:
        raise CLIError(str(exc)) from None


def _evaluate(args: argparse.Namespace, instances: Any) -> int:
    from functools import partial
    from mmh_bench.task.models.stable_diffusion import model_source
    from mmh_bench.evaluation.engine import ClusterError, evaluate_parallel
    from .errors import CLIError
    try:  # SD tasks need the weights both to build and to evaluate, on every worker
        report = evaluate_parallel(args.tasks, args.detectors, args.results, cluster=args.cluster,
                                   workers=args.workers, context=partial(model_source, args.model),
                                   cache_dir=args.cache, seed=args.seed, batch_size=args.batch_size,
                                   force=args.force, progress=not args.quiet, model_override=_sd_model,
                                   isolation=args.isolation, timeout=args.timeout,
                                   instances=instances)
    except ClusterError as exc:
        raise CLIError(str(exc)) from None
    for task, det, why in report.not_applicable:
        print(f"skipped {det} on {task}: {why}", file=sys.stderr)
    print(f"{len(report.ran)} evaluated, {len(report.skipped_current)} already current, "
          f"{len(report.failed)} failed; results in {args.results}")
    for path in report.failed:
        print(f"failed: {path}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
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
    add_options(s, "isolation", *LIMITS)
    s.add_argument("--instances", default=None, metavar="DIR",
                   help="public instances (default: the board's, leaderboard/instances, where this checkout has "
                        "it): a task whose spec has one there is evaluated on it, verified byte for byte; other "
                        "tasks on this machine's own build. 'none': always this machine's dev build. A DIR that "
                        "does not exist is an error. 'fresh': held-out instances, built for this run from a "
                        "secret drawn now and never written, kept in a private temporary folder that is removed "
                        "afterwards (results record instance kind 'fresh')")
    s.add_argument("--fresh-pool", default=None, metavar="DIR",
                   help="with --instances fresh: keep the held-out instances in DIR (outside any repository; "
                        "created 0700) and reuse those it holds, so a maintainer builds them once per release "
                        "and each verification only evaluates")
    s.add_argument("--fresh-replicates", type=lambda t: whole_number(t, "--fresh-replicates"), default=None, metavar="N",
                   help="with --instances fresh: held-out replicates per task (default: the spec's "
                        "[instances] test_replicates)")
    add_options(s, "cluster", "workers", "model", "quiet")
    s.set_defaults(func=_cmd_run)
