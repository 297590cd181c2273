"""Finding tasks, builders, model loaders, detectors and mitigators by name: every registry in one place.

Tasks: the TOML files shipped in ``tasks/`` (installed as ``mmh_bench_tasks``), any folder in
``MMH_BENCH_TASKS_PATH`` (``:``-separated), or a path to a ``.toml`` file.
Detectors: the entry-point group ``mmh_bench.detectors`` (the shipped baselines register there
exactly as a third-party package would), or ``module:Class`` / ``path/to/file.py:Class``. Any of
them may carry constructor parameters, ``flipd(t0=0.05, probes=8)``: values are TOML literals
(``0.05``, ``"knee"``, ``true``, ``[1, 2]``), JSON ``null`` for None, or a bare word taken as a
string (``t0=plateau``); names the constructor does not take are refused with the ones it does.
Mitigators resolve the same way from the entry-point group ``mmh_bench.mitigators``.
Families: one record each (mmh_bench.task.families), which names the builder (a spec's ``builder``)
and the model loaders (an instance's model ``kind``) as ``"module:function"`` targets, imported on
first use: naming one costs nothing until a task is built or a model loaded. :data:`BUILDERS`,
:data:`MODEL_LOADERS` and the other family tables here are views of those records.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import tomllib
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmh_bench.api.detector import Detector
from mmh_bench.common.targets import load_target
from mmh_bench.task.families import all_families, condition_forgetters, model_loaders
from mmh_bench.task.spec import SpecError, TaskSpec, load_spec

if TYPE_CHECKING:  # pragma: no cover
    from .api.mitigator import Mitigator

ENTRY_POINT_GROUP = "mmh_bench.detectors"
MITIGATOR_GROUP = "mmh_bench.mitigators"


class RegistryError(LookupError):
    """An unknown task or detector, or one that cannot be loaded; the message says which."""


# -- tasks -------------------------------------------------------------------------------------
def task_dirs() -> list[Path]:
    dirs = [Path(str(resources.files("mmh_bench_tasks")))]
    for extra in os.environ.get("MMH_BENCH_TASKS_PATH", "").split(os.pathsep):
        if extra:
            dirs.append(Path(extra))
    return dirs


def all_tasks() -> dict[str, TaskSpec]:
    """Every known task spec by name (later folders override earlier ones)."""
    out: dict[str, TaskSpec] = {}
    for d in task_dirs():
        for path in sorted(d.glob("*.toml")):
            spec = load_spec(path)
            out[spec.name] = spec
    return out


def get_task(name: str) -> TaskSpec:
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise RegistryError(f"task spec file {name!r} does not exist")
        return load_spec(name)
    tasks = all_tasks()
    if name not in tasks:
        raise RegistryError(f"unknown task {name!r}; known tasks: {', '.join(sorted(tasks)) or 'none'}")
    return tasks[name]


def suite(name: str) -> list[TaskSpec]:
    specs = [s for s in all_tasks().values() if name in s.suites]
    if not specs:
        raise RegistryError(f"no task belongs to suite {name!r}")
    return specs


def resolve_tasks(names: str | list[str]) -> list[TaskSpec]:
    """Comma-separated names, ``suite:NAME``, or paths to spec files."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[TaskSpec] = []
    for n in names:
        out.extend(suite(n.split(":", 1)[1]) if n.startswith("suite:") else [get_task(n)])
    return out


# -- families: builders, capabilities, model loaders ---------------------------------------------
#: Every family declares these in its record (mmh_bench.task.families); the tables below are views.
#: builder name (a spec's ``builder`` field) -> ``"module:function"`` taking ``(spec, workdir,
#: progress)`` and returning a :class:`~mmh_bench.task.build.BuildOutput`
BUILDERS: dict[str, str] = {name: f.builder for name, f in all_families().items()}
#: builder name -> capabilities of the score models it makes (see ``ScoreModel.capabilities``),
#: so the evaluator can tell without building that a detector's ``requires`` cannot be met
BUILDER_CAPABILITIES: dict[str, frozenset[str]] = {name: f.capabilities for name, f in all_families().items()}
#: builders whose builds and evaluations need a CUDA device (Stable Diffusion); the parallel engine
#: sends their work only to workers that offer the GPU resource
GPU_BUILDERS: frozenset[str] = frozenset(name for name, f in all_families().items() if f.gpu)


