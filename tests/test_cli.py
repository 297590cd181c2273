import json
from pathlib import Path

import pytest

from mmh_bench.cli.main import main


def test_tasks_and_detectors_json(capsys):
    assert main(["tasks", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    toy = next(t for t in tasks if t["name"] == "mmh-toy")
    assert {"name", "family", "version", "dim"} <= set(toy) and toy["family"] == "synthetic"
    assert main(["detectors", "--json"]) == 0
    dets = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert dets["flipd"]["access"] == "model" and dets["nn-ratio"]["access"] == "train_data"
    assert dets["random"]["access"] == "samples"


@pytest.mark.parametrize("argv, needle", [
    (["run", "--tasks", "no-such-task", "--detectors", "random"], "unknown task"),
    (["run", "--tasks", "mmh-toy", "--detectors", "no-such-detector"], "unknown detector"),
    (["run", "--tasks", "mmh-toy", "--detectors", "/nope/x.py:Cls"], "does not exist"),
    (["leaderboard", "--results", "/nonexistent/results"], "does not exist"),
    (["run", "--tasks", "mmh-toy", "--detectors", "random", "--instances", "/no/such/dir"], "/no/such/dir"),
    (["mitigate", "--tasks", "syn10-cond", "--mitigators", "none", "--instances", "/no/such/dir"], "/no/such/dir"),
])
def test_bad_input_is_one_line_and_nonzero(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_run_and_leaderboard_end_to_end(tiny_spec, tmp_path, capsys, monkeypatch):
    res, board = tmp_path / "res", tmp_path / "board"
    # the board shows registered tasks only: register tiny the way users add their own tasks
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tiny.toml").write_text(Path(tiny_spec.path).read_text())
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(specs))
    assert main(["run", "--tasks", tiny_spec.path, "--detectors", "random,nn-ratio,flipd",
                 "--results", str(res), "-q"]) == 0
    assert main(["leaderboard", "--results", str(res), "--out", str(board)]) == 0
    assert "](tasks/tiny.md)" in (board / "README.md").read_text()  # the overview links the task's page
    text = (board / "tasks" / "tiny.md").read_text()
    for name in ("random", "nn-ratio", "flipd", "# tiny"):
        assert name in text


def test_help_everywhere(capsys):
    for cmd in ([], ["run"], ["tasks"], ["leaderboard"]):
        with pytest.raises(SystemExit) as e:
            main(cmd + ["--help"])
        assert e.value.code == 0


def test_without_a_sandbox_submit_and_verify_refuse_and_run_says_so(tiny_spec, tmp_path, capsys, monkeypatch):
    """No bwrap on the PATH: submitted code is never run at all by submit/verify (exit 2 with the
    fix), and `run` of a file detector says, once and loudly, that it runs unsealed."""
    from mmh_bench.evaluation.sealed import selftest
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no bwrap (the workers use sys.executable)
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")  # joblib would look for `cat` on that PATH
    monkeypatch.setattr(selftest, "_warned", set())
    selftest.sandbox_status.cache_clear()
    try:
        det = tmp_path / "det.py"
        det.write_text("import numpy as np\nimport mmh_bench as mb\n\nclass D(mb.Detector):\n"
                       "    name, access = 'unsealed-probe', mb.Access.SAMPLES\n"
                       "    def score(self, batch, ctx):\n        return np.zeros(len(batch))\n")
        board = tmp_path / "board"
        for argv in (["submit", f"{det}:D", "--name", "x", "--authors", "A", "--url", "https://example.org",
                      "--board", str(board), "--tasks", tiny_spec.path],
                     ["verify", "x", "--board", str(board)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert "only inside the sandbox" in err and "apt-get install bubblewrap" in err, err
        assert not (board / "submissions").exists()
        assert main(["run", "--tasks", tiny_spec.path, "--detectors", "random", "--instances", "fresh",
                     "--results", str(tmp_path / "fresh")]) == 2
        assert "only inside the sandbox" in capsys.readouterr().err
        res = tmp_path / "res"
        assert main(["run", "--tasks", tiny_spec.path, "--detectors", f"{det}:D", "--results", str(res), "-q"]) == 0
        err = capsys.readouterr().err
        assert err.count("UNSEALED: unsealed-probe") == 1 and "bubblewrap is not installed" in err, err
        docs = [json.loads(p.read_text()) for p in res.rglob("*.json")]
        assert docs and all(d["isolation"] == "process" for d in docs)
    finally:
        selftest.sandbox_status.cache_clear()
