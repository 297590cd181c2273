"""Sealed evaluation: what a detector's worker can reach, and leak probes that prove the seal.

Each hostile detector below tries one way to the labels. Sealed, every probe scores at chance or
fails with an error result; in-process, the memory and file probes reach AUROC ~1 on the same task,
so the test shows that the seal is what stops them.
"""
from __future__ import annotations

import gc
import json
import warnings
import os
import signal
import time
from pathlib import Path

import numpy as np
from typing import Any

import pytest

import mmh_bench as mb
from mmh_bench.registry import make_detector
from mmh_bench.evaluation.runner import compute_scores, evaluate_pair
from mmh_bench.evaluation.sealed import (SealError, WorkerFailure, run_sealed, sandbox_available, write_view)
from mmh_bench.task.spec import load_spec

HERE = Path(__file__).parent
TINY, TINY_COND = HERE / "data" / "tiny.toml", HERE / "data" / "tiny_cond.toml"
CHANCE = 0.1  # |AUROC - 0.5| below this on tiny counts as chance


def _labels_like(arr: object, n: int) -> np.ndarray | None:
    if isinstance(arr, np.ndarray) and arr.shape == (n,) and arr.dtype.kind in "iub":
        values = np.unique(arr)
        if len(values) == 2 and set(values.tolist()) == {0, 1}:
            return arr.astype(float)
    return None


# -- hostile detectors (module level, so a sealed worker can import them) ------------------------
class IndexLeak(mb.Detector):
    """(a) Row order: the score is minus the row's position."""
    name, access = "probe-index", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return -np.asarray(batch.index, dtype=float)


class CondLeak(mb.Detector):
    """(b) Condition values: the score is the condition id."""
    name, access = "probe-cond", mb.Access.MODEL_COND

    def score(self, batch, ctx):
        return np.asarray(batch.cond, dtype=float)


class GcLeak(mb.Detector):
    """(c) Memory: any 0/1 integer array of length n reachable from the garbage collector."""
    name, access = "probe-gc", mb.Access.SAMPLES

    def score(self, batch, ctx):
        n = ctx.task.n_samples
        warnings.simplefilter("ignore")  # touching every object wakes deprecation warnings

        def members(obj):
            if isinstance(obj, dict):
                return list(obj.values())
            if isinstance(obj, (list, tuple)):
                return list(obj)
            return list(vars(obj).values()) if hasattr(obj, "__dict__") and not isinstance(obj, type) else []

        for obj in gc.get_objects():  # containers of arrays are untracked: look two levels down
            try:
                for value in members(obj):
                    for leaf in [value, *(members(value) if isinstance(value, dict) else [])]:
                        found = _labels_like(leaf, n)
                        if found is not None:
                            return found[batch.index]
            except Exception:
                continue
        return np.zeros(len(batch))


class PrivateLeak(mb.Detector):
    """(d) Private attributes of the context and the model view."""
    name, access = "probe-private", mb.Access.SAMPLES

    def score(self, batch, ctx):
        index = getattr(ctx, "_train_index", None)
        if index is not None:
            return -index.search(batch.x, 1)[0][:, 0]
        model = getattr(ctx, "_model", None)
        for handle in list(getattr(ctx, "_extras", {}).values()):
            model = model or handle
        if model is not None:
            import torch
            eps = getattr(model, "_model", model).eps(torch.as_tensor(batch.x, dtype=torch.float32), 0.05)
            return -eps.norm(dim=1).detach().numpy()
        return np.zeros(len(batch))


class FileLeak(mb.Detector):
    """(e) Files: instance.npz under the build caches and the leaderboard (and a known cache path)."""
    name, access = "probe-files", mb.Access.SAMPLES

    def __init__(self, known: str = "") -> None:
        self.known = known

    def score(self, batch, ctx):
        from mmh_bench.task.build import default_cache_dir
        roots = [self.known, os.environ.get("MMH_BENCH_CACHE", ""), str(default_cache_dir()),
                 str(Path(mb.__file__).resolve().parents[1] / "leaderboard")]
        for root in filter(None, roots):
            for path in Path(root).glob("**/instance.npz") if Path(root).is_dir() else ():
                with np.load(path, allow_pickle=False) as z:
                    if "labels" in z.files and z["samples"].shape == ctx.samples.x.shape \
                            and np.array_equal(z["samples"], ctx.samples.x):
                        return z["labels"][batch.index].astype(float)
        return np.zeros(len(batch))


