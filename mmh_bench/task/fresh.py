"""Held-out instances: test instances built from a secret drawn for one evaluation and never kept.

The board's test instances are published, labels included, so a detector can embed their answers
(a table of hashes of the published positives scores AUROC 1.0 on them, sealed, reading nothing but
the samples). Official numbers therefore come from *fresh* instances: the spec's design placed by a
secret that this process draws (``secrets.token_hex``), holds only in memory and forgets, built into
a *pool* folder that is never published and never part of the repository. Anyone can run it
(``mmh-bench run --instances fresh``); nobody, the runner included, can rebuild its instances.

A pool is a build cache that holds only fresh builds (``<pool>/<task>/<spec hash>-fresh-<id>/``).
By default it is a private temporary folder (mode 0700) removed when the evaluation ends; a
maintainer may keep one (``--fresh-pool DIR``) so that building, the expensive part, happens once
per release and each verification only evaluates. A kept pool must stay outside the repository
and the published tree (checked), and out of every sandboxed detector's view: the sandbox shows a
worker only an allow-list (interpreter, packages, its view, its output), and the pool is hidden
from the fallback sandbox too.
"""
from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .build import BuildError, build_task, load_instance
from .instance import TaskInstance
from .instances import InstanceKey, test_replicates
from .spec import TaskSpec

log = logging.getLogger(__name__)

FRESH = "fresh"
#: secrets drawn for one replicate before a build that keeps missing the label balance is an error
MAX_DRAWS = 3
#: bytes of randomness in a fresh secret (32 hex characters, more than MIN_SECRET_CHARS)
SECRET_BYTES = 16


class PoolError(ValueError):
    """A fresh pool cannot be used where it was asked for (e.g. inside the repository)."""


@dataclass(frozen=True)
class FreshPool:
    """Where a run's fresh instances live: a build cache holding only fresh builds. Passed as
    ``instances=`` to :func:`mmh_bench.evaluation.runner.evaluate` (and the parallel engine),
    which fill it for the tasks they evaluate and then evaluate on every instance it holds."""

    root: str
    #: fresh replicates per task (None: the spec's ``[instances] test_replicates``)
    replicates: int | None = None

    def wanted(self, spec: TaskSpec) -> int:
        return max(1, int(self.replicates if self.replicates is not None else test_replicates(spec)))


def check_pool_location(path: str | Path) -> Path:
    """``path`` resolved, refused when it lies inside a git work tree (a repository would carry the
    held-out answers to everyone who clones it) or a folder of published instances."""
    here = Path(path).expanduser().resolve()
    for parent in (here, *here.parents):
        if (parent / ".git").exists():
            raise PoolError(f"fresh pool {path}: inside the git work tree {parent}; keep held-out instances "
                            "outside any repository (e.g. under ~/.cache or a private folder)")
        if parent.name == "instances" and parent.parent.name == "leaderboard":
            raise PoolError(f"fresh pool {path}: inside the published instances {parent}")
    return here


@contextlib.contextmanager
def fresh_pool(keep: str | Path | None = None, replicates: int | None = None) -> Iterator[FreshPool]:
    """A pool for one evaluation: ``keep`` (a maintainer's pool folder, created if needed and kept,
    reused when it holds enough instances already), else a private temporary folder removed when
    the block ends."""
    if keep is not None:
        root = check_pool_location(keep)
        if not root.exists():
            root.mkdir(mode=0o700, parents=True)
        yield FreshPool(str(root), replicates)
        return
    tmp = tempfile.mkdtemp(prefix="mmh-bench-fresh-")  # mode 0700: this user's only
    try:
        yield FreshPool(tmp, replicates)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pool_instances(spec: TaskSpec, pool: FreshPool) -> list[TaskInstance]:
    """The intact fresh instances of this very spec in the pool (a corrupt one is skipped with a
    warning), ordered by replicate number then data hash."""
    found = []
    task_dir = Path(pool.root) / spec.name
    for root in sorted(task_dir.glob(f"{spec.hash}-{FRESH}-*")) if task_dir.is_dir() else []:
        inst = load_instance(spec, root) if (root / "meta.json").exists() else None
        if inst is None or inst.instance_kind != FRESH:
            log.warning("fresh pool: %s is not an intact fresh instance; skipped", root)
            continue
        found.append(inst)
    return sorted(found, key=lambda i: (i.build_meta.instance_replicate or 0, i.data_hash))


def fill_pool(specs: Iterable[TaskSpec], pool: FreshPool, *, progress: bool = True) -> dict[str, int]:
    """Build, for every spec, the fresh replicates the pool lacks (``pool.wanted(spec)`` in all),
    from one secret per spec drawn here and forgotten when the builds end. Returns how many were
    built per task (0 where the pool held enough)."""
    built: dict[str, int] = {}
    for spec in specs:
        have = len(pool_instances(spec, pool))
        want = pool.wanted(spec)
        built[spec.name] = max(0, want - have)
        if have >= want:
            continue
        key = None
        for r in range(have, want):  # numbered after those kept, so replicate numbers stay distinct
            for draw in range(MAX_DRAWS):
                key = InstanceKey(FRESH, secret=secrets.token_hex(SECRET_BYTES) if key is None else key.secret,
                                  replicate=r)
                if progress:
                    print(f"building fresh instance {r + 1} of {want} of {spec.name} (held out, never published)",
                          file=sys.stderr, flush=True)
                try:
                    build_task(spec, pool.root, instance=key, progress=progress)
                    break
                except BuildError as exc:  # a placement outside the spec's declared label balance:
                    if "label balance" not in str(exc) or draw == MAX_DRAWS - 1:  # draw another,
                        raise  # as a test instance that failed its balance would never be published
                    print(f"fresh instance {r + 1} of {spec.name} missed the spec's label balance; drawing "
                          "another secret", file=sys.stderr, flush=True)
                    key = None
        del key  # the secret goes with it: these instances can be evaluated, never rebuilt
    return built
