"""The parallel engine (mmh_bench.evaluation.engine) on a local Dask cluster of 2 worker processes
with 1 thread each: the same metrics as the serial run, a worker killed mid-pair, a scheduler that
cannot be reached, and duplicate groups with the cell search split among the workers."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from engine_detectors import KillsItsWorker
from mmh_bench.cli.main import main
from mmh_bench.evaluation import engine
from mmh_bench.evaluation.runner import evaluate, result_name
from mmh_bench.leaderboard.schema import validate_result
from mmh_bench.retrieval.neardup import find_duplicates
from mmh_bench.retrieval.sharded import NpySource, find_duplicates_on_cluster
from mmh_bench.retrieval.synthetic_vectors import clustered_vectors, plant_groups, score_groups

DATA = Path(__file__).parent / "data"
TASKS = [str(DATA / "tiny.toml"), str(DATA / "tiny_lid.toml")]
DETECTORS = "random,copy-rule,lpca"  # lpca also serves the LID task; all cheap


@pytest.fixture(scope="module")
def client():
    with engine.cluster_client(None, 2) as c:
        yield c


def _unused_address() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _results(folder: Path) -> dict[str, dict]:
    return {str(p.relative_to(folder)): json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))}


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".json")]


def _environ(name: str) -> str | None:
    import os
    return os.environ.get(name)


def test_local_workers_keep_the_allocator_adaptive_and_one_thread(client):
    """Dask's default MALLOC_TRIM_THRESHOLD_ froze glibc's mmap threshold: scoring ran 2x slower."""
    assert set(client.run(_environ, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    assert set(client.run(_environ, "OMP_NUM_THREADS").values()) == {"1"}


def test_parallel_run_gives_the_serial_metrics_and_resumes(client, tmp_path):
    addr = client.scheduler.address
    par = engine.evaluate_parallel(TASKS, DETECTORS, tmp_path / "par", cluster=addr, progress=False)
    ser = evaluate(TASKS, DETECTORS, tmp_path / "ser", progress=False)
    assert par.failed == ser.failed == [] and len(par.ran) == len(ser.ran) >= 3
    assert sorted(par.not_applicable) == sorted(ser.not_applicable)
    a, b = _results(tmp_path / "par"), _results(tmp_path / "ser")
    assert a.keys() == b.keys()
    for key in a:  # everything but the timings and the date
        for field in set(a[key]) - {"cost", "provenance"}:
            assert a[key][field] == b[key][field], (key, field)
    # current results are skipped before anything is submitted, as serially: here no cluster is even
    # contacted (the address answers nobody)
    again = engine.evaluate_parallel(TASKS, DETECTORS, tmp_path / "par", cluster=_unused_address(),
                                     progress=False)
    assert again.ran == [] and sorted(again.skipped_current) == sorted(par.ran)
    _no_temporaries(tmp_path / "par")


def test_a_killed_worker_is_replaced_and_the_run_completes(client, tmp_path):
    marker = tmp_path / "killed-once"
    dets = [KillsItsWorker(marker=str(marker)), "random"]
    rep = engine.evaluate_parallel([TASKS[0]], dets, tmp_path / "res", cluster=client.scheduler.address,
                                   isolation="in-process", progress=False)
    assert marker.exists()  # a worker did die
    assert rep.failed == [] and len(rep.ran) == 2
    found = _results(tmp_path / "res")
    # each once; the marker path is a non-default parameter, so its digest names the result
    assert sorted(Path(k).name for k in found) == [f"{result_name(dets[0])}.json", "random.json"]
    assert result_name(dets[0]).startswith("kills-worker~")
    for doc in found.values():
        validate_result(doc)
        assert doc["status"] == "ok" and 0 <= doc["metrics"]["auroc"] <= 1
    _no_temporaries(tmp_path / "res")


def test_a_pair_that_kills_every_worker_is_recorded_as_failed(client, tmp_path):
    dets = [KillsItsWorker(marker=str(tmp_path / "m"), always=True)]
    rep = engine.evaluate_parallel([TASKS[0]], dets, tmp_path / "res", cluster=client.scheduler.address,
                                   isolation="in-process", progress=False)
    assert rep.ran == [] and len(rep.failed) == 1
    doc = json.loads(rep.failed[0].read_text())
    validate_result(doc)
    assert doc["status"] == "failed" and "KilledWorker" in doc["error"]
    _no_temporaries(tmp_path / "res")


def test_gpu_work_on_a_cluster_without_gpu_workers_stops_at_once(client, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(engine, "needs_gpu", lambda spec: True)  # as if tiny were a Stable Diffusion task
    t0 = time.monotonic()
    code = main(["run", "--tasks", TASKS[0], "--detectors", "random,copy-rule", "--results", str(tmp_path),
                 "--cluster", client.scheduler.address, "-q"])
    assert code == 2 and time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert "needs a GPU" in err and "--resources GPU=1" in err
    assert not list(tmp_path.rglob("*.json"))


def test_unreachable_cluster_exits_2_quickly(tmp_path, capsys):
    t0 = time.monotonic()
    code = main(["run", "--tasks", TASKS[0], "--detectors", "random,copy-rule", "--results", str(tmp_path),
                 "--cluster", _unused_address(), "-q"])
    assert code == 2 and time.monotonic() - t0 < 15
    err = capsys.readouterr().err.strip()
    assert "cannot reach the Dask scheduler" in err and len(err.splitlines()) == 1


def test_sharded_dedup_finds_the_single_machine_groups(client, tmp_path, capsys):
    x = clustered_vectors(50_000, 24, n_clusters=200, spread=0.5, seed=4)
    t = 0.25
    planted = plant_groups(x, [2] * 30 + [3] * 10 + [10] * 4 + [100, 400], t, seed=5)
    single = find_duplicates(x, t)
    assert score_groups(single.group_of_row, planted)["all_found"]
    sharded = find_duplicates_on_cluster(x, t, client)
    assert sharded.stats["method"] == "ivf-cells" and sharded.stats["shards"] > 2
    assert np.array_equal(sharded.group_of_row, single.group_of_row)
    # through the command line, the workers reading the .npy file themselves
    np.save(tmp_path / "emb.npy", x[:20_000])
    out = tmp_path / "groups.json"
    assert main(["dedup", str(tmp_path / "emb.npy"), "--threshold", str(t), "--out", str(out), "-q",
                 "--cluster", client.scheduler.address]) == 0
    ref = find_duplicates(x[:20_000], t)
    assert json.loads(out.read_text())["groups"] == [g.tolist() for g in ref.groups]
    assert np.array_equal(find_duplicates_on_cluster(x[:20_000], t, client, source=NpySource(
        str(tmp_path / "emb.npy"))).group_of_row, ref.group_of_row)


def test_default_workers_one_per_core_from_two_cores_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(engine.WORKERS_ENV, raising=False)
    assert engine.default_workers(10, cores=2) == 2 and engine.default_workers(10, cores=8) == 8
    assert engine.default_workers(1, cores=8) == 1 and engine.default_workers(10, cores=1) == 1
    monkeypatch.setenv(engine.WORKERS_ENV, "1")
    assert engine.default_workers(10, cores=8) == 1
    monkeypatch.setenv(engine.WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="MMH_BENCH_WORKERS"):
        engine.default_workers(10)


def test_mitigation_settings_on_the_cluster_give_the_serial_results(client, tmp_path):
    from mmh_bench.mitigation import mitigate
    from mmh_bench.registry import resolve_mitigators
    from mmh_bench.task.build import build_task
    from mmh_bench.task.spec import load_spec
    inst = build_task(load_spec(DATA / "tiny_cond.toml"), progress=False)
    mits = resolve_mitigators("none,guidance")
    par = mitigate([inst], mits, tmp_path / "par", cluster=client.scheduler.address, progress=False)
    ser = mitigate([inst], mits, tmp_path / "ser", progress=False)
    settings = sum(len(m.settings()) for m in mits)
    assert par.failed == ser.failed == [] and len(par.ran) == len(ser.ran) == settings > 2
    a, b = _results(tmp_path / "par"), _results(tmp_path / "ser")
    assert a.keys() == b.keys()
    for key in a:
        for field in set(a[key]) - {"cost", "provenance"}:
            assert a[key][field] == b[key][field], (key, field)
        assert a[key]["cost"]["nfe_per_sample"] == b[key]["cost"]["nfe_per_sample"]
    _no_temporaries(tmp_path / "par")
    # the driver judges currency on its references to worker-held instances: all current, none rerun
    again = mitigate([inst], mits, tmp_path / "par", cluster=client.scheduler.address, progress=False)
    assert again.ran == again.failed == [] and len(again.skipped_current) == settings
