"""The generation-time setting: stored x_T, exact replay, and the published detectors on a known answer.

Known answer (exact eps, :class:`FlatGaussianMixture`): condition 0 is a single point away from
the data's centre (a prompt the model reproduces as one image), conditions 1-3 are broad Gaussians
around the centre (generic prompts). At every x_T the conditional prediction of condition 0 points
at its image while the others stay near the unconditional mean, so each published statistic is
larger for condition 0 whatever the seed. The one-step DCS is ``||eps_guided||^2`` up to a factor,
so ``||x_T||^2`` varies it too: its signal beats that chi-square spread only in high dimension
under strong guidance, as on Stable Diffusion (D = 16384, guidance 7.5); its case is D = 4096,
an image-sized point (norm 64: 4096 pixels at +-1) and guidance 7.5.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmh_bench import Access
from mmh_bench.api.context import AccessError
from mmh_bench.task.instance import TaskInstance
from mmh_bench.task.models.analytic import FlatGaussianMixture
from mmh_bench.registry import make_detector
from mmh_bench.evaluation.detection import DetectionTrack, compute_scores, make_context
from mmh_bench.task.sampler import BLOCK, Sampler, generate, initial_noise, noise_seed, trajectory

GENERATION_TIME = ["cfg-norm", "sharpness", "one-step-dcs"]
#: detector -> (dimension, norm of the memorized point, guidance) of its known-answer case
CASE = {"cfg-norm": (8, 4.0, 2.0), "sharpness": (8, 4.0, 2.0), "one-step-dcs": (4096, 64.0, 7.5)}


def collapse_model(dim: int = 8, norm: float = 4.0) -> FlatGaussianMixture:
    means = np.zeros((4, dim))
    means[0, 0] = norm
    means[1:, 1] = [-0.3, 0.0, 0.3]
    bases = [np.zeros((dim, 0))] + [np.eye(dim)] * 3
    return FlatGaussianMixture(means, bases, scales=[1.0, 2.0, 2.0, 2.0], conditional=True)


def generation_instance(spec, model, per: int, seed: int, guidance: float = 2.0) -> TaskInstance:
    cond = np.repeat(np.arange(4), per)
    sampler = Sampler(steps=20, guidance=guidance)
    noise = initial_noise(len(cond), model.shape, seed)
    samples = generate(model, noise, sampler, cond.tolist(), progress=False)
    labels = (cond == 0).astype(np.int8)
    inst = TaskInstance(spec=spec, arrays={"samples": samples, "cond": cond, "labels": labels,
                                           "subtype": labels.copy(), "noise": noise},
                        meta={"data_hash": "in-memory", "sampler": sampler.to_meta()})
    inst.set_model(model)
    return inst


@pytest.fixture(scope="module")
def collapse(tiny_spec):
    return generation_instance(tiny_spec, collapse_model(), per=30, seed=0)


@pytest.mark.parametrize("name", GENERATION_TIME)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapsed_condition_stands_out_at_x_T_for_every_seed(tiny_spec, name, seed):
    dim, norm, guidance = CASE[name]
    inst = generation_instance(tiny_spec, collapse_model(dim, norm), per=20, seed=seed, guidance=guidance)
    det = make_detector(name)
    assert DetectionTrack().why_not(det, inst) is None
    scores, cost = compute_scores(det, inst, seed=seed)
    assert roc_auc_score(inst.labels, scores) == 1.0
    assert cost["nfe_per_sample"] > 0  # the replay's network calls are counted


def test_more_steps_and_generations_average_more_calls(collapse):
    one, cost1 = compute_scores(make_detector("cfg-norm"), collapse, seed=0)
    many, cost2 = compute_scores(make_detector("cfg-norm(n_steps=3,generations=2)"), collapse, seed=0)
    assert cost2["nfe_per_sample"] == pytest.approx(6 * cost1["nfe_per_sample"], rel=0.05)
    assert roc_auc_score(collapse.labels, many) == 1.0
    assert not np.allclose(one, many)


@pytest.mark.parametrize("name", GENERATION_TIME)
def test_generation_time_detectors_never_read_the_finished_sample(collapse, name):
    """They decide before an image exists: garbage in place of the samples changes nothing."""
    det = make_detector(name)
    scores, _ = compute_scores(det, collapse, seed=0)
    arrays = dict(collapse.arrays, samples=np.full_like(collapse.samples, 1e6))
    blind = TaskInstance(spec=collapse.spec, arrays=arrays, meta=collapse.meta)
    blind.set_model(collapse.score_model())
    again, _ = compute_scores(det, blind, seed=0)
    np.testing.assert_array_equal(scores, again)


def test_generation_access_is_granted_only_when_declared(collapse):
    ctx, _ = make_context(make_detector("cfg-norm-posthoc"), collapse, seed=0)
    assert ctx.samples.noise is None
    with pytest.raises(AccessError, match="GENERATION"):
        ctx.generation
    ctx, _ = make_context(make_detector("cfg-norm"), collapse, seed=0)
    assert ctx.samples.noise is not None and ctx.generation.sampler.steps == 20
    assert Access.GENERATION.grants_cond() and Access.GENERATION.grants_model()


def test_a_task_without_stored_noise_is_not_applicable(collapse):
    arrays = {k: v for k, v in collapse.arrays.items() if k != "noise"}
    bare = TaskInstance(spec=collapse.spec, arrays=arrays, meta=collapse.meta)
    bare.set_model(collapse.score_model())
    why = DetectionTrack().why_not(make_detector("cfg-norm"), bare)
    assert why and "replayable" in why


def test_replay_reproduces_a_built_task_bit_for_bit(tiny):
    """The tiny task's samples, regenerated from their stored x_T in another order and grouping."""
    sampler = tiny.sampler()
    assert sampler is not None and tiny.noise is not None and tiny.noise.shape == tiny.samples.shape
    rows = np.random.default_rng(0).permutation(len(tiny.samples))[: BLOCK // 2 + 7]
    again = generate(tiny.score_model(), tiny.noise[rows], sampler, progress=False)
    np.testing.assert_array_equal(again, tiny.samples[rows])


def test_trajectory_is_the_sampler_and_starts_at_x_T(collapse):
    model = collapse.score_model()
    steps = list(trajectory(model, collapse.noise[:5], collapse.sampler(), collapse.cond[:5].tolist(), n_steps=3))
    assert [s.i for s in steps] == [0, 1, 2] and steps[0].t == collapse.sampler().t_max
    np.testing.assert_array_equal(steps[0].y.numpy(), collapse.noise[:5])


def test_noise_seed_is_one_way_and_fixed():
    assert noise_seed(7) == noise_seed(7) != noise_seed(8)
    assert noise_seed(7) != 7 and noise_seed(7) < 2 ** 60
    with pytest.raises(ValueError, match="sampler"):
        Sampler(kind="ancestral")


REPLAY_DETECTOR = '''
import numpy as np
import mmh_bench as mb


class FirstStepNorm(mb.Detector):
    name = "first-step-norm"
    access = mb.Access.GENERATION

    def score(self, batch, ctx):
        step = next(iter(ctx.generation.trajectory(batch, 1)))
        assert np.array_equal(step.y.numpy(), batch.noise)  # the replay starts at the stored x_T
        return step.eps.reshape(len(batch), -1).norm(dim=1).numpy()
'''


def test_a_third_party_generation_time_detector_gets_noise_and_replay_when_sealed(tmp_path):
    """Sealed evaluation ships x_T and the sampler into the worker (a conditional task: the
    generation-time setting implies MODEL_COND, as the published detectors read the prompt)."""
    import json
    from pathlib import Path

    import mmh_bench as mb
    src = tmp_path / "replay.py"
    src.write_text(REPLAY_DETECTOR)
    spec = Path(__file__).parent / "data" / "tiny_cond.toml"
    rep = mb.evaluate([str(spec)], [f"{src}:FirstStepNorm"], tmp_path / "res", progress=False,
                      isolation="sealed", instances=None)
    assert not rep.failed, [json.loads(p.read_text())["error"] for p in rep.failed]
    res = json.loads(rep.ran[0].read_text())
    assert res["access"] == "generation" and res["group"] == "generation-time"
    assert res["isolation"] in ("sandbox", "process") and res["cost"]["nfe_per_sample"] > 0
