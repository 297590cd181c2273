"""``mmh-bench build``: build (or verify the cache of) tasks without evaluating."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .options import add_options


def _cmd_build(args: argparse.Namespace) -> int:
    from mmh_bench.task.build import build_task
    from mmh_bench.registry import resolve_tasks
    from mmh_bench.task.models.stable_diffusion import model_source
    from mmh_bench.task.instances import test_instance_key
    if args.replicate and not args.test_secret_env:
        print("mmh-bench build: --replicate needs --test-secret-env", file=sys.stderr)
        return 2
    key = test_instance_key(args.test_secret_env, args.replicate)
    for spec in resolve_tasks(args.tasks):
        with model_source(args.model):
            inst = build_task(spec, args.cache, instance=key, force=args.force, progress=not args.quiet)
        print(json.dumps({**inst.summary(), "instance": inst.instance_info()}))
    return 0


def register(sub: Any) -> None:
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
