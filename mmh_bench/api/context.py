"""What a detector may see: exactly what its declared access level grants, nothing more."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .access import Access

if TYPE_CHECKING:  # pragma: no cover
    from .detector import Batch
    from mmh_bench.task.sampler import Sampler, Step
    from mmh_bench.retrieval.train_index import TrainIndex
    from .score_model import ScoreModel


class AccessError(PermissionError):
    """A detector asked the context for something its declared access level does not grant."""


@dataclass(frozen=True)
class TaskInfo:
    """Public facts about a task that every detector may read (never labels)."""

    name: str
    family: str
    shape: tuple[int, ...]
    conditional: bool
    n_samples: int

    @property
    def dim(self) -> int:
        out = 1
        for s in self.shape:
            out *= s
        return out


#: what ``ctx.model`` offers every detector with Access.MODEL: the score-model interface (and a
#: discrete-time model's timestep grid), never the network, its tables or its pipeline
MODEL_ATTRS = frozenset({"shape", "dim", "conditional", "capabilities", "device", "output_device", "alpha_bar",
                         "sigma", "timesteps", "num_train_timesteps", "terminal_time", "cross_attention_layers",
                         "full_precision"})
#: ... and with Access.MODEL_COND, what reads or perturbs the conditions
COND_ATTRS = frozenset({"captions", "condition_embedding", "eps_embedded", "rescaled_attention"})


class _ModelView:
    """The score model as seen by one detector: its interface only (:data:`MODEL_ATTRS`), conditions
    only with ``Access.MODEL_COND``. Every call is counted by the model itself."""

    __slots__ = ("__model", "__allow_cond", "__who")

    def __init__(self, model: "ScoreModel", allow_cond: bool, who: str) -> None:
        self.__model = model
        self.__allow_cond = allow_cond
        self.__who = who

    def _guard(self, cond: Sequence[Any] | None) -> None:
        if cond is not None and not self.__allow_cond:
            raise AccessError(f"detector {self.__who!r} passed a condition to the model; "
                              "conditional predictions need Access.MODEL_COND")

    def eps(self, x: Any, t: Any, cond: Sequence[Any] | None = None):
        self._guard(cond)
        return self.__model.eps(x, t, cond)

    def eps_jvp(self, x: Any, t: Any, v: Any, cond: Sequence[Any] | None = None):
        self._guard(cond)
        return self.__model.eps_jvp(x, t, v, cond)

    def score(self, x: Any, t: Any, cond: Sequence[Any] | None = None):
        self._guard(cond)
        return self.__model.score(x, t, cond)

    def cross_attention(self, x: Any, t: Any, cond: Sequence[Any], **kwargs: Any):
        self._guard(cond)
        return self.__model.cross_attention(x, t, cond, **kwargs)  # e.g. layer= on Stable Diffusion

    def __getattr__(self, name: str) -> Any:
        if name in MODEL_ATTRS or (name in COND_ATTRS and self.__allow_cond):
            return getattr(self.__model, name)
        if name in COND_ATTRS:
            raise AccessError(f"ctx.model.{name} needs Access.MODEL_COND; detector {self.__who!r} declared less")
        raise AttributeError(f"ctx.model offers {', '.join(sorted(MODEL_ATTRS | {'eps', 'eps_jvp', 'score'}))} "
                             f"(and with MODEL_COND {', '.join(sorted(COND_ATTRS))}), not {name!r}: the network "
                             "is reached through the counted interface only")


class GenerationView:
    """The generation-time handle (``Access.GENERATION``): the task's sampler and a replay of a
    batch's own trajectories from their stored x_T. Network calls go through the counted model."""

    def __init__(self, model: "ScoreModel", sampler: "Sampler") -> None:
        self._model = model
        self.sampler = sampler

    def times(self) -> list[float]:
        """The sampler's time grid, first step first."""
        return [float(t) for t in self.sampler.times()]

    @staticmethod
    def _start(batch: "Batch", noise: Any, cond: Sequence[Any] | None) -> tuple[Any, list[Any] | None]:
        """The x_T and conditions a replay starts from: the batch's own unless replaced."""
        x_t = batch.noise if noise is None else noise
        if x_t is None:
            raise AccessError("this batch carries no initial noise (Access.GENERATION on a task that stores it)")
        c = batch.cond if cond is None else cond
        return x_t, None if c is None else list(c)

    def trajectory(self, batch: "Batch", n_steps: int | None = None, *, noise: Any = None,
                   cond: Sequence[Any] | None = None) -> Iterator["Step"]:
        """The first ``n_steps`` steps (all by default) of the generations of ``batch`` (x_T
        ``batch.noise``, conditions ``batch.cond``) under the task's sampler, exactly as they ran
        when the task was built. ``noise`` / ``cond`` replace them, e.g. to draw further
        generations of the same conditions."""
        from mmh_bench.task.sampler import trajectory
        x_t, c = self._start(batch, noise, cond)
        return trajectory(self._model, x_t, self.sampler, c, n_steps=n_steps)

    def generate(self, batch: "Batch", *, noise: Any = None, cond: Sequence[Any] | None = None,
                 guidance: float | None = None, cond_eps: Any = None) -> np.ndarray:
        """Run the task's sampler to the end for ``batch`` (its x_T and conditions unless replaced):
        the finished samples. ``guidance`` replaces the sampler's scale; ``cond_eps(y, t)`` its
        conditional branch (e.g. :meth:`ScoreModel.eps_embedded` with a changed embedding)."""
        import dataclasses
        from mmh_bench.task.sampler import generate
        x_t, c = self._start(batch, noise, cond)
        sampler = self.sampler if guidance is None else dataclasses.replace(self.sampler, guidance=float(guidance))
        return generate(self._model, x_t, sampler, c, progress=False, cond_eps=cond_eps)


