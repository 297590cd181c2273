"""The labelling rule: which generated samples are memorized, and why chance does not explain them.

A generated sample passes the **base copy test** when, against the deduplicated training set,
``d1 / d2 < ratio`` (Yoon et al. 2023; Gu et al.) and ``d1 < abs_tol``. On a densely sampled
manifold that test also passes for a large share of *fresh* draws from the data distribution (on
mmh-toy's 5,000-point arc, for about a third of them): such "copies" are coincidences a perfectly
generalizing model would produce at the same rate, not memorization. So the labels add a
**chance test** per training point:

- A copy of a *duplicated* training point (a group of identical rows, or LID* = 0) is data-driven
  memorization (DD) by construction: reproducing it is exactly what the MMH calls DD-Mem.
- For every other training point p, look at the generated samples whose nearest training point
  is p (m_p of them) and at how many pass the base test (k_p). A model that generalizes spreads
  them over p's neighbourhood as the data does, so they pass at the rate q_p measured on fresh
  draws from the data distribution (never trained on) that fall nearest to p; a model that
  collapsed onto p makes nearly all of them pass. The copies of p are overfitting-driven
  memorization (OD) only when chance cannot explain k_p: P(Binomial(m_p, q_p) >= k_p) <
  ``[labels] chance_alpha``. q_p is shrunk towards the pooled rate where few fresh draws
  fall near p. Otherwise they are *chance copies*: labelled 0 (not memorized) and flagged for
  audit. The test compares shapes, not densities, so a model that is merely denser than the data
  somewhere does not turn that region into "memorized".

A second, independent set of fresh draws then measures the task's **null copy rate**: the share
of fresh draws the final rule would call memorized. A task whose null copy rate is not below 0.2x
its memorized fraction is refused at build time: its labels would not mean memorization.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import binom

from mmh_bench.retrieval.train_index import CopyLabels, TrainIndex, label_copies, nn_ratio
from .subtypes import SUBTYPE_CODE, SUBTYPE_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from .spec_models import CopyLabels as LabelsSpec
#: weight (in fresh draws) of the pooled pass rate in each point's shrunk null rate q_p
PRIOR_DRAWS = 2.0
#: a build is refused when its null copy rate is not below this multiple of its memorized fraction
MAX_NULL_TO_MEMORIZED = 0.2


class LabellingError(ValueError):
    """The labelling rule cannot be applied as the task states it."""


@dataclass
class Labelling:
    """Per-sample arrays of the labels and their audit trail, plus task-level statistics."""

    arrays: dict[str, np.ndarray]
    index: TrainIndex
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CopyRule:
    """The whole labelling rule of one instance, applicable to any set of samples.

    ``null_pass_rate`` holds q_p per deduplicated training point: the rate at which fresh data
    draws nearest to p pass the base test, or -1 for a duplicated point (copying it is DD-Mem
    whatever chance says). The build labels its samples with :meth:`apply`; the reference row
    restates exactly this rule from the training index it is granted.
    """

    ratio: float
    abs_tol: float
    chance_alpha: float
    null_pass_rate: np.ndarray

    @property
    def duplicated(self) -> np.ndarray:
        return self.null_pass_rate < 0

    def base(self, index: TrainIndex, samples: np.ndarray) -> tuple[CopyLabels, np.ndarray]:
        """The base copy test per sample, and its margin ``-max(d1 / (ratio d2), d1 / abs_tol)``:
        above -1 exactly when the test passes (-inf where no neighbour was found)."""
        lab = label_copies(np.asarray(samples, dtype=np.float32), index, abs_tol=self.abs_tol, ratio=self.ratio)
        margin = -np.maximum(nn_ratio(lab.d1, lab.d2) / self.ratio, lab.d1 / self.abs_tol)
        return lab, np.where(lab.nn >= 0, margin, -np.inf)

    def apply(self, index: TrainIndex, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Per-sample ``base`` (passes the copy test), ``memorized``, ``chance`` (a base copy chance
        explains), ``nn`` (-1 when not found), ``margin`` (see :meth:`base`), d1, d2, and per point
        ``memorized_point``."""
        lab, margin = self.base(index, samples)
        n_points = len(index)
        found = lab.nn >= 0
        nn = np.where(found, lab.nn, 0)
        single = ~self.duplicated[nn] & found
        m_p = np.bincount(nn[single], minlength=n_points)
        k_p = np.bincount(nn[single & lab.memorized], minlength=n_points)
        q_p = np.clip(self.null_pass_rate, 0.0, 1.0)
        # P(X >= k_p) for X ~ Binomial(m_p, q_p): how surprising the copies of p are under chance
        p_value = np.where(k_p > 0, binom.sf(k_p - 1, m_p, q_p), 1.0)
        memorized_point = self.duplicated | (p_value < self.chance_alpha)
        memorized = lab.memorized & memorized_point[nn]
        return {"base": lab.memorized, "memorized": memorized, "chance": lab.memorized & ~memorized,
                "nn": lab.nn, "d1": lab.d1, "d2": lab.d2, "margin": margin,
                "memorized_point": memorized_point}

    def to_meta(self) -> dict[str, float]:
        return {"ratio": self.ratio, "abs_tol": self.abs_tol, "chance_alpha": self.chance_alpha}


