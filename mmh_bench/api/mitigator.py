"""The mitigator contract: produce the generation for a condition and an initial noise, without copying.

A mitigator intervenes at sampling time, where the papers do: it may change the condition's
embedding, the initial noise, the guidance, the attention or the prompt text, and it runs the
task's own sampler (``ctx.generation.generate``), so its outputs are comparable sample by sample
with the task's unmitigated generations, and every network call is counted.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mmh_bench.api.access import Access
from mmh_bench.api.detector import Batch, Configurable

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.api.context import Context


class Mitigator(Configurable):
    """Base class for sampling-time mitigations of memorization.

    Subclasses set ``name`` and implement :meth:`generate`: for each row of ``batch`` (its
    condition in ``batch.cond``, its initial noise in ``batch.noise``; ``batch.x`` holds the same
    noise, since no image exists yet) return the finished sample, shape ``batch.noise.shape``.
    ``sweep`` names the main hyper-parameter and the settings a trade-off curve visits (about
    five, as the papers report them). Parameters are constructor arguments, as for detectors.
    """

    name: ClassVar[str] = ""
    access: ClassVar[Access] = Access.GENERATION
    version: ClassVar[str] = "1"
    cost_note: ClassVar[str] = ""
    #: model capabilities needed (``ScoreModel.capabilities``), e.g. "condition_embedding"
    requires: ClassVar[tuple[str, ...]] = ()
    #: (parameter, settings) swept for the memorization-vs-quality curve; () for a single point
    sweep: ClassVar[tuple[str, tuple[Any, ...]]] = ("", ())

    def fit(self, ctx: "Context") -> None:
        """Optional one-off preparation per task."""

    def generate(self, batch: Batch, ctx: "Context") -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def settings(self) -> list["Mitigator"]:
        """One mitigator per setting of :attr:`sweep` (itself alone when there is none)."""
        key, values = self.sweep
        if not key:
            return [self.clone()]
        return [self.clone().set_params(**{key: v}) for v in values]  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.params()})"
