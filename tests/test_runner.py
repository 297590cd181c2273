import json
import textwrap

import numpy as np
import pytest

import mmh_bench as mb
from mmh_bench.task.build import build_task
from mmh_bench.evaluation.detection import DetectionTrack
from mmh_bench.evaluation.runner import evaluate


class Raises(mb.Detector):
    name, access = "raises", mb.Access.SAMPLES

    def score(self, batch, ctx):
        raise RuntimeError("boom")


class ReturnsNaN(mb.Detector):
    name, access = "nan", mb.Access.SAMPLES

    def score(self, batch, ctx):
        out = np.zeros(len(batch))
        out[0] = np.nan
        return out


class WrongShape(mb.Detector):
    name, access = "shape", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return np.zeros((len(batch), 2))


class Sneaky(mb.Detector):
    """Declares samples only, then reaches for the training set."""
    name, access = "sneaky", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return ctx.train_index.search(batch.x, 1)[0][:, 0]


class Norm(mb.Detector):
    name, access = "norm", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return -np.linalg.norm(batch.x, axis=1)


class Interrupts(mb.Detector):
    name, access = "interrupts", mb.Access.SAMPLES

    def score(self, batch, ctx):
        raise KeyboardInterrupt


def _load(path):
    return json.loads(path.read_text())


def test_failing_detectors_are_isolated(tiny_spec, tmp_path):
    dets = [Raises(), ReturnsNaN(), WrongShape(), Sneaky(), Norm()]
    rep = evaluate([tiny_spec], dets, tmp_path, progress=False)  # auto: sealed (not shipped baselines)
    assert len(rep.failed) == 4 and len(rep.ran) == 1
    errors = {d.name: _load(DetectionTrack().result_path(tmp_path, build_task(tiny_spec, progress=False), d.name)) for d in dets}
    assert "boom" in errors["raises"]["error"]
    assert "NaN" in errors["nan"]["error"]
    assert "shape" in errors["shape"]["error"]
    assert "AccessError" in errors["sneaky"]["error"] and "TRAIN_DATA" in errors["sneaky"]["error"]
    ok = errors["norm"]
    assert ok["status"] == "ok" and 0 <= ok["metrics"]["auroc"] <= 1
    for key in ("task", "task_version", "task_hash", "detector", "access", "status", "error",
                "n_samples", "n_memorized", "metrics", "cost", "provenance"):
        assert key in ok
    assert set(ok["metrics"]["tpr_at_fpr"]) == {"0.001", "0.01", "0.05"}
    assert {"nfe_per_sample", "seconds", "peak_mb"} <= set(ok["cost"])
    assert {"packages", "seed", "hardware", "spec_hash", "data_hash"} <= set(ok["provenance"])
    assert ok["isolation"] in ("sandbox", "process") and ok["group"] == "sample-side"
    assert ok["detector_note"] is None and ok["instance"]["data_hash"] == ok["provenance"]["data_hash"]


def test_interrupted_grid_resumes(tiny_spec, tmp_path):
    with pytest.raises(KeyboardInterrupt):  # in-process: the interrupt reaches the evaluator itself
        evaluate([tiny_spec], [Norm(), Interrupts()], tmp_path, progress=False, isolation="in-process")
    first = DetectionTrack().result_path(tmp_path, build_task(tiny_spec, progress=False), "norm")
    assert first.exists() and not DetectionTrack().result_path(tmp_path, build_task(tiny_spec, progress=False), "interrupts").exists()
    stamp = first.stat().st_mtime_ns
    rep = evaluate([tiny_spec], [Norm(), "random"], tmp_path, progress=False, isolation="in-process")
    assert rep.skipped_current == [first] and first.stat().st_mtime_ns == stamp
    assert DetectionTrack().result_path(tmp_path, build_task(tiny_spec, progress=False), "random").exists()
    # no temporary files are left behind by atomic writes
    assert not list(tmp_path.rglob("*.tmp"))


def test_rerun_with_same_seed_gives_identical_metrics(tiny_spec, tmp_path):
    a = evaluate([tiny_spec], ["random", "flipd", "nn-ratio"], tmp_path / "a", progress=False)
    b = evaluate([tiny_spec], ["random", "flipd", "nn-ratio"], tmp_path / "b", progress=False)
    for pa, pb in zip(sorted(a.ran), sorted(b.ran)):
        ra, rb = _load(pa), _load(pb)
        assert ra["metrics"] == rb["metrics"], pa.name


def test_third_party_detector_from_file_outside_repo(tiny_spec, tmp_path):
    src = tmp_path / "elsewhere" / "my_detector.py"
    src.parent.mkdir()
    src.write_text(textwrap.dedent("""
        import numpy as np
        import mmh_bench as mb

        class Distance(mb.Detector):
            name = "dist-to-origin"
            access = mb.Access.SAMPLES
            def score(self, batch, ctx):
                return -np.linalg.norm(batch.x, axis=1)
    """))
    rep = evaluate([tiny_spec], [f"{src}:Distance"], tmp_path / "res", progress=False)
    res = _load(rep.ran[0])
    assert res["detector"] == "dist-to-origin" and res["status"] == "ok"
    assert res["detector_source"].endswith(":Distance")


