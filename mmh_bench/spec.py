"""Task specifications: declarative TOML files whose hash names every cached build and result."""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Bump when a builder's output for the same spec changes; part of every spec hash.
BUILDER_VERSION = "1"

FAMILIES = ("synthetic", "lid", "image", "text-to-image", "stable-diffusion")
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
    def need(key: str, kind: type) -> Any:
        if key not in raw:
            raise SpecError(f"{path}: missing required field {key!r}")
        if not isinstance(raw[key], kind):
            raise SpecError(f"{path}: field {key!r} must be {kind.__name__}, got {type(raw[key]).__name__}")
        return raw[key]

    name = need("name", str)
    version = str(need("version", (str, int)))
    family = need("family", str)
    if family not in FAMILIES:
        raise SpecError(f"{path}: family {family!r} is not one of {FAMILIES}")
    track = raw.get("track", "memorization")
    if track not in TRACKS:
        raise SpecError(f"{path}: track {track!r} is not one of {TRACKS}")
    suites = raw.get("suites", [])
    if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
        raise SpecError(f"{path}: suites must be a list of strings")
    return TaskSpec(name=name, version=version, family=family, builder=need("builder", str),
                    seed=int(raw.get("seed", 0)), description=str(raw.get("description", "")),
                    track=track, suites=tuple(suites), raw=raw, path=path)


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
