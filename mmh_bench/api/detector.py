"""The detector contract: one float per sample, higher = more memorized."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from .access import Access

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context


class Configurable:
    """Parameters the scikit-learn way, shared by detectors and mitigators: the constructor's
    arguments, kept as attributes of the same name, are the hyper-parameters recorded with every
    result; fitted state is private; :meth:`clone` gives a fresh, unfitted copy."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """Constructor parameter names, read from ``__init__``'s signature as scikit-learn does."""
        from sklearn.base import BaseEstimator
        return BaseEstimator._get_param_names.__func__(cls)  # type: ignore[attr-defined]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor's parameters with their current values (scikit-learn's contract).

        Each ``__init__`` parameter must be stored unchanged as an attribute of the same name, so
        that ``type(obj)(**obj.get_params())`` rebuilds it; fitted state lives in
        ``_private`` or ``trailing_underscore_`` attributes and is never a parameter."""
        out = {}
        for key in self._get_param_names():
            if not hasattr(self, key):
                raise AttributeError(f"{type(self).__name__}.__init__ takes {key!r} but does not store it "
                                     f"as self.{key}; parameters are constructor arguments kept as attributes")
            out[key] = getattr(self, key)
        return out

    def set_params(self, **params: Any) -> "Configurable":
        names = set(self._get_param_names())
        for key, value in params.items():
            if key not in names:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; "
                                 f"its parameters: {sorted(names) or 'none'}")
            setattr(self, key, value)
        return self

    def params(self) -> dict[str, Any]:
        """Hyper-parameters recorded with each result: the constructor's arguments, nothing fitted."""
        return self.get_params()

    def clone(self) -> "Configurable":
        """A fresh, unfitted copy with the same constructor parameters (``sklearn.base.clone``)."""
        from sklearn.base import clone
        return clone(self)


@dataclass(frozen=True)
class Batch:
    """A slice of a task's generated samples.

    ``x`` has shape ``[n, ...]`` in the space the model works in. ``cond`` holds one condition
    per sample (class ids or prompts), or None when the task is unconditional or the detector
    did not declare ``Access.MODEL_COND``. ``index`` gives the rows' positions in the task.
    ``noise`` holds each sample's initial noise x_T (shape of ``x``) for detectors that declared
    ``Access.GENERATION``, else None.
    """

    x: np.ndarray
    cond: Sequence[Any] | None = None
    index: np.ndarray = field(default=None)  # type: ignore[assignment]
    noise: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.index is None:
            object.__setattr__(self, "index", np.arange(len(self.x)))

    def __len__(self) -> int:
        return len(self.x)


class Detector(Configurable):
    """Base class for memorization detectors.

    Subclasses set ``name`` and ``access`` and implement :meth:`score`. ``version`` is part of
    the result's identity: bump it when the scores would change, so stale results are rerun.
    ``cost_note`` says what one sample costs (e.g. "1 forward + D JVPs") for the board.
    """

    name: ClassVar[str] = ""
    access: ClassVar[Access] = Access.SAMPLES
    version: ClassVar[str] = "1"
    reference: ClassVar[bool] = False  # True for detectors that restate the labelling rule
    #: board group below the access level's (see :func:`detector_group`): "shortcut" for
    #: baselines that exploit what a public spec says about a dev instance, or "chance"
    group: ClassVar[str] = ""
    cost_note: ClassVar[str] = ""
    #: one line the board prints with the detector's rows (e.g. a bandwidth rule that decides them)
    note: ClassVar[str] = ""
    #: model capabilities needed beyond eps (see ``ScoreModel.capabilities``)
    requires: ClassVar[tuple[str, ...]] = ()

    #: task families the detector does not run on by default, with the reason (the runner reports it)
    unsuited_families: ClassVar[dict[str, str]] = {}

    def unsuited_model(self, model: Any) -> str | None:
        """Why this detector, with its parameters, cannot run on a built task's score model (e.g.
        a layer the model does not have), else None. The evaluator asks before scoring and records
        the pair as not applicable with this reason, so a protocol the model cannot serve is never
        replaced by another one silently."""
        return None

    def fit(self, ctx: "Context") -> None:
        """Optional one-off preparation per task (e.g. choosing a time from unlabelled samples)."""

    def score(self, batch: Batch, ctx: "Context") -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, access={self.access.label})"


#: The board's detector groups; a ranking never mixes groups.
GROUPS = ("reference", "training-set oracle", "generation-time", "model-side", "sample-side", "shortcut", "chance")
#: groups a detector may name for itself: below any its access would give it
DOWNGRADES = ("shortcut", "chance")


def access_group(det: "Detector | type[Detector]") -> str:
    """The group a detector's access puts it in: training-set oracles read the training set's
    neighbours (the labels are distances to that set); otherwise whether it reads the replayed
    generation, the model, or the samples alone."""
    if det.access.grants_train():
        return "training-set oracle"
    if det.access.grants_generation():
        return "generation-time"
    return "model-side" if det.access.grants_model() else "sample-side"


def claimed_group(det: "Detector | type[Detector]") -> str:
    """The group a class names for itself, checked: one of :data:`DOWNGRADES`, its access group,
    or "" (none)."""
    if det.group and det.group not in (*DOWNGRADES, access_group(det)):
        raise ValueError(f"detector group {det.group!r}: a detector's group follows its access "
                         f"({access_group(det)!r}); it may only place itself lower ({' or '.join(DOWNGRADES)})")
    return det.group


def detector_group(det: "Detector | type[Detector]") -> str:
    """Which board group a detector ranks in: the reference for the restatement of the labelling
    rule, else what its declared access gives (:func:`access_group`), unless the class places
    itself lower (``"shortcut"``, ``"chance"``). A group is never taken on the class's word alone."""
    if det.reference:
        return "reference"
    return claimed_group(det) or access_group(det)


class LIDEstimator(Detector):
    """A detector whose score is an LID estimate; the memorization score is its negation.

    Subclasses implement :meth:`estimate`. On memorization tasks a low LID means memorized, so
    ``score = -estimate``; on LID tasks the evaluator reads :meth:`estimate` directly.
    """

    def estimate(self, batch: Batch, ctx: "Context") -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, batch: Batch, ctx: "Context") -> np.ndarray:
        return -np.asarray(self.estimate(batch, ctx), dtype=float)
