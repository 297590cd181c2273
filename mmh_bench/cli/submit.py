"""``mmh-bench submit`` and ``mmh-bench verify``: from a detector file to a verified board entry.

An entry is a folder ``<board>/submissions/<name>/`` holding

- ``detector.py``: a copy of the submitted file (what ran is what gets re-run), when the
  detector was given as ``path/to/file.py:Class``; a ``module:Class`` reference is recorded as is
  and must be importable (an installed package) when the entry is verified;
- ``results/<task>/v<version>/<detector>.json``: one evaluator result per task;
- ``metadata.json``: who, what, which tasks (with their full specs, so any task can be re-run),
  the conformance report; written last, so a folder without it is not an entry;
- ``verification.json``: written by ``verify``; the board calls the entry *verified* while it
  matches the result files and the detector file byte for byte.

Both evaluate sealed (:mod:`mmh_bench.evaluation.sealed`): the detector runs in a sandboxed worker that
holds only what its access grants, and this process never imports its code. Its name, access and
parameters come from a sandboxed describe step (:func:`mmh_bench.evaluation.sealed.describe_detector`), which
for ``submit`` also runs the conformance checks (:func:`mmh_bench.evaluation.conformance.check_detector`) on the
public ``mmh-check`` task, built inside the sandbox. A shipped baseline (``mmh_bench_baselines``)
is trusted and imported as usual.

``--kind mitigator`` submits a mitigator the same way (``mitigator.py``, ``kind`` and ``samples``
in the metadata): it is described and checked in a sandbox
(:func:`mmh_bench.evaluation.conformance.check_mitigator`), runs every setting
of its sweep sealed on each task's first ``--samples`` generations
(:func:`mmh_bench.mitigation.evaluate.mitigate_specs`), and its results are mitigation results
(``results/<task>/v<version>/<instance>/<name>[<params>].json``), verified the same way.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mmh_bench.files import sha256_file

from .mitigate import DEFAULT_SAMPLES
from .options import LIMITS, add_options, whole_number

DEFAULT_ATOL = 1e-3
#: Cost counts are exact: network evaluations are counted by the evaluator, not claimed.
COUNT_FIELDS = ("nfe_per_sample", "jvp_per_sample")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(msg: str) -> Exception:
    from .errors import CLIError
    return CLIError(msg)


def _split_ref(ref: str) -> tuple[Path | None, str]:
    """``path/file.py:Class`` -> (path, Class); ``module:Class`` -> (None, ref)."""
    if ":" not in ref:
        raise _error(f"detector {ref!r} must be path/to/file.py:Class or module:Class")
    from mmh_bench.registry import file_ref
    return file_ref(ref) or (None, ref)


def _evaluate(kind: str, specs: list[Any], det: Any, results: Path, *, cache: str | None, seed: int,
              batch_size: int, samples: int | None, quiet: bool) -> tuple[list[Path], list[Path], list[Any]]:
    """Evaluate ``det`` (a detector, or a mitigator at every setting of its sweep) sealed on
    ``specs``, every result written afresh under ``results``: (ran, failed, not applicable)."""
    from mmh_bench.evaluation.detection import DetectionTrack
    from mmh_bench.evaluation.runner import plan_grid, run_plan
    from mmh_bench.mitigation.evaluate import MitigationTrack
    track = DetectionTrack() if kind == "detector" else MitigationTrack(n=samples)
    plan = plan_grid(specs, [det], track=track, isolation="sealed", hide=[cache, results])
    grid = run_plan(plan, results, cache_dir=cache, seed=seed, batch_size=batch_size, force=True,
                    progress=not quiet, isolation="sealed")
    return grid.ran, grid.failed, grid.not_applicable


def _scan(kind: str, results: Path, tasks: Any) -> tuple[list[tuple[Path, Any]], list[tuple[Path, str | None, str]]]:
    """The result files under ``results``: (path, typed result) of the valid (a detection, LID or
    mitigation result model), (path, field, reason) of the rest."""
    if kind == "detector":
        from mmh_bench.leaderboard.store import scan_results
        scan = scan_results(results, tasks=tasks)
        accepted, rejected = scan.accepted, [(bad.path, bad.field, bad.reason) for bad in scan.rejected]
    else:
        from mmh_bench.mitigation.board import scan
        accepted, bad = scan(results)
        rejected = [(path, None, why) for path, why in bad]
    return list(accepted), rejected


def _doc(res: Any) -> dict[str, Any]:
    """A typed result as the plain document :func:`compare_results` walks field by field."""
    return json.loads(res.model_dump_json(by_alias=True))


def submission_dir(board: str | Path, name: str) -> Path:
    """``board/submissions/name``; the name is checked first, so it cannot climb out of the board."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", name):
        raise _error(f"submission name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                     "and start with a letter or digit")
    return Path(board) / "submissions" / name


def _require_sandbox(what: str) -> None:
    from mmh_bench.evaluation.sealed.selftest import SandboxUnavailable, require_sandbox
    try:
        require_sandbox(f"mmh-bench {what}")
    except SandboxUnavailable as exc:
        raise _error(str(exc)) from None


# -- submit -------------------------------------------------------------------------------------
def cmd_submit(args: argparse.Namespace) -> int:
    from mmh_bench.registry import RegistryError, resolve_tasks
    from mmh_bench.leaderboard.store import known_tasks
    from mmh_bench.evaluation.runner import resolve_detector
    from mmh_bench.leaderboard.schema import SchemaError, SubmissionMeta, check_url, validate_model
    from mmh_bench.evaluation.conformance import check_detector, check_mitigator

    folder = submission_dir(args.board, args.name)
    _require_sandbox("submit")
    authors = [a.strip() for a in args.authors.split(",") if a.strip()]
    if not authors:
        raise _error("--authors needs at least one name")
    try:
        check_url(args.url)
    except ValueError as exc:
        raise _error(f"--url {args.url!r} {exc}") from None
    if folder.exists() and not args.force:
        raise _error(f"{folder} exists; pass --force to replace that entry")
    specs = resolve_tasks(args.tasks)
    kind = args.kind
    path, attr = _split_ref(args.detector)
    if path is not None and not path.is_file():
        raise _error(f"{kind} file {str(path)!r} does not exist")

    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{args.name}.", dir=folder.parent))
    try:
        if path is not None:  # run the copy: what ran is what verify will re-run
            code = stage / f"{kind}.py"
            shutil.copyfile(path, code)
            ref, stored_ref, sha = f"{code}:{attr}", f"{code.name}:{attr}", sha256_file(code)
        else:
            ref = stored_ref = attr
            sha = None
        checks: list[dict[str, Any]] = []
        print(f"[1/3] conformance check of {stored_ref} ...", flush=True)
        try:  # submitted code: described and checked in a sandboxed worker, never imported here
            det = resolve_detector(ref, "sealed", hide=[args.cache, folder.parent], check_seed=args.seed, kind=kind)
        except RegistryError as exc:
            raise _error(str(exc)) from None
        report = getattr(det, "check_report", None)
        if report is None:  # a shipped baseline: trusted, checked here
            check = check_mitigator if kind == "mitigator" else check_detector
            report = check(det, cache_dir=args.cache, seed=args.seed)
        print(report)
        if not report.ok:
            print("mmh-bench: submission stopped: fix the failed checks above", file=sys.stderr)
            return 1
        checks = [{k: c[k] for k in ("name", "level", "passed", "message")} for c in report.to_list()]
        print(f"[2/3] evaluating on {len(specs)} task(s): {', '.join(s.name for s in specs)}", flush=True)
        ran, failed, not_applicable = _evaluate(kind, specs, det, stage / "results", cache=args.cache,
                                                seed=args.seed, batch_size=args.batch_size,
                                                samples=args.samples or None, quiet=args.quiet)
        for task, name, why in not_applicable:
            print(f"  skipped {name} on {task}: {why}", file=sys.stderr)
        if failed:
            for p in failed:
                err = json.loads(p.read_text()).get("error")
                print(f"  failed: {p.relative_to(stage)}: {err}", file=sys.stderr)
            print(f"mmh-bench: submission stopped: the {kind} failed on some tasks", file=sys.stderr)
            return 1
        if not ran:
            raise _error(f"the {kind} was not applicable to any of the tasks; nothing to submit")
        _, rejected = _scan(kind, stage / "results", known_tasks(specs))
        if rejected:  # the evaluator's own output must pass the schema; anything else is a bug
            raise _error(f"result failed validation: {rejected[0]}")
        meta = {"schema_version": 1, "name": args.name, "kind": kind, "detector": det.name, "detector_ref": stored_ref,
                "detector_sha256": sha, "authors": authors, "url": args.url,
                "description": args.description, "submitted": _now(),
                "mmh_bench_version": _version(), "seed": args.seed, "batch_size": args.batch_size,
                "tasks": [{"name": s.name, "version": s.version, "hash": s.hash, "spec": s.raw} for s in specs],
                "skipped": [list(x) for x in not_applicable], "checks": checks}
        if kind == "mitigator":
            meta["samples"] = args.samples or None
        try:
            validate_model(SubmissionMeta, json.loads(json.dumps(meta)))
        except SchemaError as exc:
            raise _error(f"metadata: {exc}") from None
        from mmh_bench.files import write_json
        write_json(stage / "metadata.json", meta)
        if folder.exists():
            shutil.rmtree(folder)
        stage.rename(folder)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    unregistered = sorted({s.name for s in specs} - set(known_tasks()))
    print(f"[3/3] wrote {folder} ({len(ran)} result(s))")
    if unregistered:
        print(f"note: task(s) {', '.join(unregistered)} are not in the task registry; the board shows "
              "only registered tasks (see MMH_BENCH_TASKS_PATH)", file=sys.stderr)
    print(f"next: mmh-bench verify {args.name} --board {args.board}   then: mmh-bench leaderboard")
    return 0


def _version() -> str:
    from mmh_bench.common.provenance import package_versions
    return package_versions().get("mmh-bench", "unknown")


# -- verify -------------------------------------------------------------------------------------
def _leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_leaves(v, f"{prefix}.{i}"))
        return out
    return {prefix: obj}


