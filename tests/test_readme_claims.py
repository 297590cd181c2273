"""Every number the top-level README states about the board is the board's.

Each claim below rebuilds its sentence fragment from the collected board (the committed results)
and asserts that the README says exactly that; a result that changes a number, or a README edit
that drifts from the board, fails here. Numbers measured outside the board (the fidelity study's
ablations, the LID benchmark's replicates) are checked against the document that measured them.
"""
from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import pytest

from mmh_bench.leaderboard.board import Board, collect_board, overview
from mmh_bench.leaderboard.board.columns import rank_column
from mmh_bench.leaderboard.board.fidelity import fidelity
from mmh_bench.leaderboard.board.gap import gap_rows
from mmh_bench.leaderboard.schema import HeldOutGap
from mmh_bench.registry import all_tasks

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SECTION = README.split("## What the default suite measures")[1].split("\n## ")[0]
WORDS = {3: "three", 4: "four", 5: "five", 7: "seven", 10: "Ten", 11: "11"}
COND_SYN = ("syn2-cond", "syn10-cond", "syn100-cond")


def two(v: float) -> str:
    return f"{v:.2f}"


def span(values: list[float], nd: int = 2) -> str:
    """A range as the README prints it: low-high, at two decimals unless it says more."""
    return f"{min(values):.{nd}f}-{max(values):.{nd}f}"


class Facts:
    """The board's numbers the README quotes: the held-out overview, public beside held-out, fidelity."""

    def __init__(self, board: Board) -> None:
        self.board = board
        heads, rows = overview(board, "memorization")
        self.tasks = heads[2:-2]
        self.text = {(r[1], h): r[i] for r in rows for i, h in enumerate(heads) if 2 <= i < len(heads) - 2}
        self.group = {r[1]: r[0] for r in rows}
        self.instance_row = {h: rows[-1][i] for i, h in enumerate(heads)}
        sheads, srows = overview(board, "memorization", shortcut=True)
        self.shortcut = {(r[1], h): r[i] for r in srows if r[0] == "shortcut"
                         for i, h in enumerate(sheads) if 2 <= i < len(sheads) - 2}

    def held(self, det: str, task: str) -> str:
        return self.text[(det, task)]

    def held_value(self, det: str, task: str) -> float:
        """The overview's number at full precision (the mean over fresh replicates)."""
        return self.gap(det, task).heldout_mean

    def gap(self, det: str, task: str) -> HeldOutGap:
        t = next(t for (name, _), t in self.board.tasks.items() if name == task)
        return next(g.cmp for g in gap_rows(self.board, t) if g.detector == det)

    def values(self, dets: list[str], tasks: tuple[str, ...] | list[str]) -> list[float]:
        return [self.held_value(d, t) for d in dets for t in tasks if self.held(d, t) != "n/a"]

    @cached_property
    def all_gaps(self) -> list[tuple[str, str, HeldOutGap]]:
        return [(name, g.detector, g.cmp) for (name, _), t in sorted(self.board.tasks.items())
                for g in gap_rows(self.board, t)]


@pytest.fixture(scope="module")
def facts() -> Facts:
    board = collect_board(ROOT / "leaderboard" / "results")
    assert not board.rejected
    return Facts(board)


SAID: list[str] = []  # every fragment checked, for the coverage test at the end


def says(text: str, where: str = SECTION) -> None:
    SAID.append(text)
    flat = " ".join(where.split())
    assert " ".join(text.split()) in flat, f"README does not say: {text!r}"


def test_the_suite_and_its_instances(facts):
    suites = all_tasks()
    default_mem = sorted(n for n, s in suites.items() if "default" in s.suites and s.track == "memorization")
    default_lid = sorted(n for n, s in suites.items() if "default" in s.suites and s.track == "lid")
    listed = re.search(r"(\w+) memorization tasks \(([^)]*)\)", SECTION)
    assert listed.group(1) == WORDS[len(default_mem)]
    assert sorted(re.findall(r"`([^`]+)`", listed.group(2))) == default_mem == sorted(facts.tasks)
    says(f"and {WORDS[len(default_lid)]} LID-track tasks, measured on their dev instances")
    for (name, _), t in facts.board.tasks.items():
        if t.track == "lid":
            assert {i.kind for i in t.instances.values()} == {"dev"}, name
    synthetic = [t for t in facts.tasks if suites[t].family == "synthetic"]
    others = [t for t in facts.tasks if t not in synthetic]
    assert {facts.instance_row[t] for t in synthetic} == {"mean of 3 fresh"}
    assert all(facts.instance_row[t].startswith("fresh-") for t in others)
    says(f"the mean over three fresh instances on the {WORDS[len(synthetic)]} synthetic tasks, one fresh "
         f"instance on the {WORDS[len(others)]} image tasks")


