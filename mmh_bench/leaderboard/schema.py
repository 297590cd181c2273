"""Schemas for everything the leaderboard reads: measured results, submissions, reported numbers.

The board renders files that anyone can write (a pull request, a submission), so every file is
validated before a number from it is shown: types are strict (a number stored as a string, a
NaN or a boolean where a count belongs is an error), probabilities lie in [0, 1], provenance is
required, and a result must name a task the registry knows with the hash of its current spec.
Errors are :class:`~mmh_bench.leaderboard.store.ResultError` messages naming the file and the field.

Three kinds of file:

- result (``results/<task>/v<version>/<detector>.json``): written by the evaluator
  (:func:`mmh_bench.evaluation.runner.evaluate_pair`); :class:`MemorizationResult` or :class:`LIDResult`.
- submission metadata (``submissions/<name>/metadata.json``): :class:`SubmissionMeta`, written
  by ``mmh-bench submit``; ``verification.json`` beside it: :class:`Verification`.
- reported numbers (``reported/<anything>.json``): :class:`ReportedFile`, numbers published in
  papers with citation, link and protocol notes; never re-measured, always shown as such. The
  numbers mmh-bench ships (``mmh_bench/leaderboard/reported/*.toml``, :mod:`mmh_bench.leaderboard.reported`) are
  :class:`ReportedRow` entries, which also say which TPR rule the source used.

One module holds every format the board accepts, so that it reads as their specification; that
is why it is longer than the others.

Longer than ~400 lines: it is a declaration, one typed model per result kind and metric table,
and the validators they share; splitting it would scatter the vocabulary the board reads.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError,
                      create_model, model_validator)

from mmh_bench.api.access import Access
from mmh_bench.api.detector import GROUPS
from mmh_bench.common.fpr import FPR_KEYS, tpr_resolvable
from mmh_bench.task.spec import FAMILIES, TaskSpec
from mmh_bench.task.subtypes import SUBTYPE_NAMES

SCHEMA_VERSION = 1
#: Files larger than this are refused before they are parsed (a result is ~20 kB).
MAX_FILE_BYTES = 1 << 20


class SchemaError(ValueError):
    """A document does not match its schema; ``field`` is the dotted path of the first problem."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# -- field types --------------------------------------------------------------------------------
def _no_control(v: str) -> str:
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in v):
        raise ValueError("must not contain control or format characters")
    return v


def check_name(v: str) -> str:
    """Names become file names and table labels: printable, no path separators, trimmed."""
    _no_control(v)
    if v != v.strip():
        raise ValueError("must not start or end with whitespace")
    if "/" in v or "\\" in v or v in (".", "..") or v.startswith("."):
        raise ValueError("must not contain '/' or '\\' or start with '.' (it names a file)")
    return v


def _access(v: str) -> str:
    try:
        canonical = Access.parse(v).label
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if canonical != v:
        raise ValueError(f"access must be written {canonical!r}")
    return v


def check_url(v: str) -> str:
    _no_control(v)
    if not re.match(r"^https?://[^\s<>\"']+$", v):
        raise ValueError("must be an http:// or https:// address without spaces or quotes")
    return v


def _date(v: str) -> str:
    try:
        _dt.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise ValueError("must be a UTC timestamp like 2025-01-31T12:00:00Z") from None
    return v


Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_name)]


def _detector_ref(v: str) -> str:
    """A detector as ``mmh-bench run --detectors`` takes it: a name, optionally with its parameters
    (``attention-entropy(layer=3)``), so a published protocol maps to the exact configuration."""
    from mmh_bench.registry import RegistryError, parse_ref
    try:
        name, _ = parse_ref(v)
    except RegistryError as exc:
        raise ValueError(str(exc)) from None
    check_name(name)
    return v