class Context:
    """Per-task handle given to ``Detector.fit`` and ``Detector.score``.

    Attributes a detector did not declare raise :class:`AccessError` naming the level needed.
    ``seed`` is fixed per (task, detector) so stochastic detectors are reproducible.
    """

    def __init__(self, detector: str, access: Access, task: TaskInfo, *, seed: int,
                 model: "ScoreModel | None" = None, train_index: "TrainIndex | None" = None,
                 extras: dict[str, Any] | None = None, samples: "Batch | None" = None,
                 sampler: "Sampler | None" = None) -> None:
        self.detector = detector
        self.access = access
        self.task = task
        self.seed = int(seed)
        self._model = model
        self._train_index = train_index
        self._extras = dict(extras or {})
        self._samples = samples
        self._sampler = sampler

    def rng(self, offset: int = 0) -> np.random.Generator:
        """A generator seeded from the context seed (plus an offset for independent streams)."""
        return np.random.default_rng([self.seed, offset])

    @property
    def samples(self) -> "Batch":
        """All of the task's generated samples as one batch (conditions only with MODEL_COND).

        For detectors whose ``fit`` needs the whole set: neighbour-based estimators over the
        samples, label-free choices of a hyper-parameter. Every detector may read it.
        """
        if self._samples is None:
            raise AccessError(f"this context for {self.detector!r} carries no task samples")
        return self._samples

    @property
    def model(self) -> _ModelView:
        if not self.access.grants_model():
            raise AccessError(f"detector {self.detector!r} declared access {self.access.label!r}; "
                              "ctx.model needs Access.MODEL (or Access.MODEL_COND)")
        if self._model is None:
            raise AccessError(f"task {self.task.name!r} provides no score model")
        return _ModelView(self._model, self.access.grants_cond(), self.detector)

    @property
    def generation(self) -> GenerationView:
        """The task's sampler and a replay of each sample's trajectory (``Access.GENERATION``)."""
        if not self.access.grants_generation():
            raise AccessError(f"detector {self.detector!r} declared access {self.access.label!r}; "
                              "ctx.generation needs Access.GENERATION")
        if self._sampler is None or self._model is None:
            raise AccessError(f"task {self.task.name!r} keeps no replayable generation (sampler and x_T)")
        return GenerationView(self._model, self._sampler)

    @property
    def train_index(self) -> "TrainIndex":
        if not self.access.grants_train():
            raise AccessError(f"detector {self.detector!r} declared access {self.access.label!r}; "
                              "ctx.train_index needs Access.TRAIN_DATA")
        if self._train_index is None:
            raise AccessError(f"task {self.task.name!r} provides no training index")
        return self._train_index

    def extra(self, key: str) -> Any:
        """Task-specific handles (e.g. a text encoder); each names the access it needs."""
        if key not in self._extras:
            raise KeyError(f"task {self.task.name!r} has no extra {key!r}; "
                           f"available: {sorted(self._extras)}")
        need, value = self._extras[key]
        if not (self.access & need):
            raise AccessError(f"ctx.extra({key!r}) needs {need.label!r}; detector "
                              f"{self.detector!r} declared {self.access.label!r}")
        return value