class RebuildLeak(mb.Detector):
    """(f) The library: load the evaluator's build of the task through mmh_bench and read its labels.
    (Building a dev instance anew from its public spec is open to any code with CPU time: that is
    why the board reports test instances, whose placement is secret.)"""
    name, access = "probe-rebuild", mb.Access.SAMPLES

    def __init__(self, spec: str = "", cache: str = "") -> None:
        self.spec = spec
        self.cache = cache

    def fit(self, ctx):
        from mmh_bench.task.build import cached_task
        from mmh_bench.registry import get_task
        spec = get_task(self.spec)
        inst = cached_task(spec, self.cache or None) or cached_task(spec)
        self.labels_ = inst.labels.astype(float)

    def score(self, batch, ctx):
        return self.labels_[batch.index]


class Sleeps(mb.Detector):
    name, access = "sleeps", mb.Access.SAMPLES

    def score(self, batch, ctx):
        time.sleep(600)


class Crashes(mb.Detector):
    name, access = "crashes", mb.Access.SAMPLES

    def score(self, batch, ctx):
        os.kill(os.getpid(), signal.SIGKILL)


class Raises(mb.Detector):
    name, access = "raises", mb.Access.SAMPLES

    def score(self, batch, ctx):
        raise RuntimeError("no luck today")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cond():
    return mb.build_task(load_spec(TINY_COND), progress=False)


def _auroc(res: Any) -> float | None:
    return res.metrics.auroc if res.status == "ok" else None


# -- the view ------------------------------------------------------------------------------------
def test_view_holds_only_what_access_grants(tiny, tiny_cond, tmp_path):
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    v = write_view(tiny, IndexLeak(), tmp_path / "s")
    assert files(v) == ["job.json", "samples.npy", "view.json"]
    spec = json.loads((v / "view.json").read_text())
    assert spec["model"] is None and spec["train"] is None and spec["seed"] == 0
    assert set(spec["task"]) == {"name", "family", "shape", "conditional", "n_samples"}
    assert np.array_equal(np.load(v / "samples.npy", allow_pickle=False), tiny.samples)
    assert json.loads((v / "job.json").read_text())["detector"] == f"{IndexLeak.__module__}:IndexLeak"

    m = write_view(tiny, make_detector("flipd"), tmp_path / "m")
    assert "model" in {p.parts[0] for p in map(Path, files(m))} and "train.npy" not in files(m)
    t = write_view(tiny, make_detector("nn-ratio"), tmp_path / "t")
    assert "train.npy" in files(t) and not any(f.startswith("model") for f in files(t))
    assert json.loads((t / "view.json").read_text())["train"]["dedup_tol"] == float(tiny.meta.get("dedup_tol", 0))
    c = write_view(tiny_cond, CondLeak(), tmp_path / "c")
    assert "cond.npy" in files(c)
    assert "cond.npy" not in files(write_view(tiny_cond, make_detector("flipd"), tmp_path / "nc"))
    for view in (v, m, t, c):  # nothing named after what the evaluator keeps to itself
        text = " ".join(files(view)) + (view / "view.json").read_text()
        for secret in ("labels", "subtype", "lid_star", "heldout", "d1", "nn_row", "data_hash"):
            assert secret not in text, (view, secret)
    with pytest.raises(SealError, match="not empty"):
        write_view(tiny, IndexLeak(), v)


def test_in_memory_model_cannot_be_sealed(tiny, tmp_path):
    inst = mb.TaskInstance(spec=tiny.spec, arrays=dict(tiny.arrays), meta={**tiny.meta, "model": None})
    inst.set_model(tiny.score_model())
    with pytest.raises(SealError, match="memory"):
        write_view(inst, make_detector("flipd"), tmp_path / "v")


# -- the seal ------------------------------------------------------------------------------------
def test_leak_probes_are_at_chance_when_sealed(tiny, _isolated_cache):
    if not sandbox_available():  # asked here, not at import: sealed workers import this module too
        pytest.skip("bubblewrap missing or failing its self-test")
    probes = {"c": GcLeak(), "d": PrivateLeak(), "e": FileLeak(known=str(_isolated_cache)),
              "f": RebuildLeak(spec=str(TINY), cache=str(_isolated_cache))}
    inside = {k: evaluate_pair(tiny, det, isolation="in-process") for k, det in probes.items()}
    for k in "cef":  # in the evaluator's process they do reach the labels: the seal is what matters
        assert inside[k].status == "ok" and inside[k].metrics.auroc > 0.99, (k, inside[k].error)
    for k, det in probes.items():
        res = evaluate_pair(tiny, det, isolation="sealed")
        assert res.isolation == "sandbox"
        auroc = _auroc(res)
        assert auroc is None or abs(auroc - 0.5) < CHANCE, (k, auroc)
        assert (res.status == "failed") == (k == "f"), (k, res.error)  # no cache to load
        if k == "f":
            assert "'NoneType' object has no attribute 'labels'" in res.error, res.error