DetectorRef = Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_detector_ref)]
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_control)]
Text = Annotated[str, Field(max_length=4000)]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0)]
Count = Annotated[int, Field(ge=0)]
Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
HexHash = Annotated[str, Field(pattern=r"^[0-9a-f]{16,128}$")]
AccessLabel = Annotated[str, Field(max_length=64), AfterValidator(_access)]
Url = Annotated[str, Field(max_length=500), AfterValidator(check_url)]
Date = Annotated[str, AfterValidator(_date)]
Plain = Union[bool, int, float, str, None]
Note = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_no_control)]
SubmissionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


#: where a detector or mitigator ran: a sandboxed worker, a plain worker process, the evaluator's process
Isolation = Literal["sandbox", "process", "in-process"]


class Strict(BaseModel):
    """Strict types, no NaN or infinity, no unknown fields (a typo is an error, not a blank)."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


#: attribute name of each FPR target's field ("0.01" -> fpr_001); the files use the key itself
FPR_FIELDS = {key: "fpr_" + key.replace(".", "") for key in FPR_KEYS}


class PerTarget(Strict):
    """One field per FPR target (:data:`FPR_FIELDS`): the files key them "0.01", Python names them
    ``fpr_001``; :meth:`at` reads one by the key the board's columns carry."""

    def at(self, key: str) -> Any:
        return getattr(self, FPR_FIELDS[key])


def _per_target(name: str, kind: Any, doc: str) -> type[PerTarget]:
    """A strict model with one required field per FPR target of the metrics, aliased by its key."""
    return create_model(name, __base__=PerTarget, __doc__=doc,
                        **{attr: (kind, Field(alias=key)) for key, attr in FPR_FIELDS.items()})


TprAtFpr = _per_target("TprAtFpr", Prob, "The strict TPR at each FPR target.")


