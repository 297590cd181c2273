"""``mmh-bench publish TASK DIR`` and ``mmh-bench pull SOURCE``: task instances as data.

``publish`` builds the task (or loads it from the cache) and writes the instance as a checksummed
folder ready to upload as a Hugging Face Hub dataset; ``pull`` verifies such a folder (or Hub
dataset) byte for byte and installs it into the build cache. See docs/INSTANCES.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .options import add_options


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cmd_publish(args: argparse.Namespace) -> int:
    from mmh_bench.task.build import build_task
    from mmh_bench.task.models.stable_diffusion import model_source
    from mmh_bench.task.publish import publish_instance
    from mmh_bench.registry import get_task

    spec = get_task(args.task)
    with model_source(args.model):
        inst = build_task(spec, args.cache, progress=not args.quiet)
    out = publish_instance(inst, args.dir)
    print(json.dumps({"published": str(out), "task": spec.name, "kind": inst.instance_kind,
                      "data_hash": inst.data_hash, "bytes": _size(out)}))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from mmh_bench.task.publish import pull_instance

    inst = pull_instance(args.source, args.cache)
    print(json.dumps({"installed": str(inst.root), "task": inst.spec.name, "kind": inst.instance_kind,
                      "data_hash": inst.data_hash, "spec_hash": inst.spec.hash}))
    return 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "publish", help="write a built task instance as a publishable, checksummed folder",
        description="Build TASK (or load it from the cache) and write its instance to DIR: the arrays "
                    "as Arrow datasets (samples, train, heldout), the model files as built, the spec, "
                    "a dataset card and instance.json with the data hash and every file's sha256. "
                    "Upload DIR as a Hugging Face Hub dataset, or share it as a folder.")
    s.add_argument("task", help="task name or path to a .toml spec")
    s.add_argument("dir", help="output folder (must not exist, or be empty)")
    add_options(s, "cache", "model", "quiet")
    s.set_defaults(func=cmd_publish)

    s = subparsers.add_parser(
        "pull", help="verify a published task instance and install it into the cache",
        description="Verify a published instance (every file's sha256, then the data hash of the "
                    "arrays rebuilt from Arrow) and install it as <cache>/<task>/instances/<hash>/. "
                    "Prints the installed folder and the instance's identity as JSON.")
    s.add_argument("source", help="a published folder, or a Hugging Face Hub dataset id owner/name[@revision]")
    add_options(s, "cache")
    s.set_defaults(func=cmd_pull)