def rule_params(labels_cfg: LabelsSpec, scale: float = 1.0) -> tuple[float, float, float]:
    """(abs_tol, ratio, chance_alpha) of a spec's ``[labels]`` table, distances times ``scale``."""
    return labels_cfg.abs_tol * scale, labels_cfg.ratio, labels_cfg.chance_alpha


def null_pass_rate(index: TrainIndex, duplicated: np.ndarray, draws: np.ndarray | None, abs_tol: float,
                   ratio: float) -> tuple[np.ndarray, float | None]:
    """q_p per point from fresh draws (shrunk towards the pooled rate by PRIOR_DRAWS draws), -1 at
    duplicated points; all 0 (every copy counts) when there are no fresh draws. Also the pooled rate."""
    if draws is None or not len(draws):
        return np.where(duplicated, -1.0, 0.0), None
    lab = label_copies(np.asarray(draws, dtype=np.float32), index, abs_tol=abs_tol, ratio=ratio)
    ok = lab.nn >= 0
    m0 = np.bincount(lab.nn[ok], minlength=len(index))
    k0 = np.bincount(lab.nn[ok & lab.memorized], minlength=len(index))
    pooled = float((k0[~duplicated].sum() + 0.5) / (m0[~duplicated].sum() + 1.0))
    q = (k0 + PRIOR_DRAWS * pooled) / (m0 + PRIOR_DRAWS)
    return np.where(duplicated, -1.0, q), pooled


