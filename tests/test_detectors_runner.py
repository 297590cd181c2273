"""Every registered detector runs through the evaluator on the `tiny` task, or is marked not
applicable for the stated reason (tiny is unconditional and its MLP has no cross-attention)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import mmh_bench as mb
from mmh_bench.evaluation import metrics
from mmh_bench.registry import all_detectors
from mmh_bench.task.build import build_task
from mmh_bench.evaluation.detection import DetectionTrack
from mmh_bench.evaluation.runner import evaluate

NEEDS_COND = {name for name, cls in all_detectors().items() if cls.access.grants_cond()}
DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_every_detector_runs_on_tiny(tiny, tiny_spec, tmp_path, monkeypatch):
    # the bootstrap CI (1000 scikit-learn AUROCs per pair) is the evaluator's business and
    # dominates the run time here; this test is about the detectors
    monkeypatch.setattr(metrics, "bootstrap_auroc_ci", lambda *a, **k: None)
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(tiny_spec.path).rsplit("/", 1)[0])  # shortcuts read specs by name
    names = sorted(all_detectors())
    for expected in ["random", "flipd", "normal-bundle", "mmh-ratio", "cfdm", "lpca", "mle", "twonn",
                     "ess", "score-norm", "denoising-loss", "cfg-norm-posthoc", "sharpness-posthoc", "one-step-error-posthoc",
                     "attention-entropy-posthoc", "nn-distance", "nn-ratio", "authpct"]:
        assert expected in names
    rep = evaluate([tiny_spec], names, tmp_path, progress=False)
    assert rep.failed == []
    na = {det: why for _, det, why in rep.not_applicable}
    assert set(na) == NEEDS_COND, na
    for name in names:
        if name in na:
            continue
        res = json.loads(DetectionTrack().result_path(tmp_path, build_task(tiny_spec, progress=False), name).read_text())
        assert res["status"] == "ok", (name, res["error"])
        assert 0 <= res["metrics"]["auroc"] <= 1
        cls = all_detectors()[name]
        assert res["access"] == cls.access.label and cls.cost_note
        if cls.access.grants_model():
            assert res["cost"]["nfe_per_sample"] > 0, name
    # the reference that restates the labelling rule is perfect on its own labels
    rule = json.loads(DetectionTrack().result_path(tmp_path, build_task(tiny_spec, progress=False), "copy-rule").read_text())
    assert rule["metrics"]["auroc"] == 1.0 and rule["group"] == "reference"


def test_context_exposes_all_samples_to_fit(tiny):
    seen = {}

    class Peek(mb.Detector):
        name, access = "peek", mb.Access.SAMPLES

        def fit(self, ctx):
            seen["n"] = len(ctx.samples)
            seen["cond"] = ctx.samples.cond

        def score(self, batch, ctx):
            return np.zeros(len(batch))

    from mmh_bench.evaluation.runner import compute_scores
    compute_scores(Peek(), tiny, seed=0, batch_size=64)
    assert seen == {"n": len(tiny.samples), "cond": None}
    with pytest.raises(mb.AccessError):
        mb.Context("x", mb.Access.SAMPLES, tiny.info(), seed=0).samples


COND_SPEC = __import__("pathlib").Path(__file__).parent / "data" / "tiny_cond.toml"


@pytest.mark.skipif(not COND_SPEC.exists(), reason="no conditional tiny task in this tree")
def test_conditional_detectors_run_on_tiny_cond(tmp_path, monkeypatch):
    """The detectors that need conditions run through the evaluator on a built conditional task."""
    from mmh_bench.task.spec import load_spec
    monkeypatch.setattr(metrics, "bootstrap_auroc_ci", lambda *a, **k: None)
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(DATA))
    spec = load_spec(COND_SPEC)
    names = sorted(NEEDS_COND - {"attention-entropy", "attention-entropy-posthoc"}) + ["flipd", "lpca"]
    rep = evaluate([spec], names + ["attention-entropy", "attention-entropy-posthoc"], tmp_path, progress=False)
    assert rep.failed == []
    assert [d for _, d, _ in rep.not_applicable] == ["attention-entropy", "attention-entropy-posthoc"]  # the MLP has no attention
    for name in names:
        res = json.loads(DetectionTrack().result_path(tmp_path, build_task(spec, progress=False), name).read_text())
        assert res["status"] == "ok", (name, res["error"])
