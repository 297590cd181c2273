"""Which instance of a task a build makes: dev instances from the public spec, test instances from a secret.

A trained task is an *instance*: its data hash belongs to every result's identity. Two kinds:

- **dev**: built from the spec as published, with its seed (or one of ``[instances] dev_seeds``).
  Anyone can rebuild it; shortcuts written from the spec work on it; use it for tuning.
- **fresh**: a test instance whose secret was drawn for one evaluation and never kept, so it was
  never published: the held-out instances official numbers come from (:mod:`mmh_bench.task.fresh`).
- **test**: the spec's design, placed by a secret: the seed of every random stream, a random
  similarity transform of the whole data set, the positions of duplicated and isolated points and
  the assignment of classes or captions to memorized conditions all follow from the secret, which
  is never written anywhere (the cache folder is named by a one-way hash of it, the build meta
  holds no seed). Test instances are published as data (``mmh-bench publish``) and the board
  reports them.

A secret is a string of at least 16 characters (``secrets.token_hex(16)`` makes a good one):
seeds derived from it are 62-bit, so enumerating them to reconstruct the placement is hopeless.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from .spec import TaskSpec

KINDS = ("dev", "test", "fresh")
#: kinds placed by a secret (built like a test instance)
SECRET_KINDS = ("test", "fresh")
MIN_SECRET_CHARS = 16
#: random stream of the placement, separate from every builder stream
PLACEMENT_STREAM = 7_919


class InstanceError(ValueError):
    """An instance was asked for in a way that cannot be honoured (e.g. a short secret)."""


@dataclass(frozen=True)
class InstanceKey:
    """How to build one instance of a spec; ``secret`` never leaves the process that builds."""

    kind: str = "dev"
    seed: int | None = None  # dev: the seed (default: the spec's)
    secret: str | None = None  # test and fresh only
    replicate: int = 0  # test and fresh only: one secret places several replicates, each its own instance

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InstanceError(f"instance kind {self.kind!r} is not one of {KINDS}")
        if self.kind in SECRET_KINDS:
            if not self.secret or len(self.secret) < MIN_SECRET_CHARS:
                raise InstanceError(f"a {self.kind} instance needs a secret of at least {MIN_SECRET_CHARS} characters")
            if self.seed is not None:
                raise InstanceError(f"a {self.kind} instance's seed comes from its secret; give no seed")
        elif self.secret is not None or self.replicate:
            raise InstanceError("a dev instance has no secret and no replicate number (give another seed)")
        if self.replicate < 0:
            raise InstanceError("replicate numbers start at 0")

    def __repr__(self) -> str:  # never print the secret
        return f"InstanceKey(kind={self.kind!r}, seed={self.seed!r}, replicate={self.replicate})"

    def salted(self) -> str:
        """The secret as the seed derivations read it: replicate 0 is the secret itself."""
        return (self.secret or "") + (f"\0replicate-{self.replicate}" if self.replicate else "")


def derived_seed(spec: TaskSpec, secret: str) -> int:
    """A 62-bit seed from the secret and the spec's hash (one secret gives unrelated seeds per task)."""
    digest = hashlib.sha256(f"mmh-bench-instance\0{spec.hash}\0{secret}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


def instance_spec(spec: TaskSpec, key: InstanceKey | None) -> TaskSpec:
    """The spec a builder sees for this instance: same raw document (same hash), other seed."""
    if key is None or (key.kind == "dev" and key.seed is None):
        return spec
    if key.kind == "dev":
        return dataclasses.replace(spec, seed=int(key.seed))
    # a fresh instance is built exactly as a test instance is; only its record says it was never published
    return dataclasses.replace(spec, seed=derived_seed(spec, key.salted()), instance="test")


def cache_name(spec: TaskSpec, key: InstanceKey | None) -> str:
    """The build folder's name under ``<cache>/<task>/``; a test instance's reveals nothing of its secret."""
    if key is None or (key.kind == "dev" and (key.seed is None or key.seed == spec.seed)):
        return spec.hash
    if key.kind == "dev":
        return f"{spec.hash}-dev{int(key.seed)}"
    digest = hashlib.sha256(f"mmh-bench-cache\0{spec.hash}\0{key.salted()}".encode()).hexdigest()
    return f"{spec.hash}-{key.kind}-{digest[:16]}"


def placement_rng(spec: TaskSpec) -> np.random.Generator | None:
    """The random stream that places a test instance's structures; None for a dev instance."""
    if spec.instance != "test":
        return None
    return np.random.default_rng([spec.seed, PLACEMENT_STREAM])


def test_instance_key(secret_env: str | None, replicate: int = 0) -> InstanceKey | None:
    """The test instance named by a secret held in an environment variable (a command line would
    show it in the process list), or None (the dev instance) when no variable is named."""
    if not secret_env:
        return None
    secret = os.environ.get(secret_env, "")
    if not secret:
        raise InstanceError(f"environment variable {secret_env} holds no secret")
    return InstanceKey("test", secret=secret, replicate=int(replicate))


def test_replicates(spec: TaskSpec) -> int:
    """How many test instances the board keeps of the task (``[instances] test_replicates``)."""
    return spec.model.instances.test_replicates