def _ci_ok(ci: list[float] | None, name: str = "auroc_ci") -> None:
    if ci is not None and ci[0] > ci[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high")


Interval = Annotated[list[Prob], Field(min_length=2, max_length=2)]


class TprCi(_per_target("TprCiFields", Interval | None, "")):  # type: ignore[misc]
    """Bootstrap 95% interval of each strict TPR@FPR (null when no resample had both classes)."""

    @model_validator(mode="after")
    def _check(self) -> "TprCi":
        for key, name in FPR_FIELDS.items():
            _ci_ok(getattr(self, name), f"tpr_at_fpr_ci.{key}")
        return self


TprResolvable = _per_target("TprResolvable", bool, "Whether the negatives resolve each target "
                            "(:func:`mmh_bench.common.fpr.tpr_resolvable`).")


class DetectionMetrics(Strict):
    auroc: Prob
    ap: Prob
    tpr_at_fpr: TprAtFpr
    n_pos: Count
    n_neg: Count
    auroc_ci: Interval | None = None
    # added with the TPR intervals; older results lack them
    tpr_at_fpr_ci: TprCi | None = None
    tpr_at_fpr_closest: TprAtFpr | None = None  # the "closest ROC point" variant, for comparison
    tpr_at_fpr_resolvable: TprResolvable | None = None

    @model_validator(mode="after")
    def _check(self) -> "DetectionMetrics":
        _ci_ok(self.auroc_ci)
        flags = self.tpr_at_fpr_resolvable
        if flags is not None:
            for key, name in FPR_FIELDS.items():
                if getattr(flags, name) != tpr_resolvable(self.n_neg, float(key)):
                    raise ValueError(f"tpr_at_fpr_resolvable.{key} contradicts the rule for "
                                     f"{self.n_neg} negatives")
        return self


class MemorizationMetrics(DetectionMetrics):
    per_subtype: dict[Literal[SUBTYPE_NAMES], DetectionMetrics] = Field(default_factory=dict)  # type: ignore[valid-type]
    # all positives against each negative source's negatives (metrics.auroc_by_source); null
    # for a source with too few negatives; absent where the task names no sources
    auroc_by_source: Annotated[dict[Label, Prob | None], Field(min_length=1, max_length=64)] | None = None


class TrueLIDLevel(Strict):
    """The estimates at one true LID* value: what the board's estimate-against-truth plot draws."""
    lid: NonNeg
    n: Count
    mean: float
    q10: float
    q90: float

    @model_validator(mode="after")
    def _order(self) -> "TrueLIDLevel":
        if not self.q10 <= self.q90:
            raise ValueError("q10 must not exceed q90")
        return self


class LIDMetrics(Strict):
    mae: NonNeg
    mse: NonNeg
    concordance: Prob | None
    n: Count
    # added with the estimate-against-truth plot; older results lack it
    by_true_lid: Annotated[list[TrueLIDLevel], Field(min_length=1, max_length=64)] | None = None


class Cost(Strict):
    nfe_per_sample: NonNeg
    jvp_per_sample: NonNeg
    seconds: NonNeg
    peak_mb: NonNeg
    device_peak_mb: NonNeg | None = None


class Roc(Strict):
    fpr: Annotated[list[Prob], Field(min_length=2, max_length=2000)]
    tpr: Annotated[list[Prob], Field(min_length=2, max_length=2000)]

    @model_validator(mode="after")
    def _check(self) -> "Roc":
        if len(self.fpr) != len(self.tpr):
            raise ValueError("fpr and tpr must have the same length")
        for name, v in (("fpr", self.fpr), ("tpr", self.tpr)):
            if any(b < a for a, b in zip(v, v[1:])):
                raise ValueError(f"{name} must be non-decreasing")
        return self


class Provenance(Strict):
    mmh_bench_version: Label
    packages: Annotated[dict[Label, Label], Field(max_length=200)]
    hardware: Annotated[dict[Label, Plain], Field(max_length=50)]
    seed: int
    spec_hash: Hex16
    data_hash: HexHash
    date: Date


class TaskStats(Strict):
    """Task-level figures from the build, the same in every result of a task (not a detector's)."""

    data_copying_ct: float | None = None  # C_T of the samples against a held-out set (common/ct_statistic.py)
    ct_cells_used: Count | None = None
    n_heldout: Count | None = None
    null_copy_rate: Prob | None = None  # share of fresh data draws the labelling calls copies


class Instance(Strict):
    """Which built instance of the task a result was measured on; rows rank together only within one."""

    # dev: rebuilt from the public spec; test: published, placed by a secret (public answers);
    # fresh: placed by a secret drawn for one evaluation and never published (held out)
    kind: Literal["dev", "test", "fresh"]
    data_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    id: Annotated[str, Field(pattern=r"^(dev|test|fresh)-[0-9a-f]{12}$")]
    # which of several instances of one kind (built from different secret or dev seeds) this is;
    # the board averages a task's replicates and reports how stable their rankings are
    replicate: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Instance":
        if self.id != f"{self.kind}-{self.data_hash[:12]}":
            raise ValueError(f"id must be {self.kind}-<first 12 hex of data_hash>")
        return self


def check_outcome(doc: Any) -> None:
    """The rules every result document (detection or mitigation) obeys: status 'ok' carries
    metrics and cost and no error, 'failed' an error and no metrics; the provenance names the
    task's spec hash and the instance's data."""
    if doc.status == "ok":
        if doc.metrics is None or doc.cost is None:
            raise ValueError("status 'ok' needs metrics and cost")
        if doc.error is not None:
            raise ValueError("status 'ok' must have error null")
    elif not doc.error:
        raise ValueError("status 'failed' needs an error message")
    elif doc.metrics is not None:
        raise ValueError("status 'failed' must have metrics null")
    if doc.provenance.spec_hash != doc.task_hash:
        raise ValueError(f"provenance.spec_hash {doc.provenance.spec_hash!r} differs from "
                         f"task_hash {doc.task_hash!r}")
    if doc.instance is not None and doc.instance.data_hash != doc.provenance.data_hash:
        raise ValueError("instance.data_hash differs from provenance.data_hash")


class ResultHeader(Strict):
    """The fields every track's result carries, checked one way: which task and instance, how the
    entry ran, whether it succeeded (:func:`check_outcome`) and the provenance."""

    schema_version: Literal[1]
    task: Name
    task_version: Annotated[str, Field(min_length=1, max_length=32), AfterValidator(check_name)]
    task_hash: Hex16
    access: AccessLabel
    status: Literal["ok", "failed"]
    error: Text | None
    n_samples: Annotated[int, Field(ge=1)]
    provenance: Provenance
    isolation: Isolation | None = None

    @model_validator(mode="after")
    def _outcome(self) -> "ResultHeader":
        check_outcome(self)
        return self


class _ResultBase(ResultHeader):
    task_family: Literal[FAMILIES]  # type: ignore[valid-type]
    detector: Name
    detector_version: Label
    detector_params: Annotated[dict[Label, Plain], Field(max_length=100)]
    detector_source: Label
    reference: bool
    n_memorized: Count | None
    cost: Cost | None
    task_stats: TaskStats | None = None
    # added with instances and groups; older results lack them (the board derives them)
    group: Literal[GROUPS] | None = None  # type: ignore[valid-type]
    instance: Instance | None = None
    detector_note: Note | None = None

    def _common(self) -> None:
        if self.n_memorized is not None and self.n_memorized > self.n_samples:
            raise ValueError("n_memorized exceeds n_samples")
        if self.group is not None and (self.group == "reference") != self.reference:
            raise ValueError(f"group {self.group!r} contradicts reference {self.reference}")


class MemorizationResult(_ResultBase):
    """One (task, detector) result on the memorization track."""

    track: Literal["memorization"]
    metrics: MemorizationMetrics | None
    roc: Roc | None = None

    @model_validator(mode="after")
    def _check(self) -> "MemorizationResult":
        self._common()
        m = self.metrics
        if m is not None:
            if m.n_pos + m.n_neg != self.n_samples or (self.n_memorized is not None
                                                       and m.n_pos != self.n_memorized):
                raise ValueError("metrics.n_pos/n_neg disagree with n_samples/n_memorized")
            if sum(s.n_pos for s in m.per_subtype.values()) > m.n_pos:
                raise ValueError("per-subtype positives exceed metrics.n_pos")
        return self


class LIDResult(_ResultBase):
    """One (task, LID estimator) result on the LID track."""

    track: Literal["lid"]
    metrics: LIDMetrics | None
    roc: None = None

    @model_validator(mode="after")
    def _check(self) -> "LIDResult":
        self._common()
        if self.metrics is not None and self.metrics.n != self.n_samples:
            raise ValueError("metrics.n differs from n_samples")
        return self


Result = Annotated[Union[MemorizationResult, LIDResult], Field(discriminator="track")]
_RESULT = TypeAdapter(Result)


# -- submissions --------------------------------------------------------------------------------
class TaskRef(Strict):
    """A task as it was when a submission ran: enough to re-run it even if the spec is not shipped."""

    name: Name
    version: Annotated[str, Field(min_length=1, max_length=32)]
    hash: Hex16
    spec: dict[str, Any]


class CheckItem(Strict):
    name: Label
    level: Literal["error", "warning", "info"]
    passed: bool
    message: Text


class SubmissionMeta(Strict):
    """``submissions/<name>/metadata.json``: who submitted what, and how to re-run it."""

    schema_version: Literal[1]
    name: SubmissionName
    #: what was submitted; ``detector*`` fields name it either way (a mitigator's results are
    #: mitigation results, which the detection board leaves out)
    kind: Literal["detector", "mitigator"] = "detector"
    detector: Name
    detector_ref: Label
    detector_sha256: HexHash | None = None
    authors: Annotated[list[Label], Field(min_length=1, max_length=50)]
    url: Url
    description: Text = ""
    submitted: Date
    mmh_bench_version: Label
    seed: int
    batch_size: Annotated[int, Field(ge=1)] = 512
    #: a mitigator's generations per task (the first N rows; None: all)
    samples: Annotated[int, Field(ge=1)] | None = None
    tasks: Annotated[list[TaskRef], Field(min_length=1, max_length=500)]
    skipped: list[Annotated[list[Label], Field(min_length=3, max_length=3)]] = Field(default_factory=list)
    checks: list[CheckItem]


class Difference(Strict):
    file: Label
    field: Label
    submitted: Plain
    rerun: Plain
    note: Text = ""


class HeldOutGap(Strict):
    """A headline metric's values on the public instances beside the held-out ones, and the
    verdict of :func:`mmh_bench.leaderboard.heldout.compare`: what verify records per task and the
    board's public-beside-held-out table shows."""

    public: list[float]
    heldout: list[float]
    public_mean: float | None = None
    heldout_mean: float | None = None
    heldout_sd: NonNeg | None = None
    gap: float | None = None
    tolerance: NonNeg | None = None
    flagged: bool = False  # public exceeds held-out beyond what the replicates' spread explains
    judged: bool = True  # False: too few replicates to judge the gap (never flagged then)


class HeldOutTask(HeldOutGap):
    """One task of a verification: the entry's headline metric on the public instances (its
    results) beside the held-out one (fresh instances built for the verification, never published)."""

    task: Label
    metric: Label


class Verification(Strict):
    """``submissions/<name>/verification.json``: the outcome of ``mmh-bench verify``."""

    schema_version: Literal[1]
    name: SubmissionName
    ok: bool
    date: Date
    mmh_bench_version: Label
    hardware: Label
    atol: NonNeg
    detector_sha256: HexHash | None = None
    files: dict[Label, HexHash]
    differences: list[Difference]
    # held-out evaluation (absent when verified with --no-heldout): per task, and the result files
    # under heldout/ that it comes from
    heldout: list[HeldOutTask] = Field(default_factory=list)
    heldout_files: dict[Label, HexHash] = Field(default_factory=dict)


# -- reported numbers ---------------------------------------------------------------------------
class ReportedMetrics(Strict):
    """Published numbers; any may be null when the paper does not give it."""

    auroc: Prob | None = None
    ap: Prob | None = None
    tpr_at_fpr: dict[Literal[FPR_KEYS], Prob | None] = Field(default_factory=dict)  # type: ignore[valid-type]
    auroc_ci: Annotated[list[Prob], Field(min_length=2, max_length=2)] | None = None
    per_subtype: dict[Literal[SUBTYPE_NAMES], "ReportedMetrics"] = Field(default_factory=dict)  # type: ignore[valid-type]
    mae: NonNeg | None = None
    mse: NonNeg | None = None
    concordance: Prob | None = None

    @model_validator(mode="after")
    def _check(self) -> "ReportedMetrics":
        _ci_ok(self.auroc_ci)
        return self


class ReportedEntry(Strict):
    task: Name
    detector: Name
    metrics: ReportedMetrics
    citation: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_no_control)]
    url: Url
    protocol_notes: Text
    model: Label | None = None
    access: AccessLabel | None = None