@pytest.mark.parametrize("probe", ["index", "cond"])
def test_row_order_and_condition_ids_carry_no_information(probe, tiny, request):
    """The build draws the row order and the class ids from seeded permutations that never see a
    label. One build is one draw: at n = 300 (tiny) or with five class ids (tiny_cond) a single
    draw may sit away from 0.5 by chance. So: over 400 seeds the leak averages chance, and sealed,
    the leak reads exactly that build's draw and nothing more."""
    from types import SimpleNamespace
    from sklearn.metrics import roc_auc_score
    from mmh_bench.task.build import permute_rows
    from mmh_bench.task.builders.synthetic import remap_conditions
    inst = tiny if probe == "index" else request.getfixturevalue("tiny_cond")
    y = inst.labels.astype(bool)
    assert 0 < y.sum() < len(y)
    draws = []
    for seed in range(400):
        if probe == "index":  # the build's own shuffle, applied to these labels
            out = SimpleNamespace(samples=inst.samples, cond=None, labels=inst.labels, subtype=None, lid_star=None,
                                  sample_arrays={})
            permute_rows(out, seed)
            draws.append(roc_auc_score(out.labels.astype(bool), -np.arange(len(y), dtype=float)))
        else:  # the builder's own id remapping, applied to these conditions
            mix = SimpleNamespace(cond=np.asarray(inst.cond), n_classes=int(np.max(inst.cond)) + 1)
            remap_conditions(mix, seed)
            draws.append(roc_auc_score(y, mix.cond.astype(float)))
    se = np.std(draws) / np.sqrt(len(draws))  # the draws spread widely with five class ids
    assert abs(np.mean(draws) - 0.5) < 3 * se + 0.005, (np.mean(draws), se)
    det, values = (IndexLeak(), -np.arange(len(y), dtype=float)) if probe == "index" else (CondLeak(), inst.cond)
    res = evaluate_pair(inst, det, isolation="sealed")
    assert _auroc(res) == pytest.approx(roc_auc_score(y, np.asarray(values, dtype=float)), abs=1e-9)


# -- equivalence and failures ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nn-ratio", "flipd"])
def test_sealed_scores_equal_in_process_scores(tiny, name):
    det = make_detector(name)
    run = run_sealed(tiny, det, seed=3, batch_size=64)
    scores, cost = compute_scores(det.clone(), tiny, seed=3, batch_size=64)
    np.testing.assert_allclose(run.scores, scores, rtol=1e-6, atol=1e-9)
    assert run.cost["nfe_per_sample"] == cost["nfe_per_sample"]
    assert not hasattr(det, "_curve") or det._curve is None  # the parent's object was never fitted


def test_process_isolation_without_sandbox(tiny):
    run = run_sealed(tiny, PrivateLeak(), sandbox=False)
    assert run.isolation == "process" and not run.scores.any()  # its memory holds nothing to find


def test_worker_failures_become_clear_failed_results(tiny):
    t0 = time.perf_counter()
    with pytest.raises(WorkerFailure, match="timed out after 20 s"):
        run_sealed(tiny, Sleeps(), timeout=20)
    assert time.perf_counter() - t0 < 120
    with pytest.raises(WorkerFailure, match="killed by SIGKILL"):
        run_sealed(tiny, Crashes())
    res = evaluate_pair(tiny, Raises(), isolation="sealed")
    assert res.status == "failed" and res.error == "RuntimeError: no luck today"


def test_unguarded_script_is_refused_inside_the_worker(tiny, tmp_path):
    """A detector file that runs an evaluation when imported would recurse in its worker."""
    src = tmp_path / "script.py"
    src.write_text("import numpy as np\nimport mmh_bench as mb\n\n"
                   "class Norm(mb.Detector):\n    name = 'norm'\n"
                   "    def score(self, batch, ctx):\n        return -np.linalg.norm(batch.x, axis=1)\n\n"
                   "mb.evaluate([], [Norm()], 'unused')\n")  # no task: importing it here costs nothing
    from mmh_bench.registry import load_detector_class
    res = evaluate_pair(tiny, load_detector_class(f"{src}:Norm")(), isolation="sealed")
    assert res.status == "failed" and "__main__" in res.error, res.error


