"""Conformance checks, and a detector written outside the repository becoming a verified entry."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import mmh_bench as mb
from board_store import board_markdown
from mmh_bench.cli.main import main
from mmh_bench.evaluation.conformance import check_detector

DOCS = Path(__file__).parent.parent / "docs" / "SUBMITTING.md"


# -- check_detector: each check fails on the detector that breaks it ----------------------------
class Good(mb.Detector):
    name, access = "good", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return -np.linalg.norm(batch.x, axis=1)


class Sneaky(Good):
    """Declares samples, reaches for the training set."""
    name = "sneaky"

    def score(self, batch, ctx):
        return ctx.train_index.search(batch.x, 1)[0][:, 0]


class CondSneaky(Good):
    """Declares the model, then passes conditions to it (needs MODEL_COND)."""
    name, access = "cond-sneaky", mb.Access.MODEL

    def score(self, batch, ctx):
        import torch
        eps = ctx.model.eps(torch.as_tensor(batch.x, dtype=torch.float32), 0.05, [0] * len(batch))
        return eps.detach().numpy().sum(1)


class Unseeded(Good):
    name = "unseeded"

    def score(self, batch, ctx):
        return np.random.default_rng().random(len(batch))


class NaNs(Good):
    name = "nans"

    def score(self, batch, ctx):
        return np.full(len(batch), np.nan)


class TwoColumns(Good):
    name = "two-columns"

    def score(self, batch, ctx):
        return np.zeros((len(batch), 2))


class BadName(Good):
    name = "a/b"


class RetunesInFit(Good):
    """Overwrites its constructor parameter with a fitted value."""
    name = "retunes"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, ctx):
        self.scale = float(np.abs(ctx.samples.x).max())


class PublicFittedState(Good):
    name = "public-state"

    def fit(self, ctx):
        self.centre = ctx.samples.x.mean(0)  # fitted state must be self.centre_ or self._centre


class HidesParameter(Good):
    """Keeps its constructor argument under another name, so it cannot be cloned or recorded."""
    name = "hides-parameter"

    def __init__(self, k: int = 3) -> None:
        self._k = k


@pytest.mark.parametrize("det, failing", [
    (Sneaky(), "access"), (CondSneaky(), "access"), (Unseeded(), "deterministic"),
    (NaNs(), "finite"), (TwoColumns(), "output"), (BadName(), "contract"),
    (RetunesInFit(), "fitted_state"), (PublicFittedState(), "fitted_state"), (HidesParameter(), "contract"),
])
def test_check_detector_catches(det, failing):
    report = check_detector(det)
    assert not report.ok and [c.name for c in report.failures] == [failing], str(report)
    with pytest.raises(AssertionError):
        report.raise_if_failed()


def test_check_detector_passes_a_good_detector():
    det = Good()
    report = check_detector(det)
    assert report.ok, str(report)
    names = {c.name for c in report.checks if c.passed}
    assert {"contract", "access", "output", "finite", "fitted_state", "deterministic", "result",
            "batch_independent"} <= names
    assert report.task == "mmh-check"


def test_check_task_is_conditional():
    from mmh_bench.evaluation.conformance import check_task_spec
    spec = check_task_spec()
    assert spec.conditional and spec.name == "mmh-check"


# -- from a file outside the repository to a verified entry -------------------------------------
def _detector_from_docs() -> str:
    """The detector shown in docs/SUBMITTING.md: the test runs exactly what the docs show."""
    text = DOCS.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "docs/SUBMITTING.md lost its python example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 20
    return code


def _commands_from_docs() -> list[str]:
    return [line.strip() for line in DOCS.read_text().splitlines() if line.strip().startswith("mmh-bench ")]


def test_detector_outside_repo_becomes_verified_entry(tmp_path, tiny_spec, monkeypatch, capsys):
    # a fresh project folder; tiny is registered the way users add tasks of their own
    work = tmp_path / "elsewhere"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "tiny.toml").write_text(Path(tiny_spec.path).read_text())
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(work / "specs"))
    (work / "my_detector.py").write_text(_detector_from_docs())
    (work / "leaderboard" / "results").mkdir(parents=True)
    monkeypatch.chdir(work)

    # the three documented commands, with the quick task instead of the standard suite
    submit, verify, board = _commands_from_docs()[:3]
    assert submit.startswith("mmh-bench submit my_detector.py:") and "--name crowding" in submit
    assert verify == "mmh-bench verify crowding" and board.startswith("mmh-bench leaderboard")
    import shlex
    assert main(shlex.split(submit)[1:] + ["--tasks", "tiny", "-q"]) == 0
    entry = work / "leaderboard" / "submissions" / "crowding"
    assert {p.name for p in entry.iterdir()} == {"metadata.json", "detector.py", "results"}
    meta = json.loads((entry / "metadata.json").read_text())
    assert meta["detector"] == "crowding" and meta["tasks"][0]["name"] == "tiny"
    assert meta["authors"] == ["Ada Lovelace", "Alan Turing"]
    ran = json.loads(next((entry / "results").rglob("crowding.json")).read_text())
    assert ran["isolation"] in ("sandbox", "process")  # submissions are always evaluated sealed

    assert main(shlex.split(verify)[1:] + ["-q"]) == 0
    record = json.loads((entry / "verification.json").read_text())
    assert record["ok"] is True
    # verify also scored it held out: fresh instances, results beside the entry's, public vs held-out
    [task] = record["heldout"]
    assert task["task"] == "tiny" and task["metric"] == "auroc" and len(task["heldout"]) == 1
    [held] = [json.loads((entry / rel).read_text()) for rel in record["heldout_files"]]
    assert held["instance"]["kind"] == "fresh" and held["instance"]["data_hash"] != ran["instance"]["data_hash"]
    import sys  # submit and verify described, checked and scored it in sandboxed workers only
    assert not [m for m in sys.modules if m.startswith("mmh_bench_user_detector_")]
    assert main(shlex.split(board)[1:]) == 0
    readme = board_markdown(work / "leaderboard")
    row = next(line for line in readme.splitlines() if "| crowding" in line)
    assert "(verified)" in row and "submission" in row
    assert "crowding" in (work / "leaderboard" / "index.html").read_text()
    capsys.readouterr()

    # tampering: a better number written by hand is caught by verify and drops the badge
    res = next((entry / "results").rglob("crowding.json"))  # under its instance folder
    doc = json.loads(res.read_text())
    doc["metrics"]["auroc"] = min(1.0, doc["metrics"]["auroc"] + 0.2)
    res.write_text(json.dumps(doc))
    assert main(["leaderboard"]) == 0
    row = next(line for line in board_markdown(work / "leaderboard").splitlines() if "| crowding" in line)
    assert "(unverified)" in row
    assert main(["verify", "crowding", "--no-record", "-q"]) == 1
    out = capsys.readouterr().out
    assert "metrics.auroc" in out and "NOT verified" in out


def test_submit_refuses_a_failing_detector(tmp_path, monkeypatch, capsys):
    src = tmp_path / "bad.py"
    src.write_text("import mmh_bench as mb\n\nclass Peek(mb.Detector):\n    name = 'peek'\n"
                   "    def score(self, batch, ctx):\n        return ctx.train_index.search(batch.x, 1)[0][:, 0]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["submit", f"{src}:Peek", "--name", "peek", "--authors", "X", "--url", "https://example.org",
                 "--tasks", "mmh-toy", "--board", "lb", "-q"]) == 1
    assert "FAIL] access" in capsys.readouterr().out
    assert not (tmp_path / "lb" / "submissions" / "peek").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--name", "../escape"], "submission name"),
    (["--name", "ok", "--url", "javascript:alert(1)"], "http"),
])
def test_submit_rejects_bad_arguments(argv, needle, tmp_path, capsys):
    base = {"--name": "x", "--authors": "A", "--url": "https://example.org"}
    base.update(dict(zip(argv[::2], argv[1::2])))
    args = ["submit", f"{tmp_path}/d.py:D", "--board", str(tmp_path)] + [v for kv in base.items() for v in kv]
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_verify_unknown_entry(tmp_path, capsys):
    assert main(["verify", "nobody", "--board", str(tmp_path)]) == 2
    assert "no submission" in capsys.readouterr().err
