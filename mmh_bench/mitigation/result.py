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
from mmh_bench.task.subtypes import SUBTYPE_NAMES
from mmh_bench.leaderboard.schema import (Count, Instance, Label, Name, Plain, Prob, ResultHeader, Strict,
                                          read_json, validate_model)

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


Cosine = Annotated[float, Field(ge=-1.0, le=1.0)]


class MemBenchMetrics(Strict):
    """MemBench's scores of Stable Diffusion generations (:mod:`mmh_bench.mitigation.membench`)
    and the identity of what computed them: the SSCD and CLIP weights and the ground-truth set."""

    n_prompts: Annotated[int, Field(ge=1)]
    #: mean over generations of each one's max SSCD similarity to its prompt's ground truth
    sscd_max_mean: Cosine
    #: mean over prompts of the max over its generations (MemBench's headline "SSCD")
    sscd_prompt_max_mean: Cosine
    #: share of generations above the copy threshold (0.5): the ``memorization`` rate
    sscd_above_share: Prob
    #: mean CLIP score of image and prompt, 100 * max(cos, 0)
    clip_score: Annotated[float, Field(ge=0.0, le=100.0)]
    sscd_model: Label
    clip_model: Label
    ground_truth_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    #: memorized prompts left out for want of ground truth (a partial ground-truth set)
    n_prompts_without_ground_truth: Count = 0


class MitigationMetrics(Strict):
    """``memorization``: the task's copy rule, or on Stable Diffusion tasks the share of
    generations whose max SSCD to their prompt's ground truth exceeds 0.5 (then ``membench``
    holds MemBench's scores and the k-NN quality fields are absent)."""

    memorization: Rate
    per_subtype: dict[Literal[SUBTYPE_NAMES], Rate]  # type: ignore[valid-type]
    unchanged_share: Prob
    precision: Prob | None = None
    recall: Prob | None = None
    condition_accuracy: Prob | None = None
    membench: MemBenchMetrics | None = None


class MitigationCost(Strict):
    nfe_per_sample: Annotated[float, Field(ge=0)]
    seconds: Annotated[float, Field(ge=0)]
    peak_mb: Annotated[float, Field(ge=0)] | None = None


class Unmitigated(Strict):
    memorization: Rate
    membench: MemBenchMetrics | None = None


class MitigationResult(ResultHeader):
    """One (task instance, mitigator setting) on the mitigation track."""

    track: Literal["mitigation"]
    task_family: Literal[MITIGATION_FAMILIES]  # type: ignore[valid-type]
    instance: Instance
    mitigator: Name
    mitigator_version: Label
    mitigator_params: Annotated[dict[Label, Plain], Field(max_length=100)]
    swept: Label | None
    setting: Plain
    metrics: MitigationMetrics | None
    cost: MitigationCost | None
    unmitigated: Unmitigated | None

    @model_validator(mode="after")
    def _check(self) -> "MitigationResult":
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
