"""Task instances as data: publish -> pull gives the same bytes, the same metrics, and no secrets."""
from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmh_bench.task.build import build_task, load_instance
from mmh_bench.cli.main import main
from mmh_bench.files import sha256_arrays, sha256_file
from mmh_bench.task.publish import (PublishError, find_instances, publish_instance, pull_instance,
                               verify_published)
from mmh_bench.registry import make_detector
from mmh_bench.evaluation.runner import evaluate_pair
from mmh_bench.task.spec import load_spec
from mmh_bench_baselines.flipd import FLIPD

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tiny_cond():
    return build_task(load_spec(DATA / "tiny_cond.toml"), progress=False)


@pytest.fixture(scope="module")
def published(tiny, tmp_path_factory) -> Path:
    return publish_instance(tiny, tmp_path_factory.mktemp("pub") / "tiny")


def _metrics(inst) -> list[str]:
    """Metrics and ROC of a few shipped detectors (cheap FLIPD: fixed t0, exact trace in D <= 3)."""
    out = []
    for det in (make_detector("random"), make_detector("nn-ratio"), FLIPD(t0=0.05)):
        res = evaluate_pair(inst, det, seed=1)
        assert res.status == "ok", res.error
        out.append(res.model_dump_json(include={"metrics", "roc"}, by_alias=True))
    return out


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
        assert a[key].tobytes() == b[key].tobytes(), key