def label_samples(samples: np.ndarray, train: np.ndarray, train_lid: np.ndarray, labels_cfg: LabelsSpec,
                  *, null_draws: np.ndarray | None = None, null_check: np.ndarray | None = None,
                  train_source: np.ndarray | None = None, scale: float = 1.0) -> Labelling:
    """Apply the task's labelling rule (module docstring) to its generated samples.

    ``null_draws`` estimate each training point's chance pass rate; ``null_check`` (independent
    fresh draws) measures the null copy rate; without them no chance test is possible and every
    base copy counts (recorded in the stats). ``train_source`` names the designed role of each
    training row (component, image group), carried to each sample for the composition audit.
    ``scale`` multiplies the spec's distances (a test instance placed at another scale).
    """
    abs_tol, ratio, alpha = rule_params(labels_cfg, scale)
    index = TrainIndex(train, dedup_tol=labels_cfg.dedup_tol * scale)
    if len(index) < 2:
        raise LabellingError("the ratio test needs at least two distinct training points")
    lid_rep = np.asarray(train_lid, dtype=np.float32)[index.rep_row]
    duplicated = (lid_rep == 0) | (index.group_size > 1)
    q, pooled = null_pass_rate(index, duplicated, null_draws, abs_tol, ratio)
    rule = CopyRule(ratio=ratio, abs_tol=abs_tol, chance_alpha=alpha, null_pass_rate=q)
    out = rule.apply(index, samples)
    memorized, nn = out["memorized"], out["nn"]
    found = nn >= 0
    safe = np.where(found, nn, 0)
    subtype = np.where(memorized, np.where(duplicated[safe], SUBTYPE_CODE["DD"], SUBTYPE_CODE["OD"]),
                       SUBTYPE_CODE["none"]).astype(np.int8)
    rep = np.where(found, index.rep_row[safe], -1)
    arrays = {"labels": memorized.astype(np.int8), "subtype": subtype, "chance_copy": out["chance"].astype(np.int8),
              "d1": out["d1"], "d2": out["d2"], "nn": nn, "nn_row": rep,
              "group_size": np.where(found, index.group_size[safe], 0),
              "lid_star": np.where(found, lid_rep[safe], -1.0).astype(np.float32),
              # q_p of each training row's representative: what the reference row needs to restate the rule
              "train_null_rate": q[index.group_of_row].astype(np.float32)}
    if train_source is not None:
        arrays["source"] = np.where(found, np.asarray(train_source)[np.maximum(rep, 0)], -1).astype(np.int16)
    stats: dict[str, Any] = {**rule.to_meta(), "n_unfound_neighbour": int((~found).sum()),
                             "rule": ("base copy test + per-point binomial chance test" if pooled is not None
                                      else "base copy test (no fresh draws: no chance test)"),
                             "null_draws": int(len(null_draws)) if null_draws is not None else 0}
    if pooled is not None:
        stats["pooled_null_pass_rate"] = round(pooled, 6)
    check = null_check if null_check is not None and len(null_check) else null_draws
    if check is not None and len(check):
        # fresh draws that the rule, as decided on the generated samples, would call memorized
        c, _ = rule.base(index, check)
        hit = c.memorized & out["memorized_point"][np.maximum(c.nn, 0)] & (c.nn >= 0)
        stats.update(null_copy_rate=round(float(hit.mean()), 6), null_check_draws=int(len(check)),
                     null_check_independent=null_check is not None and len(null_check) > 0)
    stats.update(n_memorized=int(memorized.sum()), n_chance_copies=int(out["chance"].sum()),
                 memorized_points=int((np.bincount(safe[memorized], minlength=len(index)) > 0).sum()))
    return Labelling(arrays=arrays, index=index, stats=stats)


def check_null_rate(task: str, stats: dict[str, Any], memorized_frac: float) -> str | None:
    """The reason a task's labels do not mean memorization (null copy rate too high), else None."""
    rate = stats.get("null_copy_rate")
    if rate is None or memorized_frac <= 0:
        return None
    if rate >= MAX_NULL_TO_MEMORIZED * memorized_frac:
        return (f"task {task!r}: null copy rate {rate:.4f} (fresh data draws the rule calls memorized) is "
                f"not below {MAX_NULL_TO_MEMORIZED}x the memorized fraction {memorized_frac:.4f}: "
                "chance explains too many of its labels")
    return None


def composition(arrays: dict[str, np.ndarray], source_names: list[str] | None) -> list[dict[str, Any]]:
    """Positives by designed source x subtype, with chance copies and all samples: the audit table."""
    if "source" not in arrays:
        return []
    src, sub = arrays["source"], arrays["subtype"]
    names = list(source_names or [])
    shown = [n for n in SUBTYPE_NAMES if n in ("DD", "OD") or (sub == SUBTYPE_CODE[n]).any()]
    rows = []
    for code in sorted(set(src.tolist())):
        here = src == code
        name = names[code] if 0 <= code < len(names) else ("no neighbour" if code < 0 else f"source {code}")
        rows.append({"source": name, "samples_nearest": int(here.sum()),
                     **{n: int((here & (sub == SUBTYPE_CODE[n])).sum()) for n in shown},
                     "chance_copies": int((here & (arrays.get("chance_copy", 0) == 1)).sum())})
    return rows