def test_reference_and_model_side(facts):
    assert {facts.held("copy-rule", t) for t in facts.tasks} == {"1.000"}
    says("The reference `copy-rule` scores 1.000 on every task")
    says(f"`flipd-cond`) is {span(facts.values(['flipd-cond'], COND_SYN))} on the conditional synthetic tasks and "
         f"image-digits-cond ({facts.held('flipd-cond', 'image-digits-cond')})")
    model_side = [d for d, g in facts.group.items() if g == "model-side"]
    for task, nd, text in (("syn2-cond", 3, "on syn2-cond {names} score higher ({span} against {ref})"),
                           ("t2i-digits", 2, "on t2i-digits {count} model-side detectors ({span} against {ref})")):
        ref = facts.held_value("flipd-cond", task)
        above = [d for d in model_side if facts.held(d, task) != "n/a" and facts.held_value(d, task) > ref]
        names = ", ".join(f"`{d}`" for d in sorted(above, key=lambda d: -facts.held_value(d, task))[:-1])
        names += f" and `{sorted(above, key=lambda d: -facts.held_value(d, task))[-1]}`"
        says(text.format(names=names, count=WORDS[len(above)].lower(), span=span(facts.values(above, [task]), nd),
                         ref=facts.held("flipd-cond", task)))
    dd = ("mmh-toy", "syn10-dd", "syn100-dd", "syn2-cond", "image-digits")
    says(f"({span(facts.values(['flipd', 'normal-bundle'], dd))} on {', '.join(dd)})")
    g = facts.gap("normal-bundle", "syn100-cond")
    says(f"on syn100-cond `normal-bundle` swings between training runs ({g.public_mean:.3f} public, "
         f"{g.heldout_mean:.3f} held out; standard deviation {g.heldout_sd:.2f} across replicates)")


def test_generation_time(facts):
    says(f"`cfg-norm` {span(facts.values(['cfg-norm'], COND_SYN))} and `sharpness` "
         f"{span(facts.values(['sharpness'], COND_SYN))} on the conditional synthetic tasks, against their "
         f"post-hoc variants' {span(facts.values(['cfg-norm-posthoc'], COND_SYN))} and "
         f"{span(facts.values(['sharpness-posthoc'], COND_SYN))}")
    says(f"on t2i-digits both sit at chance ({facts.held('cfg-norm', 't2i-digits')}, "
         f"{facts.held('sharpness', 't2i-digits')}) while the post-hoc variants reach "
         f"{two(facts.held_value('cfg-norm-posthoc', 't2i-digits'))} and "
         f"{two(facts.held_value('sharpness-posthoc', 't2i-digits'))}")


def test_fidelity_to_stable_diffusion(facts):
    fid = fidelity(facts.board)

    def row(table: int, method: str, setting: str):
        return next(fr for fr in fid.rows if fr.table == table and fr.published.method.startswith(method)
                    and fr.published.setting == setting)
    sharp, cfg = row(1, "Jeon", "n = 1, steps 1"), row(1, "Wen", "n = 1, steps 1")
    says(f"`sharpness` {sharp.published.auroc:.3f} and `cfg-norm` {cfg.published.auroc:.3f} "
         "on SD v1.4 (n = 1, first step)")
    says(f"t2i-digits gives {sharp.cells[0].auroc:.3f} and {cfg.cells[0].auroc:.3f} "
         f"({sharp.cells[0].verbatim:.3f} and {cfg.cells[0].verbatim:.3f} on its verbatim copies)")
    v14, v20 = fid.agreements[0], fid.agreements[1]
    assert v14.n_rows == v20.n_rows
    says(f"Kendall's tau over the {v14.n_rows} rows both carry is {v14.tau:+.2f} (SD v1.4) and "
         f"{v20.tau:+.2f} (SD v2.0)")
    steps = next(t for (n, _), t in facts.board.tasks.items() if n == "t2i-digits").sampler_steps
    says(f"cfg-norm over the first 50 of t2i-digits' {steps} steps: {row(1, 'Wen', 'n = 1, steps 50').cells[0].auroc:.3f}")
    assert v14.disagrees and v20.disagrees and v14.best_below and v20.best_below
    says("the board marks both tables as disagreeing: the papers' best configurations are below chance here")


def test_sample_side_oracles_and_shortcuts(facts):
    knn = [d for d, g in facts.group.items() if g == "sample-side"]
    says(f"({span(facts.values(knn, ['syn100-cond']))} on syn100-cond, {span(facts.values(knn, ['syn100-dd']))} "
         "on syn100-dd)")
    oracles = ["nn-ratio", "authpct", "nn-distance"]
    vals = [facts.held_value(d, t) for d in oracles for t in facts.tasks if (d, t) != ("nn-distance", "mmh-toy")]
    says(f"({span(vals)}, but `nn-distance` {facts.held('nn-distance', 'mmh-toy')} on mmh-toy")
    held = [facts.gap(d, t).heldout_mean for (d, t), v in facts.shortcut.items() if v not in ("n/a",)]
    says(f"falls to {span(held)} on held-out ones")
    cond = [c for task, d, c in facts.all_gaps if d == "shortcut-condition" and task in COND_SYN]
    assert len(cond) == 3 and {f"{v:.3f}" for c in cond for v in c.public + c.heldout} == {"0.500"}
    says("`shortcut-condition` scores 0.500 on every public and held-out replicate of the conditional "
         "synthetic tasks")


