"""Dev and test instances: secret placement, no seed on disk, shortcuts that fail on test, exact reference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmh_bench.task.build import build_task
from mmh_bench.task.instances import InstanceError, InstanceKey, derived_seed
from mmh_bench.registry import make_detector
from mmh_bench.evaluation.runner import evaluate_pair
from mmh_bench.task.spec import load_spec

DATA = Path(__file__).parent / "data"
SECRET = "correct horse battery staple 42"


@pytest.fixture(autouse=True)
def _tiny_tasks_registered(monkeypatch):
    """Shortcuts read the public spec by task name, as they would for a shipped task."""
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(DATA))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    spec = load_spec(DATA / "tiny.toml")
    cache = tmp_path_factory.mktemp("inst")
    return (build_task(spec, cache, progress=False),
            build_task(spec, cache, instance=InstanceKey("test", secret=SECRET), progress=False), cache)


def _auroc(inst, name):
    res = evaluate_pair(inst, make_detector(name), isolation="in-process")
    assert res.status == "ok", res.error
    return res.metrics


def test_test_instance_is_placed_by_its_secret_and_keeps_no_seed(pair):
    dev, test, cache = pair
    assert dev.instance_kind == "dev" and test.instance_kind == "test"
    assert test.data_hash != dev.data_hash and test.instance_info()["id"].startswith("test-")
    assert test.spec.hash == dev.spec.hash  # the same public spec
    # the point mass moved: the spec's [0, 0] is not where the test instance's duplicates sit
    dup = test.arrays["train"][test.arrays["train_component"] == 1]
    assert np.linalg.norm(dup[0]) > 0.3 and np.allclose(dup, dup[0])
    seed = str(derived_seed(test.spec, SECRET))
    for path in test.root.rglob("*"):
        assert SECRET not in path.name and seed not in path.name
        if path.is_file():
            blob = path.read_bytes()
            assert SECRET.encode() not in blob and seed.encode() not in blob, path
    assert "seed" not in test.meta and "secret" not in str(test.meta)
    # same secret, same instance; another secret, another instance
    again = build_task(test.spec, cache, instance=InstanceKey("test", secret=SECRET), progress=False)
    assert again.data_hash == test.data_hash


def test_replicates_of_one_secret_are_distinct_instances_that_publish_and_run_together(pair, tmp_path):
    """Replicate r > 0 of a secret is another placement and training seed; the runner evaluates
    every published replicate of a spec, and each result names its replicate."""
    from mmh_bench.task.publish import publish_instance, resolve_instances
    from mmh_bench.evaluation.runner import evaluate
    dev, test, cache = pair
    second = build_task(dev.spec, cache, instance=InstanceKey("test", secret=SECRET, replicate=1), progress=False)
    assert second.data_hash not in (dev.data_hash, test.data_hash)
    assert derived_seed(dev.spec, InstanceKey("test", secret=SECRET, replicate=1).salted()) != derived_seed(dev.spec, SECRET)
    assert test.instance_info()["replicate"] == 0 and second.instance_info()["replicate"] == 1
    assert "replicate" not in dev.instance_info()
    published = tmp_path / "published"
    for inst in (test, second):
        publish_instance(inst, published / dev.spec.name / inst.instance_info()["id"])
    found = resolve_instances(dev.spec, tmp_path / "pulled", published=published, progress=False)
    assert sorted(i.data_hash for i in found) == sorted([test.data_hash, second.data_hash])
    rep = evaluate([dev.spec], ["random"], tmp_path / "results", cache_dir=tmp_path / "pulled",
                   instances=published, progress=False)
    import json
    got = sorted(json.loads(p.read_text())["instance"]["replicate"] for p in rep.ran)
    assert got == [0, 1]
    with pytest.raises(InstanceError, match="replicate"):
        InstanceKey("dev", replicate=1)


def test_instance_keys_refuse_weak_or_mixed_requests():
    with pytest.raises(InstanceError, match="at least 16"):
        InstanceKey("test", secret="short")
    with pytest.raises(InstanceError, match="no secret"):
        InstanceKey("dev", secret=SECRET)
    with pytest.raises(InstanceError, match="kind"):
        InstanceKey("prod")
    assert SECRET not in repr(InstanceKey("test", secret=SECRET))


def test_rows_are_shuffled_so_order_carries_no_label(pair):
    dev, _, _ = pair
    y = dev.labels.astype(bool)
    first = np.flatnonzero(y)
    assert 0 < len(first) < len(y) and not np.all(np.diff(first) == 1)
    res = evaluate_pair(dev, make_detector("random"), isolation="in-process")
    assert res.status == "ok"


def test_copy_rule_reference_is_exact_on_dev_test_and_images(pair, tmp_path):
    dev, test, _ = pair
    image = build_task(load_spec(DATA / "tiny_image.toml"), tmp_path, progress=False)
    for inst in (dev, test, image):
        assert _auroc(inst, "copy-rule").auroc == 1.0, inst.spec.name
    # the sealed worker receives the rule with the training set it grants
    res = evaluate_pair(test, make_detector("copy-rule"), isolation="sealed")
    assert res.status == "ok" and res.metrics.auroc == 1.0, res.error


def test_placement_ranks_the_designed_sources_at_chance_from_the_origin():
    """The shift's length is chosen on the training set: after it, the distance to the origin (and
    so to any far reference point) does not tell the designed sources from the other rows."""
    import dataclasses
    from sklearn.metrics import roc_auc_score
    from mmh_bench.task.builders.synthetic import draw_placement
    from mmh_bench.task.data.synthetic import designed_sources, make_mixture
    spec = load_spec(DATA / "tiny.toml")
    data = spec.model.data
    mix = make_mixture(data, spec.seed)
    src = designed_sources(data, mix.component)
    assert src.sum() == 50 and roc_auc_score(src, -np.linalg.norm(mix.x, axis=1)) == 1.0  # dev: the origin wins
    for k in range(5):
        test = dataclasses.replace(spec, seed=derived_seed(spec, f"{SECRET} {k}"), instance="test")
        placed = draw_placement(test, data, mix.x, src)(mix.x)
        # a point at a circle's centre needs the far field for exact chance; the grid stops at 3
        # radii (the models' sake), where the centre is nearer than the circle by 1 / (2 * distance)
        assert abs(roc_auc_score(src, -np.linalg.norm(placed, axis=1)) - 0.5) < 0.08
        assert np.linalg.norm(placed[src][0]) > 1.0  # the point mass left the origin


def test_shortcuts_win_on_dev_and_fall_to_chance_on_unseen_test_instances(pair, tmp_path):
    """A shortcut from the public spec is a fixed function of position: on one placement its AUROC
    is one random draw, so the check is over several unseen secrets (the board shows the same as
    mean and spread over its replicates): strong on dev, centred on chance over test instances."""
    dev, _, _ = pair
    for name in ("shortcut-sources", "shortcut-origin"):
        assert _auroc(dev, name).auroc > 0.8, name
    spec = dev.spec
    got = {"shortcut-sources": [], "shortcut-origin": []}
    for k in range(5):
        test = build_task(spec, tmp_path, instance=InstanceKey("test", secret=f"an unseen secret, number {k}"),
                          progress=False)
        for name, vals in got.items():
            vals.append(_auroc(test, name).auroc)
    for name, vals in got.items():
        assert abs(np.mean(vals) - 0.5) < 0.12 and max(vals) < 0.75, (name, vals)


def test_condition_ids_are_remapped_and_the_condition_shortcut_needs_the_dev_instance(tmp_path):
    spec = load_spec(DATA / "tiny_cond.toml")
    dev = build_task(spec, tmp_path, progress=False)
    test = build_task(spec, tmp_path, instance=InstanceKey("test", secret=SECRET), progress=False)
    comp, cond = dev.arrays["train_component"], dev.arrays["train_cond"]
    # ids are not numbered in component order: the sphere (component 0) need not hold id 0
    ids_by_component = [sorted(set(cond[comp == k].tolist())) for k in range(3)]
    assert sorted(sum(ids_by_component, [])) == list(range(dev.meta["n_classes"]))
    dev_ids, test_ids = (set(i.arrays["train_cond"][i.arrays["train_component"] == 1].tolist()) for i in (dev, test))
    assert dev_ids != test_ids or dev.data_hash != test.data_hash
    assert _auroc(dev, "shortcut-condition").auroc > 0.5


def test_test_condition_ids_carry_nothing_of_the_dev_classes_over_many_secrets(tmp_path):
    """With K classes a relabelling by permutation keeps a class's dev id one time in K, so a lookup
    of the dev instance's memorized ids (shortcut-condition) scored 0.95 on one replicate. A test
    instance's ids are drawn from a space far larger than K, above every dev id: over many secrets
    no test id is ever a dev id (the lookup scores every sample alike: AUROC exactly 0.5), and the
    ids' order, their only trace of the classes, follows the remapping's fresh permutation, which
    averages chance."""
    from sklearn.metrics import roc_auc_score
    from types import SimpleNamespace
    from mmh_bench.task.builders.synthetic import condition_ids, remap_conditions
    from mmh_bench.task.instances import instance_spec
    spec = load_spec(DATA / "tiny_cond.toml")
    dev = build_task(spec, tmp_path, progress=False)
    test = build_task(spec, tmp_path, instance=InstanceKey("test", secret=SECRET), progress=False)
    k = dev.meta["n_classes"]
    source = dev.arrays["train_component"] != 0  # duplicated points and the handful: memorization sources
    dev_memorized = set(dev.arrays["train_cond"][source].tolist()) - set(dev.arrays["train_cond"][~source].tolist())
    assert dev_memorized and _auroc(dev, "shortcut-condition").auroc > 0.5
    # the built test instance: every id new, the model maps them, the lookup scores a constant
    test_ids = set(test.arrays["train_cond"].tolist())
    assert len(test_ids) == k and test_ids.isdisjoint(range(k)) and set(test.cond.tolist()) <= test_ids
    assert sorted(test.score_model().net.config["class_ids"]) == sorted(test_ids)
    assert _auroc(test, "shortcut-condition").auroc == 0.5
    # over many secrets: disjoint values, and a rank rule read off the dev ids averages chance
    dev_rank = {int(c): r for r, c in enumerate(sorted(set(dev.arrays["train_cond"].tolist())))}
    y = source.astype(int)
    draws = []
    for n in range(300):
        placed = instance_spec(spec, InstanceKey("test", secret=f"another unseen secret {n:04d}"))
        ids = condition_ids(placed, k)
        assert len(set(ids.tolist())) == k and not set(ids.tolist()) & set(range(2 ** 16))
        mix = SimpleNamespace(cond=dev.arrays["train_component"].copy(), n_classes=k)
        remap_conditions(mix, placed.seed)  # the test build's own relabelling of the same rows
        rank_rule = np.isin(np.argsort(np.argsort(ids))[mix.cond],
                            [dev_rank[c] for c in dev_memorized]).astype(float)
        draws.append(roc_auc_score(y, rank_rule))
    se = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - 0.5) < 3 * se + 0.01, (np.mean(draws), se)


def test_cli_builds_a_test_instance_from_a_secret_in_the_environment(tmp_path, monkeypatch, capsys):
    import json

    from mmh_bench.cli.main import main
    monkeypatch.setenv("MY_SECRET", SECRET)
    assert main(["build", str(DATA / "tiny.toml"), "--cache", str(tmp_path), "--test-secret-env", "MY_SECRET",
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["instance"]["kind"] == "test" and SECRET not in out
    monkeypatch.setenv("EMPTY", "")
    assert main(["build", str(DATA / "tiny.toml"), "--cache", str(tmp_path), "--test-secret-env", "EMPTY",
                 "-q"]) == 2
