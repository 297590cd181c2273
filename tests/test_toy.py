"""The science check on the real mmh-toy task (its published test instance, replicate 0)."""
import numpy as np

from mmh_bench.api.context import Context
from mmh_bench.api.detector import Batch
from mmh_bench.task.instance import SUBTYPE_CODE
from mmh_bench.evaluation.runner import evaluate_pair
from mmh_bench.registry import make_detector


def test_toy_meets_its_promises(toy):
    s = toy.summary()
    assert 0.02 <= s["memorized_frac"] <= 0.5
    assert s["per_subtype"]["DD"] >= 5 and s["per_subtype"]["OD"] >= 5
    # the copies of the point mass really collapsed onto it
    dd = toy.subtype == SUBTYPE_CODE["DD"]
    assert np.median(toy.arrays["d1"][dd]) < 0.02
    # the labels mean memorization: OD copies are of the isolated points, not chance hits on the arc
    comp = {row["source"]: row for row in toy.meta["composition"]}
    od = sum(row["OD"] for row in comp.values())
    assert od >= 20 and comp["isolated far points"]["OD"] >= 0.8 * od
    assert comp["dense arc"]["chance_copies"] > 100 and comp["dense arc"]["OD"] <= 0.2 * od
    assert toy.meta["null_copy_rate"] < 0.2 * s["memorized_frac"]


def test_flipd_separates_and_reads_near_zero_on_the_point_mass(toy):
    res = evaluate_pair(toy, make_detector("flipd"))
    assert res.status == "ok", res.error
    m = res.metrics
    assert m.auroc > 0.75
    assert m.per_subtype["DD"].auroc > 0.95
    det = make_detector("flipd")
    ctx = Context(det.name, det.access, toy.info(), seed=0, model=toy.score_model(),
                  samples=Batch(toy.samples, index=np.arange(len(toy.samples))))
    det.fit(ctx)  # t0 chosen from all the task's samples, as the evaluator does
    dd = toy.subtype == SUBTYPE_CODE["DD"]
    non = toy.labels == 0
    lid_dd = det.estimate(Batch(toy.samples[dd]), ctx)
    lid_non = det.estimate(Batch(toy.samples[non][:1000]), ctx)
    assert abs(np.median(lid_dd)) < 0.5  # point mass: LID ~ 0
    assert 0.5 < np.median(lid_non) < 1.5  # the arc: LID ~ 1


def test_random_sits_near_one_half(toy):
    res = evaluate_pair(toy, make_detector("random"))
    lo, hi = res.metrics.auroc_ci
    assert lo < 0.5 < hi or abs(res.metrics.auroc - 0.5) < 0.05
