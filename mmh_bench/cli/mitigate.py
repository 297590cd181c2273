"""``mmh-bench mitigators`` and ``mmh-bench mitigate``: the mitigation track from the command line."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import LIMITS, add_options, instances_option, print_listing

DEFAULT_OUT = "leaderboard"
#: generations regenerated per task by default: every mitigator setting reruns the whole sampler,
#: so the sweep over ~35 settings costs ~35 generations of the task (measured: 500 rows keep the
#: CPU tasks' track within minutes; intervals are printed with every rate)
DEFAULT_SAMPLES = 500


def cmd_mitigators(args: argparse.Namespace) -> int:
    from mmh_bench.registry import all_mitigators
    rows = [{"name": name, "access": cls.access.label, "version": cls.version, "requires": list(cls.requires),
             "sweep": {cls.sweep[0]: list(cls.sweep[1])} if cls.sweep[0] else {}, "cost": cls.cost_note,
             "source": f"{cls.__module__}:{cls.__qualname__}",
             "summary": (cls.__doc__ or "").strip().split("\n")[0]}
            for name, cls in all_mitigators().items()]
    return print_listing(rows, args.json, [[r["name"], ", ".join(f"{k} in {v}" for k, v in r["sweep"].items()) or "-",
                                             ", ".join(r["requires"]) or "-", r["summary"][:70]] for r in rows],
                         ["mitigator", "settings swept", "needs", "summary"])


def _judge(args: argparse.Namespace) -> Any:
    """MemBench's judge for Stable Diffusion tasks when ``--ground-truth`` is given, else None."""
    from .errors import CLIError
    if not args.ground_truth:
        return None
    if not (args.sscd and args.sscd_sha256):
        raise CLIError("--ground-truth needs SSCD's TorchScript file: --sscd FILE --sscd-sha256 HEX")
    from mmh_bench.mitigation.sd import MemBenchJudge
    return MemBenchJudge.from_files(args.ground_truth, args.sscd, args.sscd_sha256, args.clip, args.clip_revision,
                                    partial=args.partial_ground_truth)


def cmd_mitigate(args: argparse.Namespace) -> int:
    from mmh_bench.evaluation.engine import ClusterError
    from mmh_bench.evaluation.runner import resolve_many
    from mmh_bench.mitigation.board import render_markdown
    from mmh_bench.mitigation.evaluate import DEFAULT_RESULTS, mitigate_specs
    from mmh_bench.registry import resolve_tasks
    from mmh_bench.task.models.stable_diffusion import model_source
    from .errors import CLIError
    instances = instances_option(args.instances)  # bad input fails before anything is described
    # a mitigator other than a shipped baseline is described in a sandbox, never imported here
    mitigators = resolve_many(args.mitigators, args.isolation, hide=[args.cache, args.results], kind="mitigator")
    judge = _judge(args)
    try:
        with model_source(args.model):  # SD tasks build and regenerate with these weights
            total = mitigate_specs(resolve_tasks(args.tasks), mitigators, args.results, cache_dir=args.cache,
                                   instances=instances,
                                   all_replicates=args.all_replicates, progress=not args.quiet, seed=args.seed,
                                   force=args.force, sweep=not args.no_sweep, n=args.samples or None,
                                   isolation=args.isolation, timeout=args.timeout, batch_size=args.batch_size,
                                   judge=judge, workers=args.workers, cluster=args.cluster)
    except ClusterError as exc:
        raise CLIError(str(exc)) from None
    for task, name, why in total.not_applicable:
        print(f"not applicable: {task} / {name}: {why}")
    print(f"{len(total.ran)} ran, {len(total.skipped_current)} current (skipped), {len(total.failed)} failed")
    if args.out is None:  # beside the results: a user's own run never overwrites the official board
        args.out = DEFAULT_OUT if Path(args.results).resolve() == Path(DEFAULT_RESULTS).resolve() else args.results
    if args.out:
        out = Path(args.out)
        text = render_markdown(args.results, plots_dir=out / "plots")
        if text:
            (out / "MITIGATION.md").write_text(text)
            print(f"wrote {out / 'MITIGATION.md'}")
    return 1 if total.failed else 0


