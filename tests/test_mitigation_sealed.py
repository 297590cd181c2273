"""Third-party mitigators run sealed, as detectors do, and go through submit and verify.

A mitigator that is not a shipped baseline is described in a sandbox (never imported here) and
generates in a sealed worker whose view holds the noises, conditions, sampler and model, never
labels nor the task's own generations; the evaluator labels what comes back. Every sealed run
here regenerates 64 rows of the small collapse task (tests/data/collapse_cond.toml).
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from mmh_bench.cli.main import main
from mmh_bench.evaluation.runner import resolve_detector
from mmh_bench.evaluation.sealed import SealedMitigator, sandbox_available, write_view
from mmh_bench.mitigation import evaluate_mitigator, mitigate
from mmh_bench.mitigation.result import read_mitigation_result

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "SUBMITTING.md"
N = 64

MITIGATORS = '''\
from pathlib import Path

import numpy as np
from mmh_bench.mitigation import Mitigator

SECRETS = ("label", "subtype", "samples.npy", "heldout", "nn_row")


class Probe(Mitigator):
    """Guidance scaled by ``factor``; with ``look`` set (a task's build folder), it first reads the
    labels from the build's arrays and searches its own view for anything labelled, and raises
    naming what it found."""

    name = "probe"
    sweep = ("factor", (0.5, 0.0))

    def __init__(self, factor: float = 0.5, look: str = ""):
        self.factor, self.look = factor, look

    def fit(self, ctx):
        if not self.look:
            return
        seen = [str(p) for p in Path(self.look).glob("*.npz") if "labels" in np.load(p).files]
        seen += [str(p) for p in Path(__file__).resolve().parents[1].rglob("*") if any(s in p.name for s in SECRETS)]
        if seen:
            raise RuntimeError(f"saw {seen[:3]}")

    def generate(self, batch, ctx):
        return ctx.generation.generate(batch, guidance=self.factor * ctx.generation.sampler.guidance)


class Quarter(Probe):
    """Guidance at a quarter of the task's scale, a single setting."""

    name = "quarter"
    sweep = ("", ())

    def __init__(self, factor: float = 0.25, look: str = ""):
        super().__init__(factor, look)


class Raises(Mitigator):
    name = "raises"

    def generate(self, batch, ctx):
        raise RuntimeError("boom")


class WrongShape(Mitigator):
    name = "wrong-shape"

    def generate(self, batch, ctx):
        return np.zeros((len(batch), 3))


class Unseeded(Mitigator):
    """The task's generation from a fresh, unseeded draw of noise: a different sample every run."""
    name = "unseeded"

    def generate(self, batch, ctx):
        fresh = np.random.default_rng().standard_normal(np.shape(batch.noise)).astype(np.float32)
        return ctx.generation.generate(batch, noise=fresh)


class Passthrough(Mitigator):
    """Hands the initial noise back as the sample: never calls the model."""
    name = "passthrough"

    def generate(self, batch, ctx):
        return np.asarray(batch.noise)


class Sleeps(Mitigator):
    name = "sleeps"

    def generate(self, batch, ctx):
        import time
        time.sleep(600)
'''


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("third-party") / "my_mitigators.py"
    path.write_text(MITIGATORS)
    return path


def _trusted(src: Path, ref: str):
    """The class imported here (as trusted code is); evaluated sealed, its file ships to the worker."""
    return resolve_detector(f"{src}:{ref}", "in-process", kind="mitigator")


def test_a_file_mitigator_runs_sealed_as_in_process_and_cannot_find_the_labels(collapse, src):
    # with a sandbox, the sealed probe goes looking for the labels in the task's build folder
    look = str(collapse.root) if sandbox_available() else ""
    mit = resolve_detector(f"{src}:Probe(look={json.dumps(look)})", "auto", kind="mitigator")
    assert isinstance(mit, SealedMitigator) and mit.params() == {"factor": 0.5, "look": look}
    assert [s.params()["factor"] for s in mit.settings()] == [0.5, 0.0] and mit.sweep == ("factor", (0.5, 0.0))
    assert not [m for m in sys.modules if m.startswith("mmh_bench_user_my_mitigators")]  # never imported here
    with pytest.raises(RuntimeError, match="runs only sealed"):
        mit.generate(None, None)
    sealed = evaluate_mitigator(mit, collapse, n=N)
    assert sealed.status == "ok", sealed.error
    assert sealed.isolation == ("sandbox" if look else "process")
    here = evaluate_mitigator(_trusted(src, "Probe"), collapse, n=N, isolation="in-process")
    assert here.isolation == "in-process"
    assert sealed.metrics == here.metrics and sealed.cost.nfe_per_sample == here.cost.nfe_per_sample
    assert sealed.n_samples == N and sealed.setting == here.setting == 0.5
    if look:  # the probe does find them where they are
        found = evaluate_mitigator(_trusted(src, f"Probe(look={json.dumps(look)})"), collapse, n=N,
                                   isolation="in-process")
        assert found.status == "failed" and "saw" in found.error and "instance.npz" in found.error


def test_the_view_holds_noises_not_generations_nor_labels(collapse, src, tmp_path):
    view = write_view(collapse, _trusted(src, "Probe"), tmp_path / "v", n=N)
    files = sorted(str(p.relative_to(view)) for p in view.rglob("*") if p.is_file())
    assert "samples.npy" not in files and {"noise.npy", "cond.npy", "job.json", "view.json"} <= set(files)
    assert any(f.startswith("model/") for f in files) and "train.npy" not in files
    assert "detector/my_mitigators.py" in files and len(np.load(view / "noise.npy")) == N
    assert json.loads((view / "view.json").read_text())["samples"] == "noise.npy"
    assert json.loads((view / "job.json").read_text())["kind"] == "mitigator"
    text = " ".join(files) + (view / "view.json").read_text()
    for secret in ("labels", "subtype", "heldout", "nn_row", "data_hash"):
        assert secret not in text


def test_broken_sealed_mitigators_fail_alone(collapse, src, tmp_path):
    from mmh_bench.registry import make_mitigator
    broken = [_trusted(src, c) for c in ("Raises", "WrongShape")]  # "auto": not shipped, so sealed
    rep = mitigate([collapse], [*broken, make_mitigator("none")], tmp_path, progress=False, n=N)
    assert len(rep.failed) == 2 and len(rep.ran) == 1
    docs = {d.mitigator: d for d in map(read_mitigation_result, rep.failed + rep.ran)}
    assert "boom" in docs["raises"].error and f"shape [{N}, 3]" in docs["wrong-shape"].error
    assert docs["raises"].isolation in ("sandbox", "process") and docs["none"].isolation == "in-process"
    slow = evaluate_mitigator(_trusted(src, "Sleeps"), collapse, n=N, timeout=2)
    assert slow.status == "failed" and "timed out" in slow.error


def _checks(report) -> dict[str, bool]:
    return {c.name: c.passed for c in report.checks}


def test_conformance_check_of_mitigators(src):
    from mmh_bench.evaluation.conformance import check_mitigator
    good = check_mitigator("none")
    assert good.ok and good.kind == "mitigator" and str(good).startswith("check_mitigator('none')")
    assert all(_checks(good).values()) and {"sweep", "output", "deterministic", "uses_model", "result"} <= set(_checks(good))
    swept = check_mitigator(_trusted(src, "Probe"))
    assert swept.ok and "2 setting(s) of factor" in next(c.message for c in swept.checks if c.name == "sweep")
    assert _checks(check_mitigator(_trusted(src, "Raises")))["runs"] is False
    assert _checks(check_mitigator(_trusted(src, "WrongShape")))["output"] is False
    unseeded = check_mitigator(_trusted(src, "Unseeded"))
    assert not unseeded.ok and _checks(unseeded)["deterministic"] is False
    passthrough = check_mitigator(_trusted(src, "Passthrough"))
    assert passthrough.ok and _checks(passthrough)["uses_model"] is False  # a warning only
    broken = check_mitigator("random")  # a detector's name is no mitigator
    assert not broken.ok and _checks(broken)["contract"] is False


def test_submit_and_verify_a_mitigator(collapse, src, tmp_path, monkeypatch, capsys):
    (tmp_path / "leaderboard" / "results").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    argv = ["submit", f"{src}:Quarter", "--kind", "mitigator", "--name", "probe-quarter", "--authors", "Ada Lovelace",
            "--url", "https://example.org", "--tasks", str(DATA / "collapse_cond.toml"), "--samples", str(N), "-q"]
    assert main(argv) == 0
    entry = tmp_path / "leaderboard" / "submissions" / "probe-quarter"
    assert {p.name for p in entry.iterdir()} == {"metadata.json", "mitigator.py", "results"}
    meta = json.loads((entry / "metadata.json").read_text())
    assert (meta["kind"], meta["detector"], meta["samples"]) == ("mitigator", "quarter", N)
    assert {c["name"] for c in meta["checks"]} >= {"contract", "sweep", "output", "deterministic", "result"}
    assert all(c["passed"] for c in meta["checks"] if c["level"] == "error")
    docs = [read_mitigation_result(p) for p in (entry / "results").rglob("*.json")]
    assert len(docs) == 1 and docs[0].status == "ok" and docs[0].isolation in ("sandbox", "process")
    capsys.readouterr()
    assert main(["verify", "probe-quarter", "-q"]) == 0
    assert json.loads((entry / "verification.json").read_text())["ok"] is True
    from mmh_bench.leaderboard.board.collect import collect_board  # the detection board leaves it out
    board = collect_board(tmp_path / "leaderboard" / "results", shipped_reported=False)
    assert not board.rows and not board.rejected

    from mmh_bench.cli.submit import compare_results  # a better number written by hand would be caught
    doc = json.loads(next((entry / "results").rglob("*.json")).read_text())
    tampered = json.loads(json.dumps(doc))
    tampered["metrics"]["memorization"]["rate"] += 0.2
    tampered["cost"]["nfe_per_sample"] -= 1
    assert {d["field"] for d in compare_results(tampered, doc, 1e-3)} == {"metrics.memorization.rate",
                                                                        "cost.nfe_per_sample"}

    from mmh_bench.mitigation.board import collect, render_markdown  # the mitigation board shows it
    mitig = tmp_path / "leaderboard" / "mitigation-results"
    groups, rejected = collect(mitig)
    assert [r.mitigator for g in groups.values() for r in g] == ["quarter [submitted: probe-quarter, verified]"]
    assert not rejected and "submitted: probe-quarter, verified" in render_markdown(mitig)
    path = next((entry / "results").rglob("*.json"))
    path.write_text(json.dumps(tampered))  # edited after verification: shown, but no longer verified
    groups, _ = collect(mitig)
    assert [r.mitigator for g in groups.values() for r in g] == ["quarter [submitted: probe-quarter, unverified]"]


def test_the_documented_mitigator_commands_name_the_kind():
    lines = [line.strip() for line in DOCS.read_text().splitlines() if line.strip().startswith("mmh-bench ")]
    submit = next(line for line in lines if "--kind mitigator" in line)
    assert shlex.split(submit)[1] == "submit"
    assert any(line.startswith("mmh-bench mitigate") and ".py:" in line for line in lines)
