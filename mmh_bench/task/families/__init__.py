"""Every task family, one module each: a module here (or one named in ``MMH_BENCH_FAMILIES``)
declares its :class:`~mmh_bench.task.family.Family` as ``FAMILY``, and that is the whole
registration. Family modules stay light (the record, perhaps its spec model); heavy builder code
is named by a ``"module:function"`` target and imported on the first build.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from functools import lru_cache
from typing import Any, Mapping

from mmh_bench.task.family import Family
from mmh_bench.task.spec_models import TaskModel, did_you_mean, show

#: more family modules, comma-separated: a family outside this package (one being written, or a
#: third party's), read once when the families are first asked for
FAMILIES_ENV = "MMH_BENCH_FAMILIES"


@lru_cache(maxsize=1)
def all_families() -> dict[str, Family]:
    """Every family by name, in board order."""
    modules = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)]
    modules += [m.strip() for m in os.environ.get(FAMILIES_ENV, "").split(",") if m.strip()]
    found: dict[str, Family] = {}
    for name in modules:
        record = getattr(importlib.import_module(name), "FAMILY", None)
        if not isinstance(record, Family):
            raise TypeError(f"family module {name!r} declares no FAMILY = Family(...)")
        if record.name in found:
            raise ValueError(f"family {record.name!r} is declared twice (again in {name!r})")
        found[record.name] = record
    return dict(sorted(found.items(), key=lambda kv: (kv[1].board_position, kv[0])))


def family(name: str) -> Family:
    """The family of that name (a spec's ``builder``); KeyError names the known ones."""
    families = all_families()
    if name not in families:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(families)}")
    return families[name]


def task_model(raw: Mapping[str, Any]) -> type[TaskModel] | str:
    """The model that checks the spec ``raw``, or a one-line reason why none applies."""
    families = all_families()
    builder = raw.get("builder")
    if builder is None:
        return "missing required top-level key 'builder'"
    if not isinstance(builder, str) or builder not in families:
        return (f"builder must be one of {', '.join(map(repr, families))}, got {show(builder)}"
                + (did_you_mean(builder, families) if isinstance(builder, str) else ""))
    return families[builder].spec_model(raw)


def _by_kind(attr: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for record in all_families().values():
        for kind, target in getattr(record, attr).items():
            if out.setdefault(kind, target) != target:
                raise ValueError(f"model kind {kind!r} has two {attr}: {out[kind]!r} and {target!r}")
    return out


def model_loaders() -> dict[str, str]:
    """Model kind -> ``"module:function"`` loading it, over every family."""
    return _by_kind("model_loaders")


def condition_forgetters() -> dict[str, str]:
    """Model kind -> ``"module:function"`` making a model folder forget its conditions."""
    return _by_kind("condition_forgetters")