def compare_results(old: dict[str, Any], new: dict[str, Any], atol: float) -> list[dict[str, Any]]:
    """Differences between a submitted and a re-run result: metrics beyond ``atol``, exact counts."""
    diffs: list[dict[str, Any]] = []

    def add(fieldname: str, a: Any, b: Any, note: str = "") -> None:
        diffs.append({"field": fieldname, "submitted": a, "rerun": b, "note": note})

    for key in ("status", "n_samples", "n_memorized", "task_hash"):
        if old.get(key) != new.get(key):
            add(key, old.get(key), new.get(key))
    if old["provenance"]["data_hash"] != new["provenance"]["data_hash"]:
        add("provenance.data_hash", old["provenance"]["data_hash"], new["provenance"]["data_hash"],
            "the task was built differently here (samples or labels differ); metric differences follow")
    a, b = _leaves(old.get("metrics") or {}), _leaves(new.get("metrics") or {})
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if abs(x - y) > atol:
                add(f"metrics.{k}", x, y, f"differs by {abs(x - y):.3g} > atol {atol:g}")
        elif x != y:
            add(f"metrics.{k}", x, y, "missing on one side" if x is None or y is None else "")
    for k in COUNT_FIELDS:
        x, y = (old.get("cost") or {}).get(k), (new.get("cost") or {}).get(k)
        if x != y and not (isinstance(x, (int, float)) and isinstance(y, (int, float))
                           and abs(x - y) <= 1e-9 * max(1.0, abs(x))):
            add(f"cost.{k}", x, y, "network evaluations are counted, so they must match")
    return diffs