# -- the evaluator never imports a submitted detector's code -----------------------------------------
HOSTILE = '''
import os
import numpy as np
import mmh_bench as mb
import mmh_bench.evaluation.runner
import mmh_bench.evaluation.sealed
import mmh_bench.evaluation.sealed.view

def _gotcha(*args, **kwargs):
    raise RuntimeError("patched by the detector module")

mmh_bench.evaluation.sealed.view.write_view = mmh_bench.evaluation.sealed.write_view = _gotcha   # (a)
mmh_bench.evaluation.runner.evaluate_pair = _gotcha
mb.HOSTILE_WAS_HERE = True                                                    # (c)
try:                                                                          # (b)
    os.makedirs(MARKER_DIR, exist_ok=True)
    with open(os.path.join(MARKER_DIR, "marker"), "w") as fh:
        fh.write(str(os.getpid()))
except OSError:
    pass

class Hostile(mb.Detector):
    name, access = "hostile", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return -np.linalg.norm(batch.x, axis=1)
'''


class Norm(mb.Detector):
    """What the hostile file scores, without its module's side effects."""
    name, access = "norm", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return -np.linalg.norm(batch.x, axis=1)


def test_hostile_module_never_runs_in_the_evaluator(tiny, tmp_path):
    import sys

    import mmh_bench.evaluation.runner as runner
    import mmh_bench.evaluation.sealed as sealed
    import mmh_bench.evaluation.sealed.view as view
    marker_dir = tmp_path / "owned"
    src = tmp_path / "hostile_det.py"
    src.write_text(HOSTILE.replace("MARKER_DIR", repr(str(marker_dir))))
    before = (view.write_view, sealed.write_view, runner.evaluate_pair)
    rep = runner.evaluate([str(TINY)], [f"{src}:Hostile", Norm()], tmp_path / "res", progress=False, isolation="sealed")
    assert (view.write_view, sealed.write_view, runner.evaluate_pair) == before
    assert "HOSTILE_WAS_HERE" not in vars(mb)
    assert not [m for m in sys.modules if m.startswith("mmh_bench_user_hostile_det")]
    marker = marker_dir / "marker"
    assert not marker.exists() or marker.read_text() != str(os.getpid())
    if sandbox_available():  # the sandbox's file system is read-only but for its own /tmp and out folder
        assert not marker.exists()
    assert len(rep.ran) == 2 and not rep.failed, rep
    res = {p.stem: json.loads(p.read_text()) for p in rep.ran}
    assert res["hostile"]["status"] == "ok" and res["hostile"]["isolation"] in ("sandbox", "process")
    assert res["hostile"]["detector_source"].startswith("mmh_bench_user_hostile_det_")
    assert res["hostile"]["metrics"] == res["norm"]["metrics"]
    alone = evaluate_pair(tiny, Norm(), isolation="in-process")  # the neighbour's numbers are unchanged
    assert alone.model_dump(mode="json", by_alias=True)["metrics"] == res["norm"]["metrics"]


def test_broken_detector_file_is_refused_quickly_naming_it(tmp_path):
    from mmh_bench.registry import RegistryError
    from mmh_bench.evaluation.runner import evaluate
    src = tmp_path / "broken_det.py"
    src.write_text("import mmh_bench as mb\n\nclass Broken(mb.Detector:\n    name = 'broken'\n")
    t0 = time.perf_counter()
    with pytest.raises(RegistryError, match=r"broken_det\.py.*SyntaxError") as err:
        evaluate([str(TINY)], [f"{src}:Broken"], tmp_path / "res", progress=False)
    assert time.perf_counter() - t0 < 60
    assert str(src) in str(err.value)
    assert not (tmp_path / "res").exists()


