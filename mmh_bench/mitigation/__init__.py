"""The mitigation track: sampling-time interventions scored against ground-truth copy labels.

``Mitigator`` is the contract (``contract.py``); ``evaluate.py`` regenerates a task's samples under
a mitigator and labels them with the task's own copy rule; ``quality.py`` measures what the
intervention costs in quality; ``board.py`` renders the memorization-vs-quality trade-off.
"""
from .contract import Mitigator
from .evaluate import evaluate_mitigator, mitigate, mitigation_metrics

__all__ = ["Mitigator", "evaluate_mitigator", "mitigate", "mitigation_metrics"]