class ReportedFile(Strict):
    """``reported/<anything>.json``: ``{"entries": [...]}`` of numbers published elsewhere."""

    description: Text = ""
    entries: Annotated[list[ReportedEntry], Field(min_length=1, max_length=2000)]

    @model_validator(mode="after")
    def _unique(self) -> "ReportedFile":
        seen = set()
        for i, e in enumerate(self.entries):
            key = (e.task, e.detector, e.model, e.citation)
            if key in seen:
                raise ValueError(f"entries.{i} repeats task {e.task!r}, detector {e.detector!r}, "
                                 f"model and citation of an earlier entry")
            seen.add(key)
        return self


# -- reported rows shipped with the package (mmh_bench/leaderboard/reported/*.toml) --------------------------
#: How a source turned an ROC curve into "TPR at x% FPR": the same scores give different numbers.
TPR_RULES = {
    "strict-le": "largest TPR at FPR <= x (strict, as here)",
    "strict-lt": "last ROC point with FPR < x",
    "closest": "ROC point with FPR closest to x",
    "closest-flip": "FPR closest to x; labels flipped if AUROC < 0.5",
    "unstated": "not stated",
}
FprTarget = Annotated[str, Field(pattern=r"^0\.[0-9]*[1-9]$", max_length=8)]
Line = Annotated[str, Field(min_length=1, max_length=600), AfterValidator(_no_control)]


