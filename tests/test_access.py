import numpy as np
import pytest

import mmh_bench as mb
from mmh_bench.api.context import Context


def test_access_labels_round_trip():
    for a in [mb.Access.SAMPLES, mb.Access.MODEL, mb.Access.MODEL | mb.Access.TRAIN_DATA]:
        assert mb.Access.parse(a.label) == a
    assert mb.Access.MODEL_COND.grants_model() and mb.Access.MODEL_COND.grants_cond()
    assert not mb.Access.MODEL.grants_cond()


def _ctx(access, tiny):
    return Context("probe", access, tiny.info(), seed=0, model=tiny.score_model(),
                   train_index=tiny.train_index)


def test_undeclared_model_is_refused(tiny):
    ctx = _ctx(mb.Access.SAMPLES, tiny)
    with pytest.raises(mb.AccessError, match="Access.MODEL"):
        ctx.model
    with pytest.raises(mb.AccessError, match="Access.TRAIN_DATA"):
        ctx.train_index


def test_undeclared_condition_is_refused(tiny):
    ctx = _ctx(mb.Access.MODEL, tiny)
    x = tiny.samples[:4]
    assert ctx.model.eps(x, 0.5).shape == (4, 2)
    with pytest.raises(mb.AccessError, match="MODEL_COND"):
        ctx.model.eps(x, 0.5, cond=[0, 0, 0, 0])


def test_training_data_needs_declaration(tiny):
    ctx = _ctx(mb.Access.TRAIN_DATA, tiny)
    d, i = ctx.train_index.search(tiny.samples[:3], 2)
    assert d.shape == (3, 2)
    with pytest.raises(mb.AccessError):
        ctx.model


def test_model_counts_evaluations(tiny):
    m = tiny.score_model()
    m.reset_counters()
    m.eps(tiny.samples[:5], 0.1)
    m.eps_jvp(tiny.samples[:5], 0.1, np.ones((5, 2)))
    assert (m.nfe, m.njvp) == (5, 5)
