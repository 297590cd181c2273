"""Task specifications: declarative TOML files whose hash names every cached build and result."""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec_models import TASK_MODELS, first_problem

#: Bump when a builder's output for the same spec changes; part of every spec hash.
BUILDER_VERSION = "1"

#: a task's family is the name of the builder that makes it
FAMILIES = tuple(TASK_MODELS)
TRACKS = ("memorization", "lid")


class SpecError(ValueError):
    """A task spec is malformed; the message names the file and the field."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task spec. ``raw`` is the whole TOML document; the hash covers all of it."""

    name: str
    version: str
    family: str
    builder: str
    seed: int
    description: str
    track: str
    suites: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)
    path: str = field(default="", compare=False)
    #: which instance a build of this spec makes: "dev" (the spec's own seed and geometry) or
    #: "test" (seed and placement from a secret; see mmh_bench.instances). Not part of the hash.
    instance: str = field(default="dev", compare=False)

    @property
    def hash(self) -> str:
        """16 hex digits of sha256 over the canonical spec and the builder version."""
        payload = canonical_json({"spec": self.raw, "builder_version": BUILDER_VERSION})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def section(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            raise SpecError(f"{self.path or self.name}: [{key}] must be a table")
        return value

    @property
    def conditional(self) -> bool:
        return bool(self.section("model").get("conditional", False))


def parse_spec(raw: dict[str, Any], path: str = "<memory>") -> TaskSpec:
    """A checked spec: every section and key of ``raw`` must be one its builder reads, of the
    right type and range (see :mod:`mmh_bench.spec_models`), else :class:`SpecError` names the
    file, the section and the key. ``raw`` itself is kept as is: its hash names cached builds."""
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a task spec is a table of keys, got {type(raw).__name__}")
    problem = first_problem(raw)
    if problem is not None:
        raise SpecError(f"{path}: {problem}")
    return TaskSpec(name=raw["name"], version=str(raw["version"]), family=raw["family"], builder=raw["builder"],
                    seed=raw.get("seed", 0), description=raw.get("description", ""),
                    track=raw.get("track", "memorization"), suites=tuple(raw.get("suites", [])), raw=raw, path=path)


def load_spec(path: str | Path) -> TaskSpec:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    spec = parse_spec(raw, str(path))
    if spec.name != path.stem:
        raise SpecError(f"{path}: task name {spec.name!r} must match the file name")
    return spec
