"""Detector parameters from a reference string: what `mmh-bench run --detectors` accepts."""
from __future__ import annotations

import json

import pytest

from mmh_bench.cli.main import main
from mmh_bench.registry import RegistryError, make_detector, parse_ref, resolve_detectors, split_refs


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


def test_cli_records_the_parameters_and_exits_2_on_unknown_ones(tmp_path, capsys):
    spec = str(__import__("pathlib").Path(__file__).parent / "data" / "tiny_cond.toml")
    args = ["run", "--tasks", spec, "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "-q"]
    assert main(args + ["--detectors", "cfg-norm-posthoc(steps=5)"]) == 2
    err = capsys.readouterr().err
    assert "no parameter 'steps'" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--detectors", "cfg-norm-posthoc(n_steps=1)"]) == 0
    (path,) = (tmp_path / "res").rglob("cfg-norm-posthoc.json")
    assert json.loads(path.read_text())["detector_params"]["n_steps"] == 1
