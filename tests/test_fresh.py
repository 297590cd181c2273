"""Held-out evaluation: a detector that memorized the published answers wins on the public instance
and falls to chance on fresh instances, which are built for the run, never written where the
repository or the published tree could carry them, and discarded afterwards unless a pool is kept."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from board_store import board_markdown
from mmh_bench.cli.main import main
from mmh_bench.task.build import build_task
from mmh_bench.task.fresh import FreshPool, PoolError, check_pool_location, fill_pool, pool_instances
from mmh_bench.task.instances import InstanceKey
from mmh_bench.task.publish import publish_instance, verify_published
from mmh_bench.task.spec import load_spec

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.toml"

#: a hostile submitter's detector: the hashes of the published positives, embedded in its file;
#: at run time it reads nothing but batch.x (the same file benchmarks/answer_table_attack.py measures)
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from answer_table_attack import DETECTOR as ANSWER_TABLE, positive_hashes  # noqa: E402


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> Path:
    """A published (public) test instance of the tiny task, in the layout of leaderboard/instances."""
    root = tmp_path_factory.mktemp("public")
    inst = build_task(load_spec(TINY), root / "cache", instance=InstanceKey("test", secret="the public one, 0123456"),
                      progress=False)
    return publish_instance(inst, root / "instances" / "tiny" / inst.instance_info()["id"])


def _answer_table(public: Path, where: Path) -> str:
    """Write the detector file from the published arrays alone, as an outsider could."""
    table = sorted(positive_hashes(verify_published(public)[2]))
    assert table
    path = where / "answer_table.py"
    path.write_text(ANSWER_TABLE.format(table=table))
    return f"{path}:AnswerTable"


def _results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def test_memorized_answers_win_on_public_and_fall_to_chance_held_out(public, tmp_path):
    ref = _answer_table(public, tmp_path)
    pub_res, fresh_res = tmp_path / "public-results", tmp_path / "fresh-results"
    assert main(["run", "--tasks", str(TINY), "--detectors", ref, "--results", str(pub_res),
                 "--instances", str(public.parent.parent), "-q"]) == 0
    [doc] = _results(pub_res)
    assert doc["instance"]["kind"] == "test" and doc["metrics"]["auroc"] > 0.99
    assert main(["run", "--tasks", str(TINY), "--detectors", ref, "--results", str(fresh_res),
                 "--instances", "fresh", "-q"]) == 0
    [doc] = _results(fresh_res)
    assert doc["status"] == "ok" and doc["instance"]["kind"] == "fresh", doc["error"]
    assert doc["instance"]["id"].startswith("fresh-") and "replicate" in doc["instance"]
    assert 0.4 <= doc["metrics"]["auroc"] <= 0.6


def test_fresh_instances_are_new_each_run_and_the_private_pool_is_removed(tmp_path, monkeypatch):
    import tempfile
    made: list[str] = []
    real = tempfile.mkdtemp

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    hashes = []
    for k in range(2):
        out = tmp_path / f"r{k}"
        assert main(["run", "--tasks", str(TINY), "--detectors", "random", "--results", str(out),
                     "--instances", "fresh", "-q"]) == 0
        [doc] = _results(out)
        hashes.append(doc["instance"]["data_hash"])
    assert hashes[0] != hashes[1]  # each run draws its own secret
    assert made and not any(Path(m).exists() for m in made)  # nothing of them is left behind


def test_a_kept_pool_is_built_once_and_reused(tmp_path, capsys):
    spec = load_spec(TINY)
    pool = FreshPool(str(tmp_path / "pool"), replicates=2)
    assert fill_pool([spec], pool, progress=False) == {"tiny": 2}
    first = pool_instances(spec, pool)
    assert [i.instance_kind for i in first] == ["fresh", "fresh"]
    assert [i.meta["instance_replicate"] for i in first] == [0, 1] and first[0].data_hash != first[1].data_hash
    assert fill_pool([spec], pool, progress=False) == {"tiny": 0}  # kept: evaluating only
    for inst in first:  # the record keeps no seed; the folder name is a one-way hash
        assert not {k for k in inst.meta if "seed" in k.lower() or "secret" in k.lower()}
    out = tmp_path / "res"
    assert main(["run", "--tasks", str(TINY), "--detectors", "random", "--results", str(out), "--instances", "fresh",
                 "--fresh-pool", pool.root, "--fresh-replicates", "2", "-q"]) == 0
    assert sorted(d["instance"]["data_hash"] for d in _results(out)) == sorted(i.data_hash for i in first)


def test_pool_locations_that_would_publish_held_out_answers_are_refused(tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with pytest.raises(PoolError, match="git work tree"):
        check_pool_location(repo / "pool")
    with pytest.raises(PoolError, match="published instances"):
        check_pool_location(tmp_path / "leaderboard" / "instances" / "pool")
    assert main(["run", "--tasks", str(TINY), "--detectors", "random", "--results", str(tmp_path / "r"),
                 "--instances", "fresh", "--fresh-pool", str(repo / "pool"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "git work tree" in err and len(err.splitlines()) == 1
    assert main(["run", "--tasks", str(TINY), "--detectors", "random", "--fresh-pool", str(tmp_path / "p")]) == 2
    assert "--instances fresh" in capsys.readouterr().err


def test_a_fresh_instance_published_becomes_a_public_test_instance(tmp_path):
    spec = load_spec(TINY)
    pool = FreshPool(str(tmp_path / "pool"), replicates=1)
    fill_pool([spec], pool, progress=False)
    [inst] = pool_instances(spec, pool)
    body, _, _ = verify_published(publish_instance(inst, tmp_path / "pub"))
    assert body["instance_kind"] == "test" and body["meta"]["instance_kind"] == "test"


def test_verify_and_the_board_flag_an_entry_that_memorized_the_public_answers(public, tmp_path, monkeypatch, capsys):
    """The whole path a hostile submitter takes: submit (scored on the public instance: 1.0), verify
    (reproduces, and scores it held out: chance), the board shows both and flags the gap."""
    import shutil
    work = tmp_path / "project"
    (work / "specs").mkdir(parents=True)
    (work / "specs" / "tiny.toml").write_text(TINY.read_text())
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(work / "specs"))
    shutil.copytree(public, work / "leaderboard" / "instances" / "tiny" / public.name)
    (work / "leaderboard" / "results").mkdir()
    ref = _answer_table(public, work)
    monkeypatch.chdir(work)
    assert main(["submit", ref, "--name", "answers", "--authors", "Mallory", "--url", "https://example.org/a",
                 "--tasks", "tiny", "-q"]) == 0
    # the public result reproduces: that is not the question; two held-out replicates give the
    # spread the gap is judged by (one on each side is never judged)
    assert main(["verify", "answers", "--fresh-replicates", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "FLAGGED" in out
    record = json.loads((work / "leaderboard" / "submissions" / "answers" / "verification.json").read_text())
    [task] = record["heldout"]
    assert task["public"][0] > 0.99 and all(0.4 <= v <= 0.6 for v in task["heldout"]) and len(task["heldout"]) == 2
    assert task["flagged"] is True and task["judged"] is True
    assert main(["leaderboard"]) == 0
    readme = board_markdown(work / "leaderboard")
    assert "Public and held-out" in readme
    row = next(line for line in readme.splitlines() if line.startswith("|") and "FLAGGED" in line)
    assert "answer-table" in row and "1.000 (1)" in row and "(2)" in row
    # official numbers first: the overview (and the first table) use the held-out instance
    assert "The overview uses the mean over the 2 fresh replicates." in readme


POOL_LEAK = '''
import glob
import numpy as np
import mmh_bench as mb

POOL = {pool!r}


class PoolLeak(mb.Detector):
    """Reads the fresh pool's build files and looks each sample's label up by its bytes."""
    name = "pool-leak"
    access = mb.Access.SAMPLES

    def score(self, batch, ctx):
        table = {{}}
        for path in glob.glob(POOL + "/*/*/instance.npz"):
            try:
                a = np.load(path)
                table.update((r.tobytes(), float(l)) for r, l in zip(a["samples"], a["labels"]))
            except (OSError, KeyError, ValueError):
                pass
        rows = np.ascontiguousarray(np.asarray(batch.x, dtype=np.float32))
        return np.array([table.get(r.tobytes(), 0.0) for r in rows])
'''


def test_a_sealed_detector_cannot_read_the_fresh_pool(tmp_path):
    """The pool holds the held-out labels: in-process (trusted code) a probe reads them, sealed it
    finds nothing there."""
    from mmh_bench.evaluation.sealed import sandbox_available
    if not sandbox_available():
        pytest.skip("bubblewrap missing or failing its self-test")
    pool = tmp_path / "pool"
    det = tmp_path / "leak.py"
    det.write_text(POOL_LEAK.format(pool=str(pool)))
    got = {}
    for isolation in ("in-process", "sealed"):
        out = tmp_path / isolation
        assert main(["run", "--tasks", str(TINY), "--detectors", f"{det}:PoolLeak", "--results", str(out),
                     "--instances", "fresh", "--fresh-pool", str(pool), "--isolation", isolation, "-q"]) == 0
        [doc] = _results(out)
        got[isolation] = (doc["isolation"], doc["metrics"]["auroc"])
    assert got["in-process"][1] > 0.99  # the probe works where nothing seals it
    assert got["sealed"] == ("sandbox", 0.5)


def test_the_gap_rule_needs_a_spread_and_judges_one_public_replicate_against_the_held_out_spread():
    """One replicate on each side has no spread: a second training run moved shipped detectors by
    0.1-0.4 AUROC on the one-replicate tasks, so such a gap is never flagged. One public replicate
    against three held-out ones is judged by their pooled spread."""
    from mmh_bench.leaderboard.heldout import compare
    single = compare([0.68], [0.29])
    assert single.judged is False and single.flagged is False and single.gap == pytest.approx(0.39)
    memorized = compare([1.0], [0.50, 0.51, 0.49])
    assert memorized.judged and memorized.flagged
    noisy = compare([0.70], [0.62, 0.78, 0.55])  # within what another training run does
    assert noisy.judged and not noisy.flagged
    lid = compare([0.20], [0.50, 0.52, 0.49], higher_is_better=False)  # MAE: lower is better
    assert lid.gap == pytest.approx(0.3033, abs=1e-3) and lid.flagged
    from mmh_bench.leaderboard.schema import HeldOutTask  # verify records each task's comparison so
    for c in (single, memorized, lid):
        assert HeldOutTask.model_validate({"task": "t", "metric": "auroc", **c.model_dump()}).flagged == c.flagged


def test_the_headline_is_read_off_the_typed_result():
    """verify compares each result's headline metric (AUROC; MAE on the LID track) as read_result
    returns it; a failed result has none."""
    from mmh_bench.leaderboard.heldout import headline
    from mmh_bench.leaderboard.store import read_result
    store = Path(__file__).parent.parent / "leaderboard" / "results"
    mem = read_result(next((store / "image-digits").rglob("random.json")))
    lid = read_result(next((store / "lid-affine10").rglob("flipd.json")))
    assert headline(mem) == mem.metrics.auroc and headline(lid) == lid.metrics.mae
    failed = mem.model_copy(update={"status": "failed", "error": "boom", "metrics": None})
    assert headline(failed) is None


def test_a_fresh_draw_that_misses_the_label_balance_is_redrawn(tmp_path, monkeypatch):
    """One unlucky placement (a fresh syn10-od replicate with 18 OD copies where the spec asks 20)
    must not end a held-out run: the pool draws another secret, as an unbalanced test instance
    would never have been published; any other build error still stops it."""
    from mmh_bench.task import fresh
    from mmh_bench.task.build import BuildError
    keys = []

    def build(spec, root, *, instance, progress):
        keys.append(instance)
        if len(keys) == 1:
            raise BuildError(f"task {spec.name!r} did not reach its declared label balance: ...")
    monkeypatch.setattr(fresh, "build_task", build)
    monkeypatch.setattr(fresh, "pool_instances", lambda spec, pool: [])
    spec = load_spec(TINY)
    pool = FreshPool(str(tmp_path / "pool"), replicates=2)
    assert fill_pool([spec], pool, progress=False) == {spec.name: 2}
    assert len(keys) == 3 and keys[0].secret != keys[1].secret == keys[2].secret
    assert [k.replicate for k in keys] == [0, 0, 1]
    keys.clear()
    monkeypatch.setattr(fresh, "build_task", lambda *a, **k: (_ for _ in ()).throw(BuildError("no model")))
    with pytest.raises(BuildError, match="no model"):
        fill_pool([spec], pool, progress=False)