class PublishedMetrics(Strict):
    """Numbers as a source prints them; each absent when it does not give it (never guessed)."""

    auroc: Prob | None = None
    auroc_ci: Interval | None = None
    tpr_at_fpr: Annotated[dict[FprTarget, Prob], Field(max_length=8)] = Field(default_factory=dict)
    tpr_at_fpr_ci: Annotated[dict[FprTarget, Interval], Field(max_length=8)] = Field(default_factory=dict)
    #: LID track: mean percentage error of a global intrinsic-dimension estimate, in percent
    mpe: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "PublishedMetrics":
        if self.auroc is None and not self.tpr_at_fpr and self.mpe is None:
            raise ValueError("a reported row needs an auroc, a tpr_at_fpr or an mpe")
        if self.auroc_ci is not None and self.auroc is None:
            raise ValueError("auroc_ci without auroc")
        _ci_ok(self.auroc_ci)
        for key, ci in self.tpr_at_fpr_ci.items():
            if key not in self.tpr_at_fpr:
                raise ValueError(f"tpr_at_fpr_ci.{key} without tpr_at_fpr.{key}")
            _ci_ok(ci, f"tpr_at_fpr_ci.{key}")
        return self


class ReportedRow(Strict):
    """One row of a published table, attached to the mmh-bench task it is closest to (same model and
    prompt sets where the source names them). Shown as "reported, not re-measured", never ranked."""

    task: Name
    method: Label  # the method's name as the source prints it
    detector: DetectorRef | None = None  # the mmh-bench detector (with parameters) that implements it, if one does
    setting: Label | None = None  # generations per prompt, steps, seeds ... as the source gives them
    model: Label
    positives: Label
    negatives: Label
    metrics: PublishedMetrics
    source: Label  # paper and table or figure, or repository, commit and file
    url: Url | None = None
    tpr_rule: Literal["strict-le", "strict-lt", "closest", "closest-flip", "unstated"]
    protocol: Line  # one line: how the source's protocol differs from the task's

    def key(self) -> tuple[str, ...]:
        """What makes a row distinct (a repeated key is an error in the file)."""
        return (self.task, self.method, self.setting or "", self.model, self.negatives, self.source)


