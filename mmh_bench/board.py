"""Rendering the leaderboard from the results store (Markdown via tabulate)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from .io import atomic_write_text
from .provenance import hardware_label
from .results import load_results


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:  # NaN
            return "n/a"
        return f"{v:.{nd}f}"
    return str(v)


def _auroc_cell(m: dict[str, Any]) -> str:
    ci = m.get("auroc_ci")
    base = _fmt(m.get("auroc"))
    return f"{base} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else base


def _sub(m: dict[str, Any], name: str) -> str:
    sub = (m.get("per_subtype") or {}).get(name)
    return _fmt(sub.get("auroc")) if sub else "–"


def memorization_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    ok = [r for r in results if r["status"] == "ok" and r.get("metrics")]
    ok.sort(key=lambda r: -(r["metrics"].get("auroc") or 0.0))
    rows = []
    for rank, r in enumerate(ok, 1):
        m, c = r["metrics"], r.get("cost") or {}
        name = r["detector"] + (" (reference)" if r.get("reference") else "")
        rows.append([rank, name, r["access"], _auroc_cell(m), _fmt(m.get("ap")),
                     _fmt(m["tpr_at_fpr"].get("0.01")), _fmt(m["tpr_at_fpr"].get("0.001")),
                     _sub(m, "DD"), _sub(m, "OD"), _fmt(c.get("nfe_per_sample"), 1),
                     _fmt(c.get("seconds"), 2)])
    for r in results:
        if r["status"] != "ok":
            rows.append(["–", r["detector"], r.get("access", "?"), "failed: " + str(r.get("error"))[:80],
                         "", "", "", "", "", "", ""])
    return rows


def lid_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    ok = [r for r in results if r["status"] == "ok" and r.get("metrics")]
    ok.sort(key=lambda r: r["metrics"].get("mae", float("inf")))
    return [[i, r["detector"], r["access"], _fmt(r["metrics"]["mae"]), _fmt(r["metrics"]["mse"]),
             _fmt(r["metrics"]["concordance"]), _fmt((r.get("cost") or {}).get("nfe_per_sample"), 1),
             _fmt((r.get("cost") or {}).get("seconds"), 2)] for i, r in enumerate(ok, 1)]


MEM_HEADERS = ["#", "detector", "access", "AUROC [95% CI]", "AP", "TPR@1%FPR", "TPR@0.1%FPR",
               "AUROC DD", "AUROC OD", "NFE/sample", "seconds"]
LID_HEADERS = ["#", "estimator", "access", "MAE", "MSE", "concordance", "NFE/sample", "seconds"]


def render_markdown(results: list[dict[str, Any]]) -> str:
    by_task: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_task[(r["task"], str(r["task_version"]))].append(r)
    lines = ["# mmh-bench leaderboard", "",
             "Measured by mmh-bench; higher AUROC is better. Scores are ranked per task. "
             "`reference` rows restate the labelling rule (they see the training set) and bound, "
             "rather than compete with, the other detectors. TPR@x%FPR is the largest TPR whose "
             "FPR does not exceed x%. NFE counts network forward passes and JVPs per sample.", ""]
    hw = sorted({hardware_label(r["provenance"]["hardware"]) for r in results
                 if r.get("provenance", {}).get("hardware")})
    if hw:
        lines += ["Hardware: " + "; ".join(hw), ""]
    for (task, version), rs in sorted(by_task.items()):
        first = rs[0]
        lines.append(f"## {task} (v{version})")
        lines.append("")
        n_mem = first.get("n_memorized")
        facts = f"family `{first.get('task_family', '?')}`, {first.get('n_samples')} samples"
        if n_mem is not None:
            facts += f", {n_mem} memorized"
        lines += [facts + f", spec hash `{first.get('task_hash', '?')}`", ""]
        if first.get("track") == "lid":
            lines.append(tabulate(lid_rows(rs), headers=LID_HEADERS, tablefmt="github"))
        else:
            lines.append(tabulate(memorization_rows(rs), headers=MEM_HEADERS, tablefmt="github"))
        lines.append("")
    return "\n".join(lines)


def render_board(results_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``README.md`` into ``out_dir``; returns the files written."""
    results = load_results(results_dir)
    out = Path(out_dir)
    path = out / "README.md"
    atomic_write_text(path, render_markdown(results))
    return [path]
