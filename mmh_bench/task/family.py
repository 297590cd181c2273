"""The record of a task family: everything the benchmark knows about it, declared once.

Why: a family used to be five registrations (builder table, capabilities, GPU set, spec models,
board title) in five files, and a missing one failed far from where it was forgotten. Each family
module in :mod:`mmh_bench.task.families` declares one :class:`Family` as ``FAMILY``; the registry,
the spec checker, the engine and the board read it from there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .spec_models import TaskModel, show


@dataclass(frozen=True)
class Family:
    """One task family (a spec's ``family`` and ``builder``)."""

    name: str
    #: heading of the family's section on the board
    title: str
    #: ``"module:function"`` taking ``(spec, workdir, progress)`` and returning a
    #: :class:`~mmh_bench.task.build_output.BuildOutput`; imported on the first build
    builder: str
    #: the model of its specs (closed, typed sections with their defaults)
    spec: type[TaskModel]
    #: where specs choose their model by ``[data] source`` (the LID track): source -> model; the
    #: first is the source of a spec that names none
    spec_by_source: Mapping[str, type[TaskModel]] = field(default_factory=dict)
    #: capabilities of the score models it makes (``ScoreModel.capabilities``), so the evaluator can
    #: tell without building that a detector's ``requires`` cannot be met
    capabilities: frozenset[str] = frozenset()
    #: its builds and evaluations need a CUDA device to finish in reasonable time; the parallel
    #: engine sends its work only to workers that offer the GPU resource
    gpu: bool = False
    #: model kind (``meta["model"]["kind"]`` of its instances) -> ``"module:function"`` taking the
    #: model's path and returning a :class:`~mmh_bench.api.score_model.ScoreModel`
    model_loaders: Mapping[str, str] = field(default_factory=dict)
    #: model kind -> ``"module:function"`` making a model folder forget its conditions (a sealed view
    #: without Access.MODEL_COND); a kind without one relies on the interface's guard
    condition_forgetters: Mapping[str, str] = field(default_factory=dict)
    #: its data sit in the spec's own coordinates, so the origin of those coordinates is a placement
    #: shortcut the test instances must hide (the shortcut-origin baseline runs on it)
    spec_coordinates: bool = False
    #: where its section sits on the board (lower first; ties by name)
    board_position: float = 100.0

    def spec_model(self, raw: Mapping[str, Any]) -> type[TaskModel] | str:
        """The model that checks the spec ``raw`` of this family, or a one-line reason why none does."""
        if not self.spec_by_source:
            return self.spec
        data = raw["data"] if isinstance(raw.get("data"), dict) else {}
        sources = list(self.spec_by_source)
        source = data["source"] if "source" in data else sources[0]
        if source not in self.spec_by_source:
            named = ", ".join(map(repr, sources[:-1])) + f" or {sources[-1]!r}" if len(sources) > 1 else repr(sources[0])
            return f"[data] source must be {named}, got {show(source)}"
        return self.spec_by_source[source]
