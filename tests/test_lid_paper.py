"""The FLIPD paper's synthetic data sets (mmh_bench/task/data/lid_paper.py): each piece recovers its
known dimension exactly on noise-free draws, from the rank of its chart's Jacobian and from the rank
of a small neighbourhood's covariance; the shipped specs build and bad specs are refused."""
from __future__ import annotations

import numpy as np
import pytest

from mmh_bench.task.spec_models import DGMData

from mmh_bench.registry import suite
from mmh_bench.task.data import lid_paper
from mmh_bench.task.spec import SpecError, parse_spec

PAPER = {s.name: s for s in suite("lid-paper")}
EXPECTED = {"lid-lollipop": [2, 1, 0], "lid-doughnut": [1, 2], "lid-swissroll": [2],
            "lid-affine10": [2, 4, 8], "lid-squiggly10": [2, 4, 8], "lid-affine100": [10, 25, 50]}


def _jacobian_ranks(piece: lid_paper.Piece, z: np.ndarray, h: float = 1e-5) -> list[int]:
    """Rank of the chart's Jacobian at each latent point (central differences, float64)."""
    ranks = []
    for zi in z:
        cols = [(piece.chart((zi + h * e)[None]) - piece.chart((zi - h * e)[None]))[0] / (2 * h)
                for e in np.eye(len(zi))]
        if not cols:
            ranks.append(0)
            continue
        sv = np.linalg.svd(np.stack(cols, 1), compute_uv=False)
        ranks.append(int((sv > 1e-6 * max(sv.max(), 1e-12)).sum()))
    return ranks


def test_every_shipped_setting_is_listed():
    assert set(PAPER) == set(EXPECTED)
    assert not set(PAPER) & {s.name for s in suite("default")}  # opt-in only


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_chart_jacobian_has_rank_lid(name):
    data = PAPER[name].model.data
    ps, dim = lid_paper.pieces(data, PAPER[name].seed)
    assert [p.lid for p in ps] == EXPECTED[name]
    rng = np.random.default_rng(0)
    for p in ps:
        z = p.sample(rng, 5)
        assert z.shape == (5, p.lid) and p.chart(z).shape == (5, dim)
        assert _jacobian_ranks(p, z) == [p.lid] * 5


@pytest.mark.parametrize("name", ["lid-lollipop", "lid-doughnut", "lid-swissroll", "lid-affine10", "lid-squiggly10"])
def test_local_pca_rank_on_a_small_neighbourhood(name):
    """Points drawn in a tiny latent ball around one point span exactly LID* directions."""
    data = PAPER[name].model.data
    ps, _ = lid_paper.pieces(data, PAPER[name].seed)
    rng = np.random.default_rng(1)
    for p in ps:
        z0 = p.sample(rng, 1)
        z = z0 + 1e-5 * rng.uniform(-1, 1, (max(8 * p.lid, 8), p.lid))
        x = p.chart(z)
        sv = np.linalg.svd(x - x.mean(0), compute_uv=False)
        rank = int((sv > 1e-4 * sv.max()).sum()) if sv.max() > 1e-12 else 0  # curvature terms are O(eps^2)
        assert rank == p.lid, (name, p.lid, sv[:p.lid + 2])


def test_draws_follow_weights_and_queries_cover_every_piece():
    data = PAPER["lid-lollipop"].model.data
    x, lid, comp = lid_paper.draw(data, 28, 7000)
    frac = np.bincount(comp, minlength=3) / len(comp)
    np.testing.assert_allclose(frac, [4 / 7, 2 / 7, 1 / 7], atol=0.02)
    assert np.allclose(x[lid == 0], 0.0) and np.all(np.linalg.norm(x[lid == 2] - 3.0, axis=1) <= 1 + 1e-6)
    qx, qlid, qcomp = lid_paper.draw_per_piece(data, 28, 50, 99)
    assert np.bincount(qcomp).tolist() == [50, 50, 1] and qlid.tolist().count(0) == 1
    # same seed, same geometry; a fresh draw seed, fresh points
    again, _, _ = lid_paper.draw(data, 28, 7000)
    np.testing.assert_array_equal(x, again)
    other, _, _ = lid_paper.draw(data, 28, 7000, draw_seed=5)
    assert not np.array_equal(x, other)


def test_mixtures_are_standardised_and_pieces_apart():
    data = PAPER["lid-squiggly10"].model.data
    x, lid, comp = lid_paper.draw(data, 28, 6000)
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x.mean(0), 0, atol=0.1)
    np.testing.assert_allclose(x.std(0), 1, atol=0.1)
    means = np.stack([x[comp == k].mean(0) for k in range(3)])
    gaps = [np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 1.0


def _spec(data: dict) -> dict:
    return {"name": "t", "version": "1", "family": "lid", "builder": "lid", "track": "lid", "data": data}


@pytest.mark.parametrize("data, message", [
    ({"source": "dgm", "dataset": "lollipop", "frequency": 2.0}, "frequency"),
    ({"source": "dgm", "dataset": "affine_mixture", "manifold_dims": [2]}, "ambient_dim"),
    ({"source": "dgm", "dataset": "affine_mixture", "manifold_dims": [12], "ambient_dim": 10}, "must not exceed"),
    ({"source": "dgm", "dataset": "doughnut"}, "dataset"),
])
def test_bad_specs_are_refused(data, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(_spec(data), "t.toml")


def unchecked(data: dict) -> DGMData:
    """``[data]`` past the spec model's checks: the data module's own guards are under test."""
    return DGMData.model_construct(source="dgm", **data)


def test_bad_parameters_fail_clearly():
    with pytest.raises(ValueError, match="unknown dataset"):
        lid_paper.pieces(unchecked({"dataset": "nope"}), 0)
    with pytest.raises(ValueError, match="minor_r < major_r"):
        lid_paper.pieces(unchecked({"dataset": "torus_circle", "major_r": 1.0, "minor_r": 2.0}), 0)
    with pytest.raises(ValueError, match="outside the candy"):
        lid_paper.pieces(unchecked({"dataset": "lollipop", "stick_end_loc": [3.2, 3.0]}), 0)
    with pytest.raises(ValueError, match="kappa_control"):
        lid_paper.pieces(unchecked({"dataset": "squiggly_mixture", "manifold_dims": [2], "ambient_dim": 3,
                          "kappa_control": 0.0}), 0)


def test_a_dgm_task_builds_with_a_model_and_scores(tmp_path):
    """A seconds-fast build of the lollipop: queries per piece with their LID*, a trained model,
    and an estimator scored on it (the path the opt-in suite takes)."""
    from mmh_bench.evaluation.runner import evaluate_pair
    from mmh_bench.task.build import build_task
    from mmh_bench_baselines.flipd import FLIPD
    raw = {**_spec({"source": "dgm", "dataset": "lollipop", "n": 600}), "seed": 3,
           "model": {"hidden": 16, "depth": 1, "steps": 30, "batch_size": 64}, "queries": {"n_per_component": 20}}
    inst = build_task(parse_spec(raw, "t.toml"), tmp_path, progress=False)
    assert inst.samples.shape == (41, 2) and sorted(np.unique(inst.lid_star).tolist()) == [0.0, 1.0, 2.0]
    assert inst.score_model() is not None and len(inst.arrays["train"]) == 600
    res = evaluate_pair(inst, FLIPD(t0=0.05), isolation="in-process")
    assert res.status == "ok" and np.isfinite(res.metrics.mae)
