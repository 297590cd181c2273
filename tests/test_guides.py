"""The worked examples of docs/ADDING_A_TASK.md and docs/ADDING_A_METRIC.md run exactly as shown."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmh_bench.cli.main import main

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def _blocks(name: str, lang: str) -> list[str]:
    """The fenced blocks of ``docs/name`` in language ``lang`` ("" for plain blocks), in order."""
    return [body for tag, body in re.findall(r"```(\w*)\n(.*?)```", (DOCS / name).read_text(), re.S) if tag == lang]


def test_adding_a_task(tmp_path, monkeypatch, capsys):
    spec, _ = _blocks("ADDING_A_TASK.md", "toml")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "ring-and-point.toml").write_text(spec)
    shell, _ = _blocks("ADDING_A_TASK.md", "")
    lines = [line.strip() for line in shell.splitlines() if line.strip()]
    assert lines[0] == "export MMH_BENCH_TASKS_PATH=specs"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(tmp_path / "specs"))
    for cmd in lines[1:]:
        argv = shlex.split(cmd)[1:]
        quiet = ["-q"] if argv[0] in ("build", "show", "run") else []
        assert main(argv + quiet) == 0, cmd
    assert "ring-and-point" in capsys.readouterr().out
    assert len(list((tmp_path / "results" / "ring-and-point").rglob("*.json"))) == 2


def test_adding_a_family(tmp_path):
    """The guide's new family end to end, in a fresh process as a user runs it (the family module is
    read when the families are first asked for): its module and spec as shown, the commands as
    shown, then its record on the board model."""
    (module,) = _blocks("ADDING_A_TASK.md", "python")
    _, spec = _blocks("ADDING_A_TASK.md", "toml")
    _, shell = _blocks("ADDING_A_TASK.md", "")
    (tmp_path / "gaussian_blobs.py").write_text(module)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "blobs-demo.toml").write_text(spec)
    env = dict(os.environ, MMH_BENCH_CACHE=str(tmp_path / "cache"))
    commands = []
    for line in (line.strip() for line in shell.splitlines() if line.strip()):
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = str(tmp_path / value) if value in (".", "specs") else value
        else:
            argv = shlex.split(line)[1:]
            commands.append(argv + (["-q"] if argv[0] in ("build", "run") else []))
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT), os.environ.get("PYTHONPATH", "")])
    assert env["MMH_BENCH_FAMILIES"] == "gaussian_blobs" and len(commands) == 3
    script = "\n".join(["import sys", "from mmh_bench.cli.main import main",
                         *[f"assert main({argv!r}) == 0, {argv!r}" for argv in commands],
                         "from mmh_bench.leaderboard.board.model import FAMILIES, section_title",
                         "from mmh_bench.task.build import cached_task",
                         "from mmh_bench.registry import get_task",
                         "inst = cached_task(get_task('blobs-demo'))",
                         "print('labels', int(inst.labels.sum()), len(inst.labels))",
                         "print('title', FAMILIES['blobs'], section_title('blobs', 'memorization'))"])
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "blobs-demo" in out.stdout and "title Gaussian blobs Gaussian blobs" in out.stdout
    labels = next(line.split() for line in out.stdout.splitlines() if line.startswith("labels "))
    assert int(labels[2]) == 190 and 30 <= int(labels[1]) < 190  # the copies, and few fresh draws
    assert len(list((tmp_path / "results" / "blobs-demo").rglob("*.json"))) == 2


def test_adding_a_metric(tiny_spec, capsys):
    code, _ = _blocks("ADDING_A_METRIC.md", "python")
    assert 'TASK = "mmh-toy"' in code
    code = code.replace('TASK = "mmh-toy"', f"TASK = {str(tiny_spec.path)!r}")  # the quick task
    ns: dict = {"__name__": "guide"}
    exec(compile(code, "docs/ADDING_A_METRIC.md", "exec"), ns)
    assert capsys.readouterr().out.startswith("R-precision ")
    r_precision = ns["r_precision"]
    assert r_precision(np.array([1, 0, 1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])) == pytest.approx(2 / 3)


def test_adding_a_column(monkeypatch):
    """The guide's column entry, put after AP in the column table, is all both renderers need."""
    from mmh_bench.leaderboard.board import Board, InstanceFacts, Row, TaskFacts, columns, render_html, render_markdown
    from pydantic import create_model

    from board_store import mem_metrics
    from mmh_bench.leaderboard.schema import Cost, MemorizationMetrics
    with_rp = create_model("WithRPrecision", __base__=MemorizationMetrics, r_precision=(float, ...))  # the guide's field
    _, entry = _blocks("ADDING_A_METRIC.md", "python")
    assert entry in "".join(_blocks("BOARD.md", "python"))
    col = eval(entry.strip().rstrip(","), vars(columns))
    at = [c.key for c in columns.COLUMNS].index("ap") + 1
    monkeypatch.setattr(columns, "COLUMNS", columns.COLUMNS[:at] + (col,) + columns.COLUMNS[at:])
    data_hash = "ab" * 32
    board = Board(tasks={("toy", "1"): TaskFacts("toy", "1", "synthetic", "memorization", instances={
        data_hash: InstanceFacts(f"test-{data_hash[:12]}", "test", data_hash)})})
    board.rows += [Row(kind="measured", task="toy", version="1", family="synthetic", track="memorization",
                       detector=d, access="samples", group="sample-side", instance=data_hash,
                       metrics=mem_metrics(auroc, with_rp, r_precision=rp), cost=Cost(nfe_per_sample=0.0, jvp_per_sample=0.0, seconds=1.0, peak_mb=0.0))
                   for d, auroc, rp in (("low", 0.6, 0.25), ("high", 0.9, 0.75))]
    readme, page = render_markdown(board), render_html(board)
    head = next(line for line in readme.splitlines() if line.startswith("| #"))
    cells = [c.strip() for c in head.strip("|").split("|")]
    assert cells[cells.index("AP") + 1] == "R-precision"
    assert "| 0.750 " in readme and "| 0.250 " in readme
    assert 'data-first="descending" title="sort by R-precision">R-precision</th>' in page
    assert '<td data-v="0.75">0.750</td>' in page