def cmd_verify(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from mmh_bench.files import write_json
    from mmh_bench.common.provenance import hardware, hardware_label
    from mmh_bench.registry import RegistryError, all_tasks
    from mmh_bench.evaluation.runner import resolve_detector
    from mmh_bench.leaderboard.schema import SchemaError, SubmissionMeta, read_json, validate_model
    from mmh_bench.task.spec import SpecError, parse_spec

    folder = submission_dir(args.board, args.name)
    _require_sandbox("verify")
    if not (folder / "metadata.json").is_file():
        raise _error(f"no submission {args.name!r}: {folder / 'metadata.json'} does not exist")
    try:
        meta = validate_model(SubmissionMeta, read_json(folder / "metadata.json"))
    except SchemaError as exc:
        raise _error(f"{folder / 'metadata.json'}: {exc}") from None
    diffs: list[dict[str, Any]] = []
    registry = all_tasks()
    specs = {}
    for ref in meta.tasks:
        current = registry.get(ref.name)
        if current is not None:
            if current.hash != ref.hash:
                diffs.append({"file": "metadata.json", "field": f"tasks.{ref.name}.hash", "submitted": ref.hash,
                              "rerun": current.hash, "note": "the task changed since submission: re-submit"})
                continue
            specs[ref.name] = current
        else:
            try:
                spec = parse_spec(ref.spec, f"{folder / 'metadata.json'} (task {ref.name})")
            except SpecError as exc:
                raise _error(str(exc)) from None
            if spec.hash != ref.hash:
                raise _error(f"metadata.json: the stored spec of task {ref.name!r} does not match its hash")
            print(f"note: task {ref.name!r} is not in the registry; re-running the spec stored with the entry",
                  file=sys.stderr)
            specs[ref.name] = spec

    kind = meta.kind
    accepted, rejected = _scan(kind, folder / "results", specs)
    for path, fieldname, reason in rejected:
        diffs.append({"file": str(path.relative_to(folder)), "field": fieldname or "(file)",
                      "submitted": None, "rerun": None, "note": reason[:300]})
    target, attr = meta.detector_ref.rsplit(":", 1)
    sha = None
    if target.endswith(".py"):
        code = (folder / target).resolve()
        if folder.resolve() not in code.parents:
            raise _error(f"metadata.json: detector_ref {meta.detector_ref!r} points outside the entry")
        sha = sha256_file(code)
        if sha != meta.detector_sha256:
            diffs.append({"file": target, "field": "detector_sha256", "submitted": meta.detector_sha256,
                          "rerun": sha, "note": f"the {kind} file changed since submission"})
        ref = f"{code}:{attr}"
    else:
        ref = meta.detector_ref
    try:  # described in a sandboxed worker: the submitted code is never imported here
        det = resolve_detector(ref, "sealed", hide=[args.cache, folder.parent], kind=kind)
    except RegistryError as exc:
        raise _error(str(exc)) from None
    if det.name != meta.detector:
        raise _error(f"the {kind}'s name is {det.name!r}, the entry's {meta.detector!r}")

    with tempfile.TemporaryDirectory(prefix="mmh-verify-") as tmp:
        print(f"re-running {det.name!r} on {len(specs)} task(s) ...", flush=True)
        _evaluate(kind, list(specs.values()), det, Path(tmp), cache=args.cache, seed=meta.seed,
                  batch_size=args.batch_size or meta.batch_size, samples=meta.samples, quiet=args.quiet)
        rerun = {p.relative_to(tmp): d for p, d in _scan(kind, Path(tmp), specs)[0]}
    old = {p.relative_to(folder / "results"): d for p, d in accepted}
    for rel in sorted(set(old) | set(rerun), key=str):
        shown = str(Path("results") / rel)
        if rel not in rerun:
            diffs.append({"file": shown, "field": "(file)", "submitted": "present", "rerun": None,
                          "note": "not produced by the re-run"})
        elif rel not in old:
            diffs.append({"file": shown, "field": "(file)", "submitted": None, "rerun": "present",
                          "note": "the re-run produced a result the entry lacks"})
        else:
            diffs += [{"file": shown, **d} for d in compare_results(_doc(old[rel]), _doc(rerun[rel]), args.atol)]
    heldout: list[dict[str, Any]] = []
    heldout_files: dict[str, str] = {}
    if kind == "detector" and not args.no_heldout:
        heldout, heldout_files = _verify_heldout(specs, det, folder, args, seed=meta.seed,
                                                 batch_size=args.batch_size or meta.batch_size, public=old)
    ok = not diffs
    if diffs:
        rows = [[d["file"], d["field"], _short(d["submitted"]), _short(d["rerun"]), d["note"]] for d in diffs]
        print(tabulate(rows, headers=["file", "field", "submitted", "re-run", "note"]))
        print(f"NOT verified: {len(diffs)} difference(s) beyond tolerance (atol {args.atol:g})")
    else:
        print(f"verified: {len(old)} result(s) reproduce within atol {args.atol:g}")
    if not args.no_record:
        record = {"schema_version": 1, "name": meta.name, "ok": ok, "date": _now(),
                  "mmh_bench_version": _version(), "hardware": hardware_label(hardware()),
                  "atol": float(args.atol), "detector_sha256": sha,
                  "files": {str(Path("results") / rel): sha256_file(folder / "results" / rel) for rel in sorted(old, key=str)},
                  "differences": [{k: _plain(v) for k, v in d.items()} for d in diffs],
                  "heldout": heldout, "heldout_files": heldout_files}
        write_json(folder / "verification.json", record)
        print(f"wrote {folder / 'verification.json'}")
    return 0 if ok else 1


def _verify_heldout(specs: dict[str, Any], det: Any, folder: Path, args: argparse.Namespace, *, seed: int,
                    batch_size: int, public: dict[Path, Any]
                    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Score the entry on fresh instances (held out: built now from a secret drawn for this run, or
    taken from a maintainer's kept ``--fresh-pool``), write those results to ``<entry>/heldout/``
    (replacing the last ones) and return, per task, its public metric beside the held-out one
    (:func:`mmh_bench.leaderboard.heldout.compare`) and the files' sha256."""
    from tabulate import tabulate

    from mmh_bench.evaluation.runner import evaluate
    from mmh_bench.files import staged_dir
    from mmh_bench.leaderboard.heldout import HEADLINE, HIGHER_IS_BETTER, compare, headline, mean_sd
    from mmh_bench.task.fresh import PoolError, fresh_pool
    print(f"held out: scoring {det.name!r} on fresh instances (built for this verification, never published) ...",
          flush=True)
    try:
        with fresh_pool(args.fresh_pool, args.fresh_replicates) as pool, \
                tempfile.TemporaryDirectory(prefix="mmh-heldout-") as tmp:
            evaluate(list(specs.values()), [det], tmp, cache_dir=args.cache, seed=seed, batch_size=batch_size,
                     force=True, progress=not args.quiet, isolation="sealed", instances=pool)
            docs = {p.relative_to(tmp): d for p, d in _scan("detector", Path(tmp), specs)[0]}
            with staged_dir(folder / "heldout") as work:
                for rel in docs:
                    (work / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(Path(tmp) / rel, work / rel)
    except PoolError as exc:
        raise _error(str(exc)) from None
    files = {str(Path("heldout") / rel): sha256_file(folder / "heldout" / rel) for rel in sorted(docs, key=str)}
    rows, table = [], []
    for name, spec in specs.items():
        pub = [headline(res) for res in public.values() if res.task == name]
        held = [headline(res) for res in docs.values() if res.task == name]
        if not pub and not held:
            continue
        metric = HEADLINE.get(spec.track, "auroc")
        cmp = compare(pub, held, higher_is_better=HIGHER_IS_BETTER[metric])
        rows.append({"task": name, "metric": metric, **cmp.model_dump()})
        table.append([name, metric, mean_sd(cmp.public, missing="-", count="n={}"),
                      mean_sd(cmp.heldout, missing="-", count="n={}"),
                      "-" if cmp.gap is None else f"{cmp.gap:+.3f}",
                      "FLAGGED" if cmp.flagged else "" if cmp.judged else "not judged (one replicate each)"])
    if table:
        print(tabulate(table, headers=["task", "metric", "public", "held out", "gap", ""]))
    flagged = [r["task"] for r in rows if r["flagged"]]
    if flagged:
        print(f"FLAGGED: the public score exceeds the held-out one beyond the replicates' spread on "
              f"{', '.join(flagged)}: the entry may have memorized the published instances")
    return rows, files


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float)):
        return v
    return str(v)[:500]


# -- argparse -----------------------------------------------------------------------------------
def register(sub: Any) -> None:
    s = sub.add_parser(
        "submit", help="check a detector (or mitigator), run the standard suite, write a leaderboard entry",
        description="Run the conformance check (mmh_bench.evaluation.conformance.check_detector), evaluate the "
                    "detector on the standard suite, and write the entry (metadata.json, a copy of "
                    "the detector file, one result per task) to BOARD/submissions/NAME/. The detector's code "
                    "runs only in sandboxed workers, never in this process. With --kind mitigator, a "
                    "mitigator is described, run at every setting of its sweep and stored the same way.")
    s.add_argument("detector", metavar="REF", help="path/to/file.py:Class (copied into the entry) or module:Class")
    s.add_argument("--kind", choices=("detector", "mitigator"), default="detector",
                   help="what REF is (default: detector)")
    s.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"mitigators: generations regenerated per task, the first N rows (default {DEFAULT_SAMPLES}; "
                        "0 = all)")
    s.add_argument("--name", required=True, help="entry name: letters, digits, '.', '_' or '-'")
    s.add_argument("--authors", required=True, help="comma-separated author names")
    s.add_argument("--url", required=True, help="paper or code address (http/https)")
    s.add_argument("--description", default="", help="one-line description shown with the entry")
    add_options(s, "tasks", "board", "cache", "seed", "batch-size")
    s.add_argument("--force", action="store_true", help="replace an existing entry of that name")
    add_options(s, "quiet", *LIMITS[1:])
    s.set_defaults(func=cmd_submit)

    v = sub.add_parser(
        "verify", help="re-run a submitted entry and report metrics that differ",
        description="Re-run BOARD/submissions/NAME with its recorded detector, tasks and seed; list "
                    "every metric that differs beyond --atol and every network-evaluation count that "
                    "differs at all; then score it on fresh held-out instances (never published) and show its "
                    "public metric beside the held-out one, flagging a gap beyond the replicates' spread; "
                    "write verification.json. Exit status 1 when a public result does not reproduce. "
                    "This executes the submitted code, in sandboxed workers only.")
    v.add_argument("name", help="entry name (folder under BOARD/submissions)")
    add_options(v, "board")
    v.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"absolute tolerance on metrics (default: {DEFAULT_ATOL:g}, the board's precision)")
    add_options(v, "cache", "batch-size", batch_size={
        "default": None, "help": "samples per detector call (default: the one the entry was submitted with)"})
    v.add_argument("--no-record", action="store_true", help="do not write verification.json")
    v.add_argument("--no-heldout", action="store_true",
                   help="skip the held-out evaluation (fresh instances, never published) that verify runs by default")
    v.add_argument("--fresh-pool", default=None, metavar="DIR",
                   help="held-out instances from this kept pool (built there once when it lacks them; outside any "
                        "repository), so each verification only evaluates (default: built for this verification "
                        "in a private temporary folder, removed afterwards)")
    v.add_argument("--fresh-replicates", type=lambda t: whole_number(t, "--fresh-replicates"), default=None, metavar="N",
                   help="held-out replicates per task (default: the spec's [instances] test_replicates)")
    add_options(v, "quiet", *LIMITS[1:])
    v.set_defaults(func=cmd_verify)