def register(sub: Any) -> None:
    from mmh_bench.mitigation.evaluate import DEFAULT_RESULTS
    from mmh_bench.mitigation.ground_truth import MANIFEST
    from mmh_bench.mitigation.membench import DEFAULT_CLIP
    s = sub.add_parser("mitigators", help="list the registered mitigators",
                       description="List every mitigator registered under the entry-point group "
                                   "mmh_bench.mitigators, with the settings its trade-off curve sweeps.")
    add_options(s, "json")
    s.set_defaults(func=cmd_mitigators)

    s = sub.add_parser(
        "mitigate", help="score mitigators: memorization rate and quality of regenerated samples",
        description="Regenerate each conditional task's samples (same conditions, same initial noises) "
                    "under each mitigator at every setting of its sweep, label them with the task's "
                    "own copy rule and measure quality; one result file per setting, written atomically "
                    "and skipped when current. A mitigator other than a shipped baseline runs sealed, as "
                    "detectors do: in a sandboxed worker that never sees labels. Stable Diffusion tasks "
                    "(--model, a GPU) are scored as MemBench scores them, by SSCD against the memorized "
                    "prompts' ground-truth images (--ground-truth, --sscd) and by CLIP score. Then render the "
                    "mitigation section (MITIGATION.md and "
                    "its Pareto plots).")
    add_options(s, "tasks", "cache", "seed", "quiet", "cluster", "workers",
                tasks={"default": "syn2-cond,syn10-cond,syn100-cond,image-digits-cond,t2i-digits"})
    s.add_argument("--mitigators", default="all",
                   help="comma-separated mitigator references, e.g. 'none,guidance,flipd-embedding(iters=10)' "
                        "or file.py:Class (default: all)")
    s.add_argument("--results", default=DEFAULT_RESULTS, help=f"results folder (default: {DEFAULT_RESULTS})")
    s.add_argument("--instances", default=None, metavar="DIR",
                   help="public instances to use (default: the board's, leaderboard/instances, where this "
                        "checkout has it; 'none': this machine's dev builds; a DIR that does not exist is an error)")
    s.add_argument("--out", default=None, help=f"where MITIGATION.md and its plots go ('' to skip; default: "
                                             f"{DEFAULT_OUT} for the default results, else the results folder)")
    s.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"generations regenerated per task: the first N rows, a uniform random subset "
                        f"(default {DEFAULT_SAMPLES}; 0 = all)")
    s.add_argument("--all-replicates", action="store_true",
                   help="every published replicate of a task (default: replicate 0 only)")
    s.add_argument("--no-sweep", action="store_true", help="run each mitigator at its given parameters only")
    add_options(s, "isolation", *LIMITS)
    add_options(s, "model", "batch-size",
                batch_size={"help": "generations per mitigator call (default: 512; on a GPU, Stable Diffusion's "
                                    "embedding optimisers need a few)"})
    s.add_argument("--force", action="store_true", help="rerun current results")
    g = s.add_argument_group("Stable Diffusion tasks (MemBench's scores; see the README's mitigation track)")
    g.add_argument("--ground-truth", metavar="DIR", default=None,
                   help=f"ground-truth training images of the memorized prompts: DIR/{MANIFEST} (columns "
                        "prompt,image) and the images it names")
    g.add_argument("--partial-ground-truth", action="store_true",
                   help="score the memorized prompts that have ground truth, leave the others out "
                        "(default: every memorized prompt needs some)")
    g.add_argument("--sscd", metavar="FILE", default=None,
                   help="SSCD's TorchScript file, e.g. sscd_disc_large.torchscript.pt (MemBench's)")
    g.add_argument("--sscd-sha256", metavar="HEX", default=None, help="the sha256 that file must have")
    g.add_argument("--clip", metavar="FOLDER_OR_ID", default=DEFAULT_CLIP,
                   help=f"CLIP weights in transformers format: a local folder or a hub id (default {DEFAULT_CLIP}, "
                        "MemBench's ViT-g-14)")
    g.add_argument("--clip-revision", metavar="COMMIT", default=None,
                   help="the hub commit of --clip (required for a hub id, so scores never drift)")
    s.set_defaults(func=cmd_mitigate)
