"""The mitigation track: sampling-time interventions scored against ground-truth copy labels.

``Mitigator`` is the contract (``mmh_bench.api.mitigator``, beside the detector's); ``evaluate.py`` regenerates a task's samples under
a mitigator and labels them with the task's own copy rule; ``quality.py`` measures what the
intervention costs in quality; ``board.py`` renders the memorization-vs-quality trade-off.
Stable Diffusion tasks, which have no copy rule, are scored as MemBench does (``sd.py``: SSCD to
the memorized prompts' ground-truth images from ``ground_truth.py``, CLIP score; ``membench.py``).
The evaluator's names load on first use, so a sealed worker importing the contract stays light.
"""
from typing import Any

from mmh_bench.api.mitigator import Mitigator

__all__ = ["Mitigator", "evaluate_mitigator", "mitigate", "mitigation_metrics"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import evaluate
        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
