"""Task specifications: declarative TOML files whose hash names every cached build and result."""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmh_bench.task.data.synthetic import COMPONENTS
from .families import all_families, task_model
from .spec_models import COMPONENT_MODELS, TaskModel, did_you_mean, section_model, show

#: Bump when a builder's output for the same spec changes; part of every spec hash.
BUILDER_VERSION = "1"

#: a task's family is the name of the builder that makes it (one record each, mmh_bench.task.families)
FAMILIES = tuple(all_families())
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
    #: "test" (seed and placement from a secret; see mmh_bench.task.instances). Not part of the hash.
    instance: str = field(default="dev", compare=False)

    @property
    def hash(self) -> str:
        """16 hex digits of sha256 over the canonical spec and the builder version."""
        payload = canonical_json({"spec": self.raw, "builder_version": BUILDER_VERSION})
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @cached_property
    def model(self) -> TaskModel:
        """The validated spec, every absent key at its default: what builders read."""
        model = validated(self.raw)
        if isinstance(model, str):
            raise SpecError(f"{self.path or self.name}: {model}")
        return model

    @property
    def conditional(self) -> bool:
        return self.model.conditional


# -- messages: pydantic's errors as one line that names the section and the key -------------------
_TYPE_WORDS = {"int_type": "an integer", "float_type": "a number", "string_type": "a string",
               "bool_type": "true or false", "list_type": "a list", "model_type": "a table",
               "dict_type": "a table", "model_attributes_type": "a table"}
_SELF_CONTAINED = {"unknown_key", "spec_rule", "missing", "union_tag_invalid", "union_tag_not_found"}
_MISSING = object()


def _clean(loc: tuple[Any, ...], raw: Any, at_table: bool = False) -> tuple[tuple[Any, ...], bool]:
    """``loc`` without the tags pydantic adds for union members (they are not keys of the
    document); True when a tag was dropped. Unless ``at_table`` (every error but 'missing'), a
    last part that is not in the document is the missing key."""
    out: list[Any] = []
    node, tagged = raw, False
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and (
                part in node or (i == len(loc) - 1 and not at_table)):
            out.append(part)
            node = node[part] if part in node else _MISSING
        else:
            tagged = True
    return tuple(out), tagged


def _node(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        raw = raw[part]
    return raw


def _dotted(parts: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(parts))


def _where(raw: dict[str, Any], table: tuple[Any, ...]) -> str:
    """``[sampling] ``, ``[[data.components]] #2 (sphere) `` or '' for the top level."""
    if not table:
        return ""
    if isinstance(table[-1], int) and all(isinstance(p, str) for p in table[:-1]):
        node = _node(raw, table)
        label = next((node[k] for k in ("kind", "name") if isinstance(node.get(k), str)), None)
        return f"[[{'.'.join(table[:-1])}]] #{table[-1] + 1}" + (f" ({label})" if label else "") + " "
    return f"[{_dotted(table)}] "


def _phrase(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("unknown_key", "spec_rule"):
        return str(ctx["message"])
    if kind == "union_tag_invalid":
        return f"unknown component kind {show(ctx['tag'])}; known: {', '.join(sorted(COMPONENTS))}"
    if kind == "union_tag_not_found":
        return f"missing required key {ctx['discriminator']}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}"
    msg = str(err["msg"]).removeprefix("Value error, ").replace(" after validation", "")
    return msg.replace("Input should be", "must be").replace("String should", "must").replace("List should", "must")


def _located(err: dict[str, Any], raw: dict[str, Any]) -> tuple[Any, ...]:
    loc = _clean(err["loc"], raw, at_table=err["type"] != "missing")[0]
    return loc + tuple((err.get("ctx") or {}).get("at", ()))


def _first(errors: list[dict[str, Any]], raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The first error; for a plain union (``str | table``), the errors of the branch that got
    deepest into the value, or of every branch when all failed at its top."""
    loc, tagged = _clean(errors[0]["loc"], raw, at_table=errors[0]["type"] != "missing")
    if not tagged:
        return errors[:1]
    same = [e for e in errors if _located(e, raw)[:len(loc)] == loc]
    depth = {id(e): len(_located(e, raw)) + (e["type"] == "unknown_key") for e in same}  # a key lies below its table
    return [e for e in same if depth[id(e)] == max(depth.values())]


def describe(exc: ValidationError, raw: dict[str, Any], model: type[TaskModel]) -> str:
    """One line for the first problem pydantic found: the section, the key, what is wrong."""
    chosen = _first(exc.errors(), raw)
    err, loc = chosen[0], _located(chosen[0], raw)
    phrase = " or ".join(dict.fromkeys(_phrase(e) for e in chosen)).replace(" or must be ", " or ")
    if err["type"] == "union_tag_not_found":  # perhaps the kind itself is misspelt
        phrase += "".join(f"; unknown key {k!r}{did_you_mean(k, ['kind'])}" for k in _node(raw, loc)
                          if not any(k in m.model_fields for m in COMPONENT_MODELS.values()))
    if err["type"] == "unknown_key" or err["type"].startswith("union_tag"):
        return f"{_where(raw, loc)}{phrase}".strip()
    cut = len(loc) - 1
    while cut > 0 and not isinstance(_node(raw, loc[:cut]), dict):
        cut -= 1  # an index into a list of values belongs to the key: scale[1]
    table = loc[:cut]
    key = _dotted(loc[cut:])
    if not table and section_model(getattr(model.model_fields.get(key), "annotation", None)):
        key = f"[{key}]"
    if err["type"] == "missing":
        return f"{_where(raw, table)}missing required " + (f"section {key}" if key[0] == "[" else f"key {key!r}")
    value = err.get("input")
    got = "" if err["type"] in _SELF_CONTAINED or isinstance(value, (dict, list)) else f", got {show(value)}"
    return f"{_where(raw, table)}{key} {phrase}{got}"


def validated(raw: dict[str, Any]) -> TaskModel | str:
    """``raw`` validated into its builder's model, else one line naming the section and the key."""
    model = task_model(raw)
    if isinstance(model, str):
        return model
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        return describe(exc, raw, model)


def parse_spec(raw: dict[str, Any], path: str = "<memory>") -> TaskSpec:
    """A checked spec: every section and key of ``raw`` must be one its builder reads, of the
    right type and range (see :mod:`mmh_bench.task.spec_models`), else :class:`SpecError` names the
    file, the section and the key. ``raw`` itself is kept as is: its hash names cached builds."""
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a task spec is a table of keys, got {type(raw).__name__}")
    model = validated(raw)
    if isinstance(model, str):
        raise SpecError(f"{path}: {model}")
    spec = TaskSpec(name=model.name, version=str(model.version), family=model.family, builder=model.builder,
                    seed=model.seed, description=model.description, track=model.track,
                    suites=tuple(model.suites), raw=raw, path=path)
    spec.__dict__["model"] = model  # the cache of TaskSpec.model; a replaced raw validates afresh
    return spec


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