def test_held_out(facts):
    assert all(facts.instance_row[t].startswith(("mean of", "fresh-")) for t in facts.tasks)
    says("every default task has held-out numbers")
    judged = [(t, d, c) for t, d, c in facts.all_gaps if c.judged]
    flagged = [(t, d) for t, d, c in judged if c.flagged]
    tasks = {t for t, _, _ in judged}
    says(f"On the {WORDS[len(tasks)]} tasks with three fresh replicates, {len(judged) - len(flagged)} of the "
         f"{len(judged)} shipped (task, detector) pairs agree")
    assert sorted(flagged) == [("syn10-od", "twonn"), ("syn100-cond", "sharpness"), ("syn2-cond", "ess"),
                               ("syn2-cond", "mle")]
    says(f"the {WORDS[len(flagged)]} flagged are `twonn` on syn10-od, `sharpness` on syn100-cond, and `ess` and "
         f"`mle` on syn2-cond, about what a two-standard-error rule flags by chance "
         f"({100 * len(flagged) / len(judged):.1f}% of pairs)")
    g = facts.gap("attention-entropy-posthoc", "t2i-digits")
    says(f"(`attention-entropy-posthoc` on t2i-digits {g.public_mean:.3f} -> {g.heldout_mean:.3f})")


def test_lid_track(facts):
    paper = [n for n, s in all_tasks().items() if "lid-paper" in s.suites]
    on_board = [n for (n, _), t in facts.board.tasks.items() if n in paper and facts.board.rows_for(t, ("measured",))]
    says(f"the opt-in suite `lid-paper`, {WORDS[len(on_board)]} of them measured on the board")


def test_shortcut_origin_in_the_detector_guide(facts):
    t = next(t for (n, _), t in facts.board.tasks.items() if n == "mmh-toy")
    by_kind = {i.data_hash: i.kind for i in t.instances.values()}
    rows = [r for r in facts.board.rows_for(t, ("measured",)) if r.detector == "shortcut-origin"]
    dev = [r.auroc for r in rows if by_kind[r.instance] == "dev"]
    test = [r.auroc for r in rows if by_kind[r.instance] == "test"]
    says(f"scores {two(dev[0])} on the dev instance and {two(sum(test) / len(test))} on the test instances",
         README)


def test_numbers_measured_outside_the_board_are_in_their_documents():
    """The fidelity study's ablations and the LID benchmark are measured by documents, not results."""
    fid = (ROOT / "docs" / "T2I_FIDELITY.md").read_text()
    # first-step cfg-norm on the verbatim (DD) copies: shipped seeds 0.372-0.445, at 7% 0.809; against the
    # in-distribution captions alone 0.571-0.626, at 7% 0.976; the LAION-like build's 3,000 steps
    for number in ("0.372", "0.445", "0.809", "0.571", "0.626", "0.976", "3,000 steps", "a quarter"):
        assert number in fid, number
    says("a quarter of t2i-digits' training set is duplicated (at 7%, first-step `cfg-norm` on the verbatim "
         f"copies rises from {span([0.372, 0.445])} to {two(0.809)})")
    says(f"(against its in-distribution captions alone {span([0.571, 0.626])}, and {two(0.976)} at 7%)")
    says("produced no copy under the labelling rule in 3,000 steps")
    lid = (ROOT / "docs" / "LID_TRACK.md").read_text()
    says("24 benchmark manifolds is measured beside the published table (20 replicates each)")
    assert "scikit-dimension's 24 benchmark manifolds" in lid and "20 replicates" in lid


#: numbers in the section that are names or settings, not measurements (SD v1.4, n = 1, 28x28 ...)
NOT_MEASURED = {"1", "1.4", "2.0", "28", "28x28", "50", "100"}


def test_every_number_of_the_section_is_claimed():
    """Runs last: every number the section prints sits in a fragment a claim above rebuilt (a new
    number needs a claim)."""
    if not SAID:
        pytest.skip("run with the claims above")
    said = " ".join(" ".join(x.split()) for x in SAID)
    numbers = set(re.findall(r"(?<![\w.])[+-]?\d[\d,]*(?:\.\d+)?(?:x\d+)?%?", SECTION))
    missing = sorted(n for n in numbers - NOT_MEASURED if n not in said)
    assert not missing, missing