# -- parsing ------------------------------------------------------------------------------------
def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number in JSON (store numbers as finite numbers)")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def parse_json_bytes(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, no repeated keys, bounded nesting."""
    if len(data) > MAX_FILE_BYTES:
        raise SchemaError(f"file is {len(data)} bytes, over the {MAX_FILE_BYTES}-byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"not UTF-8 text: {exc}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"not valid JSON (truncated or malformed): {exc}") from None
    except RecursionError:
        raise SchemaError("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # constants, duplicate keys, integers too long to convert
        raise SchemaError(f"not valid JSON: {exc}") from None
    if any(isinstance(v, float) and not math.isfinite(v) for v in _floats(obj)):
        raise SchemaError("a number overflows to infinity")
    return obj


def _floats(obj: Any, depth: int = 0):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict) and depth < 64:
        for v in obj.values():
            yield from _floats(v, depth + 1)
    elif isinstance(obj, list) and depth < 64:
        for v in obj:
            yield from _floats(v, depth + 1)


def read_json(path: str | Path) -> Any:
    """Read a JSON file that may be hostile: size-capped before reading, symlinks refused."""
    path = Path(path)
    try:
        if path.is_symlink():
            raise SchemaError("is a symbolic link; the store holds plain files only")
        if not path.is_file():
            raise SchemaError("is not a plain file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SchemaError(f"file is {path.stat().st_size} bytes, over the {MAX_FILE_BYTES}-byte limit")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SchemaError(f"cannot read: {exc.strerror or exc}") from None
    return parse_json_bytes(data)


def _loc(loc: tuple[Any, ...], tagged: bool) -> str:
    parts = [str(p) for p in (loc[1:] if tagged and loc else loc)]
    return ".".join(parts) or "(top level)"


def describe(exc: ValidationError, *, tagged: bool = False, limit: int = 3) -> SchemaError:
    """One readable line per problem (at most ``limit``): the field's dotted path, what is wrong."""
    msgs, first = [], ""
    for err in exc.errors(include_url=False)[:limit]:
        field = _loc(tuple(err["loc"]), tagged)
        first = first or field
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {json.dumps(got)[:60] if _jsonable(got) else repr(got)[:60]})"
        msg = err["msg"].removeprefix("Value error, ")
        msgs.append(f"field {field!r}: {msg}{shown}")
    more = exc.error_count() - limit
    return SchemaError("; ".join(msgs) + (f"; and {more} more" if more > 0 else ""), first)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def validate_result(obj: Any) -> MemorizationResult | LIDResult:
    """Structural validation of a result document (no registry look-up)."""
    if not isinstance(obj, dict):
        raise SchemaError("field '(top level)': must be a JSON object", "(top level)")
    if obj.get("track") not in ("memorization", "lid"):
        raise SchemaError(f"field 'track': must be 'memorization' or 'lid' (got {str(obj.get('track'))[:60]!r})",
                          "track")
    try:
        return _RESULT.validate_python(obj)
    except ValidationError as exc:
        raise describe(exc, tagged=True) from None