def test_new_detector_version_is_rerun(tiny_spec, tmp_path):
    evaluate([tiny_spec], [Norm()], tmp_path, progress=False, isolation="in-process")

    class Norm2(Norm):
        version = "2"

    rep = evaluate([tiny_spec], [Norm2()], tmp_path, progress=False, isolation="in-process")
    assert len(rep.ran) == 1 and _load(rep.ran[0])["detector_version"] == "2"


def test_result_of_another_instance_is_not_current(tiny_spec, tmp_path):
    first = evaluate([tiny_spec], [Norm()], tmp_path, progress=False, isolation="in-process").ran[0]
    again = evaluate([tiny_spec], [Norm()], tmp_path, progress=False, isolation="in-process")
    assert again.skipped_current == [first]
    doc = _load(first)
    doc["instance"]["data_hash"] = "0" * 64  # measured on another instance of the same spec
    first.write_text(json.dumps(doc))
    third = evaluate([tiny_spec], [Norm()], tmp_path, progress=False, isolation="in-process")
    assert third.ran == [first] and _load(first)["instance"]["data_hash"] != "0" * 64


class FitsInPublic(mb.Detector):
    """Stores fitted state in a public attribute (against the convention)."""
    name, access = "fits-in-public", mb.Access.SAMPLES

    def __init__(self, k: int = 3) -> None:
        self.k = k

    def fit(self, ctx):
        assert not hasattr(self, "centre"), "fit saw a detector fitted on another task"
        self.centre = float(ctx.samples.x.mean())

    def score(self, batch, ctx):
        return -np.abs(batch.x[:, 0] - self.centre)


def test_each_task_gets_a_fresh_detector_and_params_come_from_the_constructor(tiny_spec, tmp_path):
    proto = FitsInPublic(k=5)
    rep = evaluate([tiny_spec, tiny_spec], [proto], tmp_path, progress=False, isolation="in-process", force=True)
    assert len(rep.ran) == 2 and not rep.failed  # the second fit saw an unfitted clone
    assert not hasattr(proto, "centre")
    assert _load(rep.ran[0])["detector_params"] == {"k": 5}  # not the fitted "centre"
    assert proto.clone().params() == {"k": 5} and proto.clone() is not proto


def test_bad_isolation_mode_is_refused(tiny_spec, tmp_path):
    with pytest.raises(ValueError, match="isolation 'boxed'"):
        evaluate([tiny_spec], [Norm()], tmp_path, progress=False, isolation="boxed")


def test_spec_rules_out_detectors_without_a_build(tiny_spec, tmp_path, monkeypatch):
    """What the spec alone excludes is reported without a build; a current grid only loads the
    instance (its data hash decides what is current)."""
    from mmh_bench.evaluation import runner
    from mmh_bench.registry import get_task, make_detector
    assert DetectionTrack().ruled_out(make_detector("cfg-norm-posthoc"), tiny_spec) == "detector needs conditions; task is unconditional"
    assert DetectionTrack().ruled_out(make_detector("random"), get_task("lid-mix10")) == "LID-track tasks need an LID estimator"
    assert DetectionTrack().ruled_out(make_detector("flipd"), get_task("lid-skdim")) == "task has no score model"
    assert DetectionTrack().ruled_out(make_detector("attention-entropy-posthoc"), get_task("syn2-cond")) == "model lacks cross_attention"
    assert DetectionTrack().ruled_out(make_detector("attention-entropy-posthoc"), get_task("t2i-digits")) is None
    assert "off Stable Diffusion" in DetectionTrack().ruled_out(make_detector("normal-bundle"), get_task("sd-v1-4"))
    assert DetectionTrack().ruled_out(make_detector("flipd"), get_task("sd-v1-4")) is None
    assert get_task("t2i-digits").conditional
    first = evaluate([tiny_spec], ["random", "cfg-norm-posthoc"], tmp_path, progress=False)
    assert len(first.ran) == 1 and first.not_applicable[0][1] == "cfg-norm-posthoc"

    def no_build(*a, **k):
        raise AssertionError("built a task with nothing to evaluate")
    monkeypatch.setattr(runner, "resolve_instances", no_build)
    only_ruled_out = evaluate([tiny_spec], ["cfg-norm-posthoc"], tmp_path, progress=False)
    assert not only_ruled_out.ran and len(only_ruled_out.not_applicable) == 1
    monkeypatch.undo()
    again = evaluate([tiny_spec], ["random", "cfg-norm-posthoc"], tmp_path, progress=False)
    assert not again.ran and len(again.skipped_current) == 1