def needs_gpu(spec: Any) -> bool:
    """Whether a task's work belongs on a GPU worker (its family's record says so)."""
    return spec.builder in GPU_BUILDERS


#: model kind (``meta["model"]["kind"]`` of an instance) -> ``"module:function"`` taking the
#: model's path and returning a :class:`~mmh_bench.api.score_model.ScoreModel`
MODEL_LOADERS: dict[str, str] = model_loaders()
#: how a model folder of each kind forgets its conditions (a sealed view without Access.MODEL_COND)
CONDITION_FORGETTERS: dict[str, str] = condition_forgetters()


# -- detectors ---------------------------------------------------------------------------------
#: what can be registered: kind -> (entry-point group, base class path)
KINDS = {"detector": (ENTRY_POINT_GROUP, "mmh_bench.api.detector:Detector"),
         "mitigator": (MITIGATOR_GROUP, "mmh_bench.api.mitigator:Mitigator")}


def _base(kind: str) -> type:
    return load_target(KINDS[kind][1])


def registered_entry_points(kind: str = "detector") -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=KINDS[kind][0])}


def _check_class(obj: object, where: str, kind: str = "detector") -> type:
    base = _base(kind)
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        raise RegistryError(f"{where} is not a subclass of mmh_bench.{base.__name__}")
    if not obj.name:
        raise RegistryError(f"{where} has no name")
    return obj


def file_module_name(path: Path) -> str:
    """The module name a detector file is imported under (one per resolved path)."""
    digest = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]
    return f"mmh_bench_user_{Path(path).stem}_{digest}"


def file_ref(ref: str) -> tuple[Path, str] | None:
    """``path/to/file.py:Class`` -> (path, ``Class``); None for a registered name or ``module:Class``."""
    target, sep, attr = ref.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target or os.sep in target):
        return Path(target), attr
    return None


