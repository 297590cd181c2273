"""Detector parameters from a reference string: what `mmh-bench run --detectors` accepts."""
from __future__ import annotations

import json

import pytest

from mmh_bench.cli.main import main
from mmh_bench.evaluation.detection import result_name
from mmh_bench.registry import RegistryError, format_ref, make_detector, parse_ref, resolve_detectors, split_refs


def test_split_keeps_commas_inside_parameters():
    assert split_refs("random, flipd(t0=0.05, probes=8),cfg-norm") == [
        "random", "flipd(t0=0.05, probes=8)", "cfg-norm"]
    assert split_refs('x(a=[1, 2], b="p,q"),y') == ['x(a=[1, 2], b="p,q")', "y"]


def test_values_are_toml_literals_null_or_bare_words():
    name, params = parse_ref('flipd(t0=0.05, probes=8, exact_max_dim=1e3, t_min="0.002")')
    assert name == "flipd" and params == {"t0": 0.05, "probes": 8, "exact_max_dim": 1000.0, "t_min": "0.002"}
    assert parse_ref("flipd(t0=knee)")[1] == {"t0": "knee"}
    assert parse_ref("attention-entropy-posthoc(layer=null)")[1] == {"layer": None}
    assert parse_ref("x(a=true, b=[1, 2])")[1] == {"a": True, "b": [1, 2]}
    assert parse_ref("random") == ("random", {})
    for bad in ("x(a)", "x(a=1, a=2)", "x(a=1 2)", "x)"):
        with pytest.raises(RegistryError):
            parse_ref(bad)


def test_parameters_reach_the_constructor_and_unknown_ones_are_refused():
    det = make_detector("flipd(t0=0.05, probes=4)")
    assert det.t0 == 0.05 and det.probes == 4
    det = make_detector("attention-entropy-posthoc(layer=3, n_steps=1, schedule_steps=50, t_start=0.982)")
    assert det.layer == 3 and det.times() == pytest.approx([0.982])
    dets = resolve_detectors("random,cfg-norm-posthoc(n_steps=5)")
    assert [d.name for d in dets] == ["random", "cfg-norm-posthoc"] and dets[1].n_steps == 5
    with pytest.raises(RegistryError, match=r"no parameter 'steps'; it takes: n_steps, schedule_steps, t_start"):
        make_detector("cfg-norm-posthoc(steps=5)")


def test_a_result_is_named_by_its_non_default_parameters_in_reference_syntax():
    assert result_name(make_detector("cfg-norm")) == result_name(make_detector("cfg-norm(n_steps=1)")) == "cfg-norm"
    assert result_name(make_detector("attention-entropy(layer=3)")) == "attention-entropy"  # Ren's layer: the default
    assert result_name(make_detector("cfg-norm(n_steps=50, generations=4)")) == "cfg-norm(generations=4,n_steps=50)"
    assert result_name(make_detector("attention-entropy(layer=null)")) == "attention-entropy(layer=null)"
    assert result_name(make_detector("one-step-dcs(start=ddim, n_steps=5)")) == "one-step-dcs(n_steps=5,start=ddim)"
    # a value with a path, or a name past the schema's limit, is named by its parameters' digest
    from mmh_bench.evaluation.detection import MAX_RESULT_NAME
    long = make_detector("one-step-dcs(start=ddim, n_steps=" + "1" * 80 + ")")
    path = make_detector("flipd(t0=0.05)")
    path.t0 = "/tmp/x"  # type: ignore[attr-defined]
    for det in (long, path):
        got = result_name(det)
        assert got.startswith(det.name + "~") and len(got) <= MAX_RESULT_NAME and "/" not in got
    assert result_name(long) != result_name(make_detector("one-step-dcs(start=ddim, n_steps=" + "2" * 80 + ")"))
    for name, params in [("x", {}), ("x", {"a": 0.05, "b": "knee", "c": None, "d": True, "e": [1, 2], "f": "a b"}),
                         ("x", {"s": "true"}), ("x", {"s": "1"})]:
        assert parse_ref(format_ref(name, params)) == (name, params)


def test_cli_records_the_parameters_and_exits_2_on_unknown_ones(tmp_path, capsys):
    spec = str(__import__("pathlib").Path(__file__).parent / "data" / "tiny_cond.toml")
    args = ["run", "--tasks", spec, "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "-q"]
    assert main(args + ["--detectors", "cfg-norm-posthoc(steps=5)"]) == 2
    err = capsys.readouterr().err
    assert "no parameter 'steps'" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--detectors", "cfg-norm-posthoc(n_steps=1),cfg-norm-posthoc"]) == 0
    # two configurations of one detector: two results side by side, each named as it runs again
    (path,) = (tmp_path / "res").rglob("cfg-norm-posthoc(n_steps=1).json")
    doc = json.loads(path.read_text())
    assert doc["detector"] == "cfg-norm-posthoc(n_steps=1)" and doc["detector_params"]["n_steps"] == 1
    (plain,) = (tmp_path / "res").rglob("cfg-norm-posthoc.json")
    assert json.loads(plain.read_text())["detector_params"]["n_steps"] == 3
    capsys.readouterr()
    assert main(args + ["--detectors", doc["detector"]]) == 0 and "1 already current" in capsys.readouterr().out
    assert main(args + ["--detectors", "cfg-norm-posthoc(n_steps=1),cfg-norm-posthoc(n_steps=1.0)"]) == 2
