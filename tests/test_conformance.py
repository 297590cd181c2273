"""Every registered detector passes ``mmh_bench.evaluation.conformance.check_detector`` on the tiny tasks.

Conditional detectors run on ``tiny_cond``, the others on ``tiny``; LID estimators also on the
LID-track ``tiny_lid``. A detector the task cannot serve is skipped with the check's reason.
The checks run in-process (they test the contract; sealing is tested in test_sealed.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmh_bench.evaluation import metrics
from mmh_bench.task.build import build_task
from mmh_bench.api.detector import LIDEstimator
from mmh_bench.registry import all_detectors, all_mitigators
from mmh_bench.task.spec import load_spec
from mmh_bench.evaluation.conformance import ODD_BATCH, check_detector, check_mitigator

DATA = Path(__file__).parent / "data"
DETECTORS = all_detectors()


def _pairs() -> list[tuple[str, str]]:
    out = []
    for name, cls in DETECTORS.items():
        out.append((name, "tiny_cond" if cls.access.grants_cond() else "tiny"))
        if issubclass(cls, LIDEstimator):
            out.append((name, "tiny_lid"))
    return out


@pytest.fixture(scope="module")
def instances():
    cache: dict[str, object] = {}

    def get(task: str):
        if task not in cache:
            cache[task] = build_task(load_spec(DATA / f"{task}.toml"), progress=False)
        return cache[task]
    return get


@pytest.mark.parametrize("name,task", _pairs())
def test_registered_detector_conforms(name, task, instances, monkeypatch):
    # the bootstrap CI of the final result check is the evaluator's cost, not the detector's
    monkeypatch.setattr(metrics, "bootstrap_auroc_ci", lambda *a, **k: None)
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(DATA))  # the shortcuts read the public spec by name
    report = check_detector(name, instances(task), batch_size=128)
    applicable = next((c for c in report.checks if c.name == "applicable"), None)
    if applicable is not None and not applicable.passed:
        pytest.skip(f"{name} on {task}: {applicable.message}")
    assert report.ok, str(report)
    assert any(c.name == "fitted_state" and c.passed for c in report.checks), str(report)


@pytest.mark.parametrize("name", sorted(all_mitigators()))
def test_registered_mitigator_conforms(name, instances):
    """Every shipped mitigator passes the same checks through the mitigation track, on the tiny
    text-to-image task (its cross-attention model offers every capability a mitigator requires)."""
    inst = instances("tiny_t2i")
    n = 3 * ODD_BATCH  # enough rows for the odd-batch split to cut three batches; every row would cost 4x
    assert n < len(inst.samples)
    report = check_mitigator(name, inst, batch_size=128, n=n)
    assert report.ok, str(report)
    assert {c.name for c in report.checks if c.passed} >= {"contract", "sweep", "applicable", "output",
                                                          "fitted_state", "deterministic", "result"}, str(report)