def test_describe_builds_a_stand_in_without_importing(tmp_path):
    import sys

    from mmh_bench.registry import RegistryError
    from mmh_bench.evaluation.detection import detector_source
    from mmh_bench.evaluation.runner import resolve_detector, resolve_isolation
    from mmh_bench.api.detector import detector_group
    from mmh_bench.evaluation.sealed import SealedDetector
    src = tmp_path / "lid_det.py"
    src.write_text("import numpy as np\nimport mmh_bench as mb\n\n"
                   "class Width(mb.LIDEstimator):\n    name, access, version = 'width', mb.Access.TRAIN_DATA, '7'\n"
                   "    note, cost_note, requires = 'a note', 'free', ('jvp',)\n"
                   "    def __init__(self, k: int = 3, how: str = 'mean'):\n        self.k, self.how = k, how\n"
                   "    def estimate(self, batch, ctx):\n        return np.zeros(len(batch))\n")
    det = resolve_detector(f"{src}:Width(k=5)", "auto")
    assert isinstance(det, SealedDetector) and isinstance(det, mb.LIDEstimator)
    assert (det.name, det.access, det.version, det.note, det.cost_note, det.requires) == \
        ("width", mb.Access.TRAIN_DATA, "7", "a note", "free", ("jvp",))
    assert det.params() == {"k": 5, "how": "mean"} and det.clone().params() == det.params()
    assert type(det.clone()) is type(det) and resolve_isolation("auto", det) == "sealed"
    assert detector_group(det) == "training-set oracle"
    assert detector_source(det).endswith(":Width") and detector_source(det).startswith("mmh_bench_user_lid_det_")
    assert not [m for m in sys.modules if m.startswith("mmh_bench_user_lid_det")]
    with pytest.raises(RuntimeError, match="runs only sealed"):
        det.estimate(None, None)
    from mmh_bench.evaluation.conformance import check_detector
    report = check_detector(det)  # no code to check here: it says where to check it
    assert not report.ok and "stand-in" in report.failures[0].message
    with pytest.raises(RegistryError, match="constructing.*TypeError|no parameter 'j'"):
        resolve_detector(f"{src}:Width(j=1)", "sealed")
    (tmp_path / "not_det.py").write_text("class Plain:\n    pass\n")
    with pytest.raises(RegistryError, match="not a subclass of mmh_bench.Detector"):
        resolve_detector(f"{tmp_path / 'not_det.py'}:Plain", "sealed")
    # in-process is the caller's choice to trust the code: it imports as before
    assert not isinstance(resolve_detector(f"{src}:Width", "in-process"), SealedDetector)


def test_describe_times_out_on_a_blocking_import(tmp_path):
    from mmh_bench.registry import RegistryError
    from mmh_bench.evaluation.sealed import describe_detector
    src = tmp_path / "slow_det.py"
    src.write_text("import time\ntime.sleep(600)\n")
    t0 = time.perf_counter()
    with pytest.raises(RegistryError, match="timed out after 20 s"):
        describe_detector(f"{src}:X", timeout=20)
    assert time.perf_counter() - t0 < 60


def test_which_references_count_as_shipped(monkeypatch):
    from importlib.metadata import EntryPoint

    import mmh_bench.evaluation.runner as runner
    assert runner.is_shipped_ref("random") and runner.is_shipped_ref("mmh_bench_baselines.chance:RandomScore")
    assert not runner.is_shipped_ref("some_pkg.mod:Cls") and not runner.is_shipped_ref("/x/mmh_bench_baselines.py:C")
    # an installed third-party package's entry point is not a shipped baseline: it is described sealed
    eps = {"ext": EntryPoint("ext", "their_pkg.detectors:Ext", "mmh_bench.detectors")}
    assert runner.is_shipped_ref("none", "mitigator") and runner.is_shipped_ref("guidance", "mitigator")
    monkeypatch.setattr(runner, "registered_entry_points", lambda kind="detector": eps)
    assert not runner.is_shipped_ref("ext")


def test_a_worker_inherits_the_outside_families_but_not_the_cache(monkeypatch):
    """A task of a family registered from outside (MMH_BENCH_FAMILIES) has its model loaded in the
    worker through that family's loader; the cache folder, which holds labels, stays unnamed."""
    from mmh_bench.evaluation.sealed.bwrap import Limits
    from mmh_bench.evaluation.sealed.process import worker_env
    from mmh_bench.task.families import FAMILIES_ENV
    monkeypatch.setenv(FAMILIES_ENV, "my_family")
    monkeypatch.setenv("MMH_BENCH_CACHE", "/somewhere/with/labels")
    for sandboxed in (False, True):
        env = worker_env(1, [], sandboxed=sandboxed, limits=Limits.from_env())
        assert env[FAMILIES_ENV] == "my_family" and "MMH_BENCH_CACHE" not in env