def _json_keys(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | set().union(*(_json_keys(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_json_keys(v) for v in obj)) if obj else set()
    return set()


@pytest.mark.parametrize("which", ["tiny", "tiny_cond"])
def test_pulled_instance_gives_identical_metrics(which, request, tmp_path):
    inst = request.getfixturevalue(which)
    folder = publish_instance(inst, tmp_path / "pub")
    pulled = pull_instance(folder, tmp_path / "fresh-cache")
    assert pulled.root == tmp_path / "fresh-cache" / inst.spec.name / "instances" / inst.data_hash[:16]
    assert pulled.data_hash == inst.data_hash and pulled.spec.hash == inst.spec.hash
    _same_arrays(inst.arrays, pulled.arrays)
    assert load_instance(pulled.spec, pulled.root) is not None  # same layout as a build folder
    assert [i.data_hash for i in find_instances(inst.spec.name, tmp_path / "fresh-cache")] == [inst.data_hash]
    assert _metrics(pulled) == _metrics(inst)


def test_flipped_byte_in_any_file_is_refused(published, tmp_path):
    files = sorted(p.relative_to(published) for p in published.rglob("*") if p.is_file())
    assert {"instance.json", "README.md", "spec.toml", "samples/data-00000-of-00001.arrow",
            "model/weights.safetensors"} <= {f.as_posix() for f in files}
    for i, rel in enumerate(files):
        copy = shutil.copytree(published, tmp_path / f"c{i}")
        raw = bytearray((copy / rel).read_bytes())
        raw[len(raw) // 2] ^= 0x01
        (copy / rel).write_bytes(bytes(raw))
        with pytest.raises(PublishError, match=str(rel.name).replace(".", r"\.")):
            pull_instance(copy, tmp_path / "cache")
    assert not (tmp_path / "cache" / "tiny" / "instances").exists() or \
        not any(p for p in (tmp_path / "cache" / "tiny" / "instances").iterdir())


def test_missing_file_and_missing_folder_are_named(published, tmp_path):
    copy = shutil.copytree(published, tmp_path / "c")
    (copy / "model" / "config.json").unlink()
    with pytest.raises(PublishError, match="config.json: missing"):
        verify_published(copy)
    with pytest.raises(PublishError, match="no such folder"):
        pull_instance(tmp_path / "nowhere", tmp_path / "cache")


def test_paths_outside_the_folder_are_refused(published, tmp_path):
    from mmh_bench.task.publish import _seal
    copy = shutil.copytree(published, tmp_path / "c")
    body = json.loads((copy / "instance.json").read_text())
    del body["self_sha256"]
    body["files"]["../escaped.txt"] = body["files"].pop("spec.toml")
    (copy / "instance.json").write_text(_seal(body))  # a well-formed record naming a bad path
    with pytest.raises(PublishError, match="'../escaped.txt', a path outside the instance folder"):
        pull_instance(copy, tmp_path / "cache")


def test_test_instance_publishes_no_seed_or_secret(tiny, tmp_path):
    meta = {**tiny.meta, "instance_kind": "test", "seed": 11, "instance_seed": 12, "secret": "x",
            "copying": {**tiny.meta.get("copying", {}), "secret_offset": 1.0}}
    folder = publish_instance(dataclasses.replace(tiny, meta=meta), tmp_path / "pub")
    for path in folder.rglob("*"):
        assert "seed" not in path.name.lower() and "secret" not in path.name.lower(), path
        if path.suffix == ".json":
            keys = {k.lower() for k in _json_keys(json.loads(path.read_text()))}
            assert not {k for k in keys if "seed" in k or "secret" in k}, path
    pulled = pull_instance(folder, tmp_path / "cache")
    assert pulled.instance_kind == "test" and "seed" not in pulled.meta
    assert getattr(pulled.spec, "instance", "test") == "test"
    # a dev instance keeps its seed (its spec is public) but never a secret
    dev = publish_instance(dataclasses.replace(tiny, meta={**meta, "instance_kind": "dev"}), tmp_path / "dev")
    body = json.loads((dev / "instance.json").read_text())["meta"]
    assert body["seed"] == 11 and "instance_seed" not in body and "secret" not in body
    assert "secret_offset" not in body["copying"]


def test_dtypes_shapes_and_special_values_round_trip(tiny, tmp_path):
    n = len(tiny.samples)
    odd = {"img": np.arange(n * 24, dtype=np.uint8).reshape(n, 2, 3, 4),
           "half": np.linspace(-1, 1, n).astype(np.float16), "flag": np.arange(n) % 3 == 0,
           "prompts": np.array([f"p{i}" * (i % 4) for i in range(n)], dtype="<U7"),
           "raw": np.array([bytes([i % 256]) * 2 for i in range(n)], dtype="S3"),
           "special": np.array([np.nan, -0.0, np.inf, -np.inf] * (n // 4), dtype=np.float32),
           "train_extra": np.arange(len(tiny.arrays["train"]), dtype=np.int32),
           "scalar": np.array(3.5), "odd_rows": np.ones((7, 0)), "cplx": np.ones(5, dtype=np.complex64)}
    arrays = {**tiny.arrays, **odd}
    meta = {**tiny.meta, "data_hash": sha256_arrays(arrays)}
    folder = publish_instance(dataclasses.replace(tiny, arrays=arrays, meta=meta), tmp_path / "pub")
    manifest = json.loads((folder / "instance.json").read_text())["arrays"]
    assert manifest["img"]["in"] == "samples" and manifest["train_extra"]["in"] == "train"
    assert {manifest[k]["in"] for k in ("scalar", "odd_rows", "cplx")} == \
        {"arrays/scalar.npy", "arrays/odd_rows.npy", "arrays/cplx.npy"}
    _, _, back = verify_published(folder)
    _same_arrays(arrays, back)
    from datasets import load_from_disk
    assert load_from_disk(str(folder / "samples")).num_rows == n  # plain Arrow for any datasets user


def test_object_arrays_refused_and_pickle_never_used(tiny, tmp_path, monkeypatch):
    bad = {**tiny.arrays, "obj": np.array([{"a": 1}] * len(tiny.samples), dtype=object)}
    with pytest.raises(PublishError, match="'obj' has dtype object"):
        publish_instance(dataclasses.replace(tiny, arrays=bad), tmp_path / "bad")

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle used")
    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, no_pickle)
    folder = publish_instance(tiny, tmp_path / "pub")
    assert pull_instance(folder, tmp_path / "cache").data_hash == tiny.data_hash


def test_corrupt_installed_copy_is_pulled_again(published, tmp_path):
    first = pull_instance(published, tmp_path)
    npz = first.root / "instance.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    assert find_instances("tiny", tmp_path) == []
    again = pull_instance(published, tmp_path)
    assert again.root == first.root and sha256_file(npz) == again.meta["files"]["instance.npz"]
    assert len(find_instances("tiny", tmp_path)) == 1


def test_publishing_twice_gives_the_same_bytes(tiny, published, tmp_path):
    again = publish_instance(tiny, tmp_path / "again")
    files = json.loads((published / "instance.json").read_text())["files"]
    assert files == json.loads((again / "instance.json").read_text())["files"]


def test_cli_publish_and_pull(tmp_path, capsys):
    for cmd in ("publish", "pull"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0 and "instance" in capsys.readouterr().out
    out = tmp_path / "pub"
    assert main(["publish", str(DATA / "tiny.toml"), str(out), "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["published"] == str(out) and info["bytes"] > 0
    assert main(["publish", str(DATA / "tiny.toml"), str(out), "-q"]) == 2  # not empty
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert main(["pull", str(out), "--cache", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out)["data_hash"] == info["data_hash"]
    assert main(["pull", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmh-bench: error: ") and "no such folder" in err and err.count("\n") == 1
    (out / "spec.toml").write_text((out / "spec.toml").read_text() + "\n")
    assert main(["pull", str(out), "--cache", str(tmp_path / "c2")]) == 2
    assert "spec.toml: checksum mismatch" in capsys.readouterr().err


def test_hub_ids_go_to_snapshot_download(published, tmp_path, monkeypatch):
    import huggingface_hub
    calls = []

    def fake_download(**kwargs):  # no network in tests: stands in for the Hub
        calls.append(kwargs)
        return str(published)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    inst = pull_instance("owner/mmh-tiny@0123abc", tmp_path)
    assert calls == [{"repo_id": "owner/mmh-tiny", "repo_type": "dataset", "revision": "0123abc"}]
    assert inst.meta["pulled_from"] == "owner/mmh-tiny@0123abc"


def test_ct_recomputes_from_the_published_arrays(tiny_spec, tmp_path):
    """The board's C_T (a test instance's included) follows from the published arrays alone: its
    k-means cells are seeded from the published training and held-out rows, not the secret seed."""
    from mmh_bench.common.ct_statistic import instance_ct
    from mmh_bench.task.instances import InstanceKey
    inst = build_task(tiny_spec, tmp_path / "cache", progress=False,
                      instance=InstanceKey("test", secret="ct-recompute-secret-0123"))
    folder = publish_instance(inst, tmp_path / "pub")
    body, _, arrays = verify_published(folder)
    stored = body["meta"]["copying"]
    assert np.isfinite(stored["ct"])
    assert instance_ct(arrays).as_dict() == {k: stored[k] for k in ("ct", "n_cells", "n_cells_used")}


def test_restamped_ct_reaches_the_record_the_results_and_the_installed_copy(published, tmp_path):
    """An instance published with a C_T nobody could recompute (cells seeded from a secret) gets the
    one its published arrays give; its results follow, and an installed copy is installed again."""
    import sys
    from mmh_bench.common.ct_statistic import instance_ct
    from mmh_bench.task.publish import _seal, _unseal, restamp_copying
    folder = Path(shutil.copytree(published, tmp_path / "pub"))
    body = _unseal(folder / "instance.json")
    right = body["meta"]["copying"]
    body["meta"]["copying"] = {**right, "ct": right["ct"] + 0.25}  # as if seeded from a secret
    (folder / "instance.json").write_text(_seal(body))
    stale = pull_instance(folder, tmp_path / "cache")
    assert stale.task_stats()["data_copying_ct"] == right["ct"] + 0.25
    results = tmp_path / "results" / "tiny" / "v1" / f"test-{body['data_hash'][:12]}"
    results.mkdir(parents=True)
    doc = evaluate_pair(stale, make_detector("random"))
    (results / "random.json").write_text(doc.model_dump_json(by_alias=True))
    old, new = restamp_copying(folder)
    _, _, arrays = verify_published(folder)  # still a valid, sealed record
    assert old["ct"] == right["ct"] + 0.25 and new["ct"] == instance_ct(arrays).as_dict()["ct"] == right["ct"]
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from restamp_ct import restamp_results
    assert restamp_results(tmp_path / "results", "tiny", body["data_hash"], new) == 1
    assert json.loads((results / "random.json").read_text())["task_stats"]["data_copying_ct"] == right["ct"]
    again = pull_instance(folder, tmp_path / "cache")
    assert again.root == stale.root and again.task_stats()["data_copying_ct"] == right["ct"]


def test_every_board_instance_c_t_recomputes_from_its_published_arrays():
    """What the board prints as C_T is what anyone gets from the published instance (one replicate
    per task; benchmarks/restamp_ct.py keeps older instances so)."""
    from mmh_bench.common.ct_statistic import instance_ct
    root = Path(__file__).parents[1] / "leaderboard" / "instances"
    checked = 0
    for task in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        folder = sorted(p for p in task.iterdir() if (p / "instance.json").is_file())[0]
        body, _, arrays = verify_published(folder)
        stored = body["meta"].get("copying")
        if stored is None:
            continue
        assert instance_ct(arrays).as_dict() == {k: stored[k] for k in ("ct", "n_cells", "n_cells_used")}, folder
        checked += 1
    if not checked:
        pytest.skip("no board instances in this checkout")
