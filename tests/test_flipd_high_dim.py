"""The science check in D = 100 on the real syn100-dd task (about a minute on two cores):
FLIPD's default t0 rule must read the duplicated points' copies as near 0-dimensional and the
5-manifolds' samples as higher, without labels."""
import numpy as np
import pytest

from mmh_bench.task.build import build_task
from mmh_bench.api.context import Context
from mmh_bench.api.detector import Batch
from mmh_bench.task.instance import SUBTYPE_CODE
from mmh_bench.registry import get_task, make_detector
from mmh_bench.evaluation.runner import evaluate_pair


@pytest.fixture(scope="module")
def syn100():
    return build_task(get_task("syn100-dd"), progress=False)


def test_flipd_default_rule_separates_and_reads_copies_near_zero_in_d100(syn100):
    res = evaluate_pair(syn100, make_detector("flipd"))
    assert res.status == "ok", res.error
    assert res.metrics.auroc > 0.9
    det = make_detector("flipd")
    ctx = Context(det.name, det.access, syn100.info(), seed=0, model=syn100.score_model(),
                  samples=Batch(syn100.samples, index=np.arange(len(syn100.samples))))
    det.fit(ctx)
    assert 0.05 < det.chosen_t0 < 0.4  # past the network's blur, before washout
    dd = syn100.subtype == SUBTYPE_CODE["DD"]
    non = np.flatnonzero(syn100.labels == 0)[:300]
    lid_dd = det.estimate(Batch(syn100.samples[dd], index=np.flatnonzero(dd)), ctx)
    lid_non = det.estimate(Batch(syn100.samples[non], index=non), ctx)
    assert np.median(lid_dd) < 3.0  # point masses: near 0 of D = 100 dimensions
    assert 4.0 < np.median(lid_non) < 10.0  # LID* = 5 manifolds, read above the copies
