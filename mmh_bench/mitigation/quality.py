"""Quality of mitigated generations, measured by construction rather than by a learned judge.

- **precision / recall** (Kynkaanniemi et al., NeurIPS 2019, "Improved precision and recall"): the
  data manifold is the union of k-NN balls around held-out draws of the data distribution (never
  trained on); precision is the share of generated samples inside it (on the data manifold),
  recall the share of held-out draws inside the generated samples' balls (diversity kept). In
  pixel space for the image tasks, in the data space for the synthetic ones.
- **condition accuracy**: the share of samples a k-NN classifier, fitted on the training set and
  its classes, assigns to the class the sample's condition asked for (a class id, or the digit a
  caption names). A mitigation that escapes copying by ignoring the prompt scores low here.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

K_MANIFOLD = 3
K_CLASSIFIER = 5


def _rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    dist, _ = NearestNeighbors(n_neighbors=min(k + 1, len(x))).fit(x).kneighbors(x)
    return dist[:, -1]


def _coverage(centres: np.ndarray, radii: np.ndarray, queries: np.ndarray) -> float:
    """Share of ``queries`` inside at least one ball (centre, radius)."""
    nn = NearestNeighbors(n_neighbors=min(32, len(centres))).fit(centres)
    dist, idx = nn.kneighbors(queries)
    return float((dist <= radii[idx]).any(axis=1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_MANIFOLD) -> tuple[float, float]:
    """k-NN precision and recall of ``fake`` against ``real`` (both ``[n, ...]``)."""
    r, f = _rows(real), _rows(fake)
    if len(r) <= k or len(f) <= k:
        raise ValueError(f"precision/recall need more than k={k} real and generated samples")
    return _coverage(r, _radii(r, k), f), _coverage(f, _radii(f, k), r)


def condition_accuracy(train: np.ndarray, train_class: np.ndarray, samples: np.ndarray,
                       intended: np.ndarray, k: int = K_CLASSIFIER) -> float | None:
    """Share of samples classified as their ``intended`` class (entries < 0 are skipped: no class
    asked for); None when no sample asks for a class."""
    keep = np.asarray(intended) >= 0
    if not keep.any():
        return None
    clf = KNeighborsClassifier(n_neighbors=min(k, len(train))).fit(_rows(train), np.asarray(train_class))
    return float((clf.predict(_rows(samples)[keep]) == np.asarray(intended)[keep]).mean())
