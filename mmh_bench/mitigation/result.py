"""The mitigation result document: one typed model that the evaluator writes and the board reads.

The evaluator builds :class:`MitigationResult` and writes its dump, so it cannot emit a file the
board would reject; the board validates every file with the same model (strict types, no NaN, no
unknown field, size-capped reads through :func:`mmh_bench.leaderboard.schema.read_json`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mmh_bench.files import write_json
from mmh_bench.task.spec import FAMILIES
from mmh_bench.task.subtypes import CONSTRUCTED_SUBTYPES
from mmh_bench.leaderboard.schema import (AccessLabel, Hex16, Instance, Isolation, Label, Name, Plain, Prob, Provenance,
                                          Strict, Text, check_outcome, read_json, validate_model)

SCHEMA_VERSION = 1
#: mitigation regenerates conditional samples: every task family but LID estimation
MITIGATION_FAMILIES = tuple(f for f in FAMILIES if f != "lid")


class Rate(Strict):
    rate: Prob
    ci: Annotated[list[Prob], Field(min_length=2, max_length=2)]

    @model_validator(mode="after")
    def _order(self) -> "Rate":
        if not self.ci[0] <= self.ci[1]:
            raise ValueError("ci must be [low, high]")
        return self


class MitigationMetrics(Strict):
    memorization: Rate
    per_subtype: dict[Literal[CONSTRUCTED_SUBTYPES], Rate]  # type: ignore[valid-type]
    unchanged_share: Prob
    precision: Prob | None = None
    recall: Prob | None = None
    condition_accuracy: Prob | None = None


class MitigationCost(Strict):
    nfe_per_sample: Annotated[float, Field(ge=0)]
    seconds: Annotated[float, Field(ge=0)]
    peak_mb: Annotated[float, Field(ge=0)] | None = None


class Unmitigated(Strict):
    memorization: Rate


class MitigationResult(Strict):
    """One (task instance, mitigator setting) on the mitigation track."""

    schema_version: Literal[1]
    track: Literal["mitigation"]
    task: Name
    task_version: Annotated[str, Field(min_length=1, max_length=32)]
    task_hash: Hex16
    task_family: Literal[MITIGATION_FAMILIES]  # type: ignore[valid-type]
    instance: Instance
    mitigator: Name
    mitigator_version: Label
    mitigator_params: Annotated[dict[Label, Plain], Field(max_length=100)]
    swept: Label | None
    setting: Plain
    access: AccessLabel
    status: Literal["ok", "failed"]
    error: Text | None
    n_samples: Annotated[int, Field(ge=1)]
    metrics: MitigationMetrics | None
    cost: MitigationCost | None
    unmitigated: Unmitigated | None
    isolation: Isolation | None = None
    provenance: Provenance

    @model_validator(mode="after")
    def _check(self) -> "MitigationResult":
        check_outcome(self)
        if self.swept is not None and self.mitigator_params.get(self.swept) != self.setting:
            raise ValueError("setting must be the swept parameter's value")
        return self


def make_result(doc: dict[str, Any]) -> MitigationResult:
    """The typed document (raises :class:`~mmh_bench.leaderboard.schema.SchemaError` naming the field)."""
    return validate_model(MitigationResult, doc)


def write_result(path: str | Path, res: MitigationResult) -> None:
    """Atomically, as the model dumps it."""
    write_json(path, res.model_dump(mode="json", by_alias=True))


def read_mitigation_result(path: str | Path) -> MitigationResult:
    return validate_model(MitigationResult, read_json(path))


__all__ = ["MitigationResult", "make_result", "write_result", "read_mitigation_result"]
