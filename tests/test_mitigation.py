"""The mitigation track on a known answer: a condition whose model collapses onto one training point.

``tests/data/collapse_cond.toml``: the collapsed condition's generations are copies of its point
(DD-Mem by construction); two broad conditions generalize. The MMH paper's FLIPD-raising and Wen
et al.'s CFG-norm mitigators must cut that condition's copy rate while the samples stay on the
data manifold (precision) and keep to their conditions (condition accuracy); "none" must give the
task's own samples bit for bit; a broken mitigator fails alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmh_bench import Batch, Context
from mmh_bench.cli.main import main
from mmh_bench.mitigation import Mitigator, mitigate
from mmh_bench.mitigation.board import collect, render_html, render_markdown
from mmh_bench.mitigation.evaluate import MitigationTrack, label_generations, run_mitigator
from mmh_bench.mitigation.result import read_mitigation_result
from mmh_bench.registry import all_mitigators, make_mitigator

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def _collapsed_condition(inst) -> int:
    """The condition whose unmitigated generations are (nearly) all copies."""
    rates = {int(c): inst.labels[inst.cond == c].mean() for c in np.unique(inst.cond)}
    c = max(rates, key=rates.get)
    assert rates[c] > 0.9 and sorted(rates.values())[-2] < 0.05, rates
    return c


def test_none_reproduces_the_task_bit_for_bit(collapse):
    samples, cost = run_mitigator(make_mitigator("none"), collapse)
    np.testing.assert_array_equal(samples, collapse.samples)
    assert cost["nfe_per_sample"] > 0


@pytest.mark.parametrize("ref", ["flipd-embedding", "cfg-norm-embedding(at=0.5)"])
def test_mmh_and_wen_mitigators_cut_the_collapsed_conditions_copies(collapse, ref):
    c = _collapsed_condition(collapse)
    base_samples, _ = run_mitigator(make_mitigator("none"), collapse)
    samples, _ = run_mitigator(make_mitigator(ref), collapse)
    lab = label_generations(collapse, samples)["memorized"]
    assert lab[collapse.cond == c].mean() < 0.3  # from above 0.9
    from mmh_bench.mitigation.quality import condition_accuracy, precision_recall
    held = collapse.arrays["heldout"]
    p0, _ = precision_recall(held, base_samples)
    p1, _ = precision_recall(held, samples)
    assert p1 >= 0.85 * p0  # still on the data manifold
    others = collapse.cond != c
    acc = condition_accuracy(collapse.arrays["train"], collapse.arrays["train_cond"], samples[others],
                             collapse.cond[others])
    assert acc > 0.75  # the broad conditions still get what they ask for


class Raises(Mitigator):
    name = "raises"

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        raise RuntimeError("boom")


class WrongShape(Mitigator):
    name = "wrong-shape"

    def generate(self, batch: Batch, ctx: Context) -> np.ndarray:
        return np.zeros((len(batch), 3))


def test_a_broken_mitigator_fails_alone_and_results_resume(collapse, tmp_path, capsys):
    rep = mitigate([collapse], [Raises(), WrongShape(), make_mitigator("guidance")], tmp_path, sweep=True,
                   progress=False, isolation="in-process")  # sealed ones: test_mitigation_sealed.py
    assert len(rep.failed) == 2 and len(rep.ran) == 4  # guidance at its four settings
    errors = {read_mitigation_result(p).mitigator: read_mitigation_result(p).error for p in rep.failed}
    assert "boom" in errors["raises"] and "shape [512, 3]" in errors["wrong-shape"]
    again = mitigate((i for i in [collapse]), [make_mitigator("guidance")], tmp_path, progress=False)
    assert not again.ran and len(again.skipped_current) == 4  # instances may come as a one-pass iterable
    groups, rejected = collect(tmp_path)
    assert not rejected and len(next(iter(groups.values()))) == 6
    text = render_markdown(tmp_path, plots_dir=tmp_path / "plots")
    assert "guidance" in text and "failed" in text and list((tmp_path / "plots").glob("*.png"))
    assert "<script>" not in render_html(tmp_path)


def test_registry_sweeps_and_applicability(collapse):
    names = set(all_mitigators())
    assert {"none", "guidance", "cfg-norm-embedding", "flipd-embedding", "initial-noise", "condition-noise",
            "random-tokens", "attention-rescale"} <= names
    for name, cls in all_mitigators().items():
        settings = cls().settings()
        assert len(settings) == (len(cls.sweep[1]) if cls.sweep[0] else 1), name
    assert MitigationTrack().why_not(make_mitigator("attention-rescale"), collapse) == "model lacks attention_rescale"
    assert MitigationTrack().why_not(make_mitigator("random-tokens"), collapse) == "model lacks cross_attention"
    assert MitigationTrack().why_not(make_mitigator("flipd-embedding"), collapse) is None


def test_third_party_mitigator_from_a_file_and_the_cli(collapse, tmp_path, capsys):
    src = tmp_path / "mine.py"
    src.write_text("from mmh_bench.mitigation import Mitigator\n\n"
                   "class Half(Mitigator):\n    name = 'half-guidance'\n\n"
                   "    def generate(self, batch, ctx):\n"
                   "        return ctx.generation.generate(batch, guidance=0.5 * ctx.generation.sampler.guidance)\n")
    assert main(["mitigators", "--json"]) == 0
    listed = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert "flipd-embedding" in listed
    args = ["mitigate", "--tasks", str(DATA / "collapse_cond.toml"), "--mitigators", f"none,{src}:Half",
            "--instances", "none", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "out"),
            "--cache", str(collapse.root.parent.parent), "--samples", "0", "-q"]
    assert main(args) == 0
    assert (tmp_path / "out" / "MITIGATION.md").is_file()
    docs = [read_mitigation_result(p) for p in (tmp_path / "res").rglob("*.json")]
    assert {d.mitigator for d in docs} == {"none", "half-guidance"}
    half = next(d for d in docs if d.mitigator == "half-guidance")
    assert half.isolation in ("sandbox", "process")  # a file mitigator runs sealed by default
    none = next(d for d in docs if d.mitigator == "none")
    assert none.isolation == "in-process"  # a shipped baseline is trusted
    assert none.metrics.unchanged_share == 1.0
    assert none.metrics.memorization.rate == pytest.approx(float(collapse.labels.mean()), abs=1e-6)
    # without --out the board follows the results folder: a user's run never touches leaderboard/
    assert main(args[:args.index("--out")] + args[args.index("--out") + 2:]) == 0
    assert (tmp_path / "res" / "MITIGATION.md").is_file() and (tmp_path / "res" / "plots").is_dir()


def test_mitigation_board_orders_settings_by_value_prints_uniform_decimals_and_drops_orphan_plots(tmp_path):
    import re
    import shutil
    from mmh_bench.mitigation.board import render_markdown
    res = tmp_path / "res"
    shutil.copytree(ROOT / "leaderboard" / "mitigation-results", res)
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "mitigation-gone-test-000000000000.png").write_bytes(b"stale")
    text = render_markdown(res, plots_dir=plots)
    assert not (plots / "mitigation-gone-test-000000000000.png").exists()
    assert sorted(p.name for p in plots.iterdir()) == sorted(set(re.findall(r"plots/(mitigation-[^)]+\.png)", text)))
    table = text.split("### image-digits-cond")[1].split("###")[0]
    iters = [int(m) for m in re.findall(r"\| initial-noise +\| iters=(\d+)", table)]
    assert iters == sorted(iters) and len(iters) > 2
    sigmas = re.findall(r"\| condition-noise +\| sigma=([0-9.]+)", table)
    assert len({len(v.split(".")[1]) for v in sigmas}) == 1  # one number of decimals per sweep
    precision = [line.split("|")[5].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert precision and all(re.fullmatch(r"\d\.\d{3}", v) for v in precision), precision