def check_task(task: str, version: str, task_hash: str, tasks: Mapping[str, TaskSpec], *,
               family: str | None = None, track: str | None = None) -> None:
    """A result must name a known task, at its current version, with the current spec's hash."""
    spec = tasks.get(task)
    if spec is None:
        raise SchemaError(f"field 'task': unknown task {task[:64]!r} (not in the task registry)", "task")
    if version != spec.version:
        raise SchemaError(f"field 'task_version': {version!r} is not the current version "
                          f"{spec.version!r} of task {task!r} (stale result; rerun it)", "task_version")
    if task_hash != spec.hash:
        raise SchemaError(f"field 'task_hash': {task_hash!r} does not match the current spec of "
                          f"{task!r} ({spec.hash!r}); the result was made on another task definition",
                          "task_hash")
    if family is not None and family != spec.family:
        raise SchemaError(f"field 'task_family': {family!r}, but task {task!r} is {spec.family!r}",
                          "task_family")
    if track is not None and track != spec.track:
        raise SchemaError(f"field 'track': {track!r}, but task {task!r} is on {spec.track!r}", "track")


def validate_model(model: type[Strict], obj: Any) -> Any:
    """Validate ``obj`` against ``model``, turning pydantic's errors into a :class:`SchemaError`."""
    if not isinstance(obj, dict):
        raise SchemaError("field '(top level)': must be a JSON object", "(top level)")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise describe(exc) from None


def json_schema() -> dict[str, Any]:
    """The result schema as JSON Schema (for tools outside Python)."""
    return _RESULT.json_schema(by_alias=True)


__all__ = ["SCHEMA_VERSION", "MAX_FILE_BYTES", "SchemaError", "MemorizationResult", "LIDResult",
           "Instance", "SubmissionMeta", "Verification", "ReportedFile", "ReportedEntry", "ReportedMetrics",
           "ReportedRow", "PublishedMetrics", "TPR_RULES",
           "TaskRef", "CheckItem", "Difference", "parse_json_bytes", "read_json", "validate_result",
           "validate_model", "check_task", "describe", "json_schema"]
