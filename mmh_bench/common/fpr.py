"""The TPR@FPR targets and when a number of negatives resolves them: read by the metrics that
compute them, the result schema that checks them and the board that shows them."""
from __future__ import annotations

FPR_TARGETS = (0.001, 0.01, 0.05)
#: the targets as the result files key them ("0.001", "0.01", "0.05")
FPR_KEYS = tuple(str(a) for a in FPR_TARGETS)
#: expected false positives at the target FPR below which a TPR@FPR is not resolvable
MIN_EXPECTED_FP = 5
#: fewest negatives of a source for its AUROC (below: None)
MIN_SOURCE_NEG = 2


def tpr_resolvable(n_neg: int, alpha: float) -> bool:
    """Whether ``n_neg`` negatives resolve FPR <= alpha (at least :data:`MIN_EXPECTED_FP` expected)."""
    return n_neg * alpha >= MIN_EXPECTED_FP - 1e-9
