import json

import numpy as np

from mmh_bench.task.build import BuildError, build_task, check_balance
from mmh_bench.files import load_arrays
from mmh_bench.task.spec import parse_spec

import pytest


def test_same_spec_same_arrays(tiny_spec, tiny, tmp_path):
    again = build_task(tiny_spec, tmp_path / "other-cache", progress=False)
    assert again.data_hash == tiny.data_hash
    for key in tiny.arrays:
        np.testing.assert_array_equal(again.arrays[key], tiny.arrays[key])


def test_corrupt_cache_is_detected_and_rebuilt(tiny_spec, tmp_path):
    cache = tmp_path / "cache"
    first = build_task(tiny_spec, cache, progress=False)
    npz = first.root / "instance.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncate
    second = build_task(tiny_spec, cache, progress=False)
    assert second.data_hash == first.data_hash
    assert load_arrays(second.root / "instance.npz")["samples"].shape == first.samples.shape
    (second.root / "meta.json").write_text("{not json")
    third = build_task(tiny_spec, cache, progress=False)
    assert third.data_hash == first.data_hash


def test_spec_hash_changes_with_any_field(tiny_spec):
    raw = dict(tiny_spec.raw, seed=tiny_spec.seed + 1)
    assert parse_spec(raw).hash != tiny_spec.hash


def test_balance_is_enforced(tiny_spec):
    raw = dict(tiny_spec.raw, balance={"min_memorized": 0.2, "max_memorized": 0.6,
                                       "require_subtypes": ["DD", "OD"]})
    spec = parse_spec(raw)
    arrays = {"labels": np.zeros(10, dtype=np.int8), "subtype": np.zeros(10, dtype=np.int8)}
    with pytest.raises(BuildError, match="memorized fraction 0.000"):
        check_balance(spec, arrays)


def test_a_build_that_fails_its_label_checks_keeps_its_samples_and_model(tiny_spec, tmp_path):
    """A long training run that misses the spec's balance is not thrown away: its folder moves to
    failed-<name> beside the builds, with the samples, the labels it got, the model and the reason."""
    from mmh_bench.files import load_arrays
    from mmh_bench.task.build import FAILED_PREFIX, LabelCheckError, build_task
    spec = parse_spec(dict(tiny_spec.raw, balance={"min_memorized": 0.99, "max_memorized": 1.0}))
    with pytest.raises(LabelCheckError, match="memorized fraction") as info:
        build_task(spec, tmp_path, progress=False)
    kept = info.value.kept
    assert kept is not None and kept.name.startswith(FAILED_PREFIX) and kept.parent == tmp_path / "tiny"
    arrays = load_arrays(kept / "instance.npz")
    assert len(arrays["samples"]) == 300 and arrays["labels"].shape == (300,) and 0 < arrays["labels"].mean() < 0.99
    assert "memorized fraction" in json.loads((kept / "failed.json").read_text())["error"]
    assert any(kept.rglob("*.safetensors")) or (kept / "model").exists()
    assert [p.name for p in (tmp_path / "tiny").iterdir() if not p.name.startswith(FAILED_PREFIX)] == []


def test_labels_are_auditable(tiny):
    a = tiny.arrays
    mem = a["labels"].astype(bool)
    assert np.all(a["d1"][mem] / a["d2"][mem] < 1 / 3)
    assert np.all(a["d1"][mem] < 0.4)
    assert np.all((a["subtype"] > 0) == mem)


def test_heldout_set_and_ct_are_built(tiny, tiny_spec):
    """Held-out rows are fresh draws of the continuous part (the circle), none of them a training
    row, and C_T over them is recorded in the meta and handed to every result."""
    held, train = tiny.arrays["heldout"], tiny.arrays["train"]
    assert held.shape == (150, 2)  # as many as the circle's training rows; the point mass is left out
    on_circle = np.abs(np.linalg.norm(train, axis=1) - 1.0) < 1e-5
    assert on_circle.sum() == 150  # (the point mass sits at the origin)
    np.testing.assert_allclose(np.linalg.norm(held, axis=1), 1.0, atol=1e-5)
    assert not (held[:, None, :] == train[None, :, :]).all(-1).any()
    stats = tiny.task_stats()
    assert stats["n_heldout"] == 150 and np.isfinite(stats["data_copying_ct"])
    assert stats["data_copying_ct"] == tiny.meta["copying"]["ct"]


def test_a_cache_of_an_older_format_is_rebuilt(tiny_spec, tmp_path):
    import json
    from mmh_bench.task.build import BUILD_FORMAT
    first = build_task(tiny_spec, tmp_path, progress=False)
    meta = json.loads((first.root / "meta.json").read_text())
    meta["build_format"] = BUILD_FORMAT - 1
    (first.root / "meta.json").write_text(json.dumps(meta))
    again = build_task(tiny_spec, tmp_path, progress=False)
    assert again.meta["build_format"] == BUILD_FORMAT and again.data_hash == first.data_hash


def test_a_cache_whose_meta_has_a_wrong_type_is_rebuilt(tiny_spec, tmp_path):
    """meta.json is read through its typed model: a field of the wrong type is a corrupt build."""
    first = build_task(tiny_spec, tmp_path, progress=False)
    assert first.build_meta.dedup_tol == first.meta["dedup_tol"]
    meta = json.loads((first.root / "meta.json").read_text())
    meta["dedup_tol"] = "wide"
    (first.root / "meta.json").write_text(json.dumps(meta))
    again = build_task(tiny_spec, tmp_path, progress=False)
    assert again.meta["dedup_tol"] == first.meta["dedup_tol"] and again.data_hash == first.data_hash


def test_build_meta_defaults_are_declared_once():
    from mmh_bench.task.build_meta import read_meta
    bare = read_meta({"data_hash": "0" * 64, "caption_kinds": {"novel": 2}})
    assert (bare.instance_kind, bare.instance_replicate, bare.dedup_tol, bare.model) == ("dev", None, 0.0, None)
    assert bare.model_extra == {"caption_kinds": {"novel": 2}}  # a family's own entries pass through
    with pytest.raises(ValueError, match="instance_kind"):
        read_meta({"data_hash": "0" * 64, "instance_kind": "secret"})
