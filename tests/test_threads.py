"""Thread hygiene: small models train, sample and score single-threaded unless told otherwise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmh_bench import threads
from mmh_bench.task.models.mlp import MLPDenoiser, MLPScoreModel, fit_eps
from mmh_bench.task.sampler import Sampler, sample_task


def test_policy_and_override(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.threads_for(300_000) == 1
    assert threads.threads_for(threads.SMALL_MODEL_PARAMS, cores=8) == 8
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.threads_for(10) == 3
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(ValueError, match="MMH_BENCH_THREADS"):
        threads.threads_for(10)


def test_limited_threads_restores_the_previous_count():
    before = torch.get_num_threads()
    with threads.limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_training_and_sampling_a_small_model_run_on_one_thread(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    seen = []
    net = MLPDenoiser(2, hidden=16, depth=1)
    net.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    fit_eps(net, torch.randn(64, 2), None, 0, steps=3, batch_size=8, lr=1e-3, progress=False)
    sample_task(MLPScoreModel(net), 10, seed=0, sampler=Sampler(steps=3), progress=False)
    assert seen and set(seen) == {1}
    assert np.isfinite(np.asarray(seen)).all()