def _load_file(path: Path, attr: str) -> object:
    if not path.is_file():
        raise RegistryError(f"detector file {str(path)!r} does not exist")
    mod_name = file_module_name(path)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise RegistryError(f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise RegistryError(f"{str(path)!r} has no attribute {attr!r}")
    return getattr(module, attr)


def load_detector_class(ref: str, kind: str = "detector") -> type[Detector]:
    """A registered name, ``module:Class`` or ``path/to/file.py:Class`` (a mitigator's with
    ``kind="mitigator"``)."""
    if ":" in ref:
        target, attr = ref.rsplit(":", 1)
        in_file = file_ref(ref)
        if in_file is not None:
            obj = _load_file(*in_file)
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as exc:
                raise RegistryError(f"cannot import module {target!r}: {exc}") from exc
            if not hasattr(module, attr):
                raise RegistryError(f"module {target!r} has no attribute {attr!r}")
            obj = getattr(module, attr)
        return _check_class(obj, ref, kind)
    eps = registered_entry_points(kind)
    if ref not in eps:
        raise RegistryError(f"unknown {kind} {ref!r}; known {kind}s: {', '.join(sorted(eps))}")
    try:
        obj = eps[ref].load()
    except Exception as exc:
        raise RegistryError(f"loading {kind} {ref!r} ({eps[ref].value}) failed: {exc}") from exc
    cls = _check_class(obj, ref, kind)
    if cls.name != ref:
        raise RegistryError(f"entry point {ref!r} loads a {kind} named {cls.name!r}")
    return cls


def split_refs(text: str) -> list[str]:
    """Comma-separated detector references, commas inside parentheses, brackets or quotes kept."""
    out, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [r for r in out if r]


def _literal(text: str, where: str) -> object:
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if text == "null":
        return None
    if re.fullmatch(r"[A-Za-z_][\w.-]*", text):
        return text
    raise RegistryError(f"{where}: cannot read {text!r} as a value (a number, \"string\", true/false, [list] or null)")


def parse_ref(ref: str) -> tuple[str, dict[str, object]]:
    """``"name(a=1, b=x)"`` -> ``("name", {"a": 1, "b": "x"})``; a reference without parentheses
    has no parameters."""
    ref = ref.strip()
    if not ref.endswith(")"):
        return ref, {}
    if "(" not in ref:
        raise RegistryError(f"detector reference {ref!r} has ')' without '('")
    name, body = ref[:ref.index("(")].strip(), ref[ref.index("(") + 1:-1]
    params: dict[str, object] = {}
    for item in split_refs(body):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise RegistryError(f"detector reference {ref!r}: parameters are name=value, got {item!r}")
        if key in params:
            raise RegistryError(f"detector reference {ref!r}: parameter {key!r} given twice")
        params[key] = _literal(value, f"parameter {key!r} of {name!r}")
    return name, params


_BARE = re.compile(r"[A-Za-z_][\w.-]*")


def _format_literal(value: object) -> str:
    """A parameter value as :func:`parse_ref` reads it back: ``null``, ``true``, a bare word, or JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and _BARE.fullmatch(value) and value not in ("true", "false", "null", "inf", "nan"):
        return value
    return json.dumps(value)


def format_ref(name: str, params: dict[str, object]) -> str:
    """``("cfg-norm", {"n_steps": 5})`` -> ``"cfg-norm(n_steps=5)"``: the inverse of :func:`parse_ref`
    (parameters sorted by name, no spaces, so one configuration has one spelling)."""
    if not params:
        return name
    return f"{name}({','.join(f'{k}={_format_literal(v)}' for k, v in sorted(params.items()))})"


def check_params(cls: type, params: dict[str, object], ref: str) -> None:
    sig = inspect.signature(cls.__init__)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    known = [n for n, p in sig.parameters.items()
             if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise RegistryError(f"detector {ref!r} has no parameter {', '.join(map(repr, unknown))}; "
                            f"it takes: {', '.join(known) or 'none'}")


def make_detector(ref: str | Detector, kind: str = "detector") -> Detector:
    """A detector (or with ``kind="mitigator"`` a mitigator) from a reference (see the module
    docstring), constructed with its parameters."""
    if isinstance(ref, _base(kind)):
        return ref  # type: ignore[return-value]
    name, params = parse_ref(ref)  # type: ignore[arg-type]
    cls = load_detector_class(name, kind)
    check_params(cls, params, name)
    try:
        return cls(**params)
    except Exception as exc:
        raise RegistryError(f"constructing {kind} {ref!r} failed: {type(exc).__name__}: {exc}") from exc


def all_detectors(kind: str = "detector") -> dict[str, type[Detector]]:
    """Every detector (or mitigator) registered through entry points, by name."""
    return {name: load_detector_class(name, kind) for name in sorted(registered_entry_points(kind))}


def resolve_detectors(refs: str | list[str], kind: str = "detector") -> list[Detector]:
    if isinstance(refs, str):
        refs = split_refs(refs)
    if refs == ["all"]:
        return [cls() for cls in all_detectors(kind).values()]
    return [make_detector(r, kind) for r in refs]


def make_mitigator(ref: str) -> "Mitigator":
    """A mitigator from a registered name, ``module:Class`` or ``file.py:Class``, with parameters."""
    return make_detector(ref, "mitigator")  # type: ignore[return-value]


def all_mitigators() -> dict[str, type["Mitigator"]]:
    return all_detectors("mitigator")  # type: ignore[return-value]


def resolve_mitigators(refs: str | list[str]) -> list["Mitigator"]:
    return resolve_detectors(refs, "mitigator")  # type: ignore[return-value]


__all__ = ["RegistryError", "SpecError", "all_tasks", "get_task", "resolve_tasks", "suite",
           "load_detector_class", "make_detector", "parse_ref", "split_refs", "all_detectors", "resolve_detectors",
           "make_mitigator", "all_mitigators", "resolve_mitigators"]
