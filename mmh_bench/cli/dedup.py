"""``mmh-bench dedup PATH --threshold T --out FILE``: duplicate groups of an embedding set as JSON.

The output (documented in the subcommand's help)::

    {"groups": [[i, j, ...], ...],   # row indices, ascending; groups of size >= 2, by first row
     "sizes": [...], "diameters": [...], "chained_groups": k,
     "n_rows": N, "n_groups": G, "rows_in_groups": R, "rows_after_dedup": N - R + G,
     "threshold": T, "metric": "l2", "linkage": "single", "source": {...}, "stats": {...}}
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .options import add_options

import numpy as np

EPILOG = """\
output JSON:
  groups          row indices of each duplicate group (size >= 2), ascending, ordered by first row
  sizes           the size of each group
  diameters       largest pairwise distance inside each group (single linkage can chain rows
                  farther apart than the threshold; chained_groups counts groups with diameter > T)
  rows_after_dedup  rows left when each group keeps one row
  stats           how pairs were searched (method, cells, probes, certified_fraction, seconds)
distances are Euclidean; with --metric cosine, between unit vectors: T = sqrt(2 - 2 cos).
"""


def _numeric_list_column(feature: Any) -> bool:
    inner = getattr(feature, "feature", None)
    dtype = str(getattr(inner, "dtype", "") if inner is not None else getattr(feature, "dtype", ""))
    return dtype.startswith(("float", "int", "uint")) and (inner is not None or
                                                           type(feature).__name__.startswith("Array"))


def load_embeddings(path: str | os.PathLike, column: str | None = None) -> tuple[np.ndarray, dict]:
    """Rows of a ``.npy`` array (memory-mapped) or of one column of a ``datasets`` folder."""
    from .errors import CLIError
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if p.is_file():
        if p.suffix != ".npy":
            raise CLIError(f"{p} is neither a .npy file nor a datasets folder")
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"cannot read {p} as a numeric .npy array: {str(exc).splitlines()[0]}") from None
        if arr.ndim < 2 or arr.dtype.kind not in "fiu" or len(arr) == 0:
            raise CLIError(f"{p} holds shape {arr.shape} of {arr.dtype}; expected rows of numbers (n, d)")
        return arr.reshape(len(arr), -1), {"path": str(p), "format": "npy", "shape": list(arr.shape)}
    from datasets import DatasetDict, load_from_disk
    try:
        ds = load_from_disk(str(p))
    except Exception as exc:  # datasets raises several types for a folder it cannot read
        raise CLIError(f"{p} is not a folder written by datasets' save_to_disk "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(ds, DatasetDict):
        if len(ds) != 1:
            raise CLIError(f"{p} has splits {', '.join(ds)}; point at one split's folder")
        ds = next(iter(ds.values()))
    numeric = [k for k, f in ds.features.items() if _numeric_list_column(f)]
    if column is None:
        column = "embedding" if "embedding" in numeric else (numeric[0] if len(numeric) == 1 else None)
        if column is None:
            raise CLIError(f"{p}: name the embedding column with --column (array columns: "
                           f"{', '.join(numeric) or 'none'})")
    elif column not in ds.column_names:
        raise CLIError(f"{p} has no column {column!r} (columns: {', '.join(ds.column_names)})")
    if len(ds) == 0:
        raise CLIError(f"{p} has no rows")
    first = np.asarray(ds[0][column], dtype=np.float32).ravel()
    rows = np.empty((len(ds), first.size), dtype=np.float32)
    at = 0
    for batch in ds.select_columns([column]).with_format("numpy").iter(batch_size=65536):
        blk = np.asarray(batch[column], dtype=np.float32)
        if blk.dtype == object or blk.reshape(len(blk), -1).shape[1] != first.size:
            raise CLIError(f"column {column!r} of {p} does not hold vectors of one length")
        rows[at:at + len(blk)] = blk.reshape(len(blk), -1)
        at += len(blk)
    return rows, {"path": str(p), "format": "datasets", "column": column, "shape": list(rows.shape)}


def _on_cluster(args: argparse.Namespace, rows: np.ndarray, source: dict, opts: dict) -> Any:
    """The same search with its cells split among the workers of a Dask cluster (a .npy file is read
    by the workers themselves: its path must be one they can reach)."""
    from .errors import CLIError
    from mmh_bench.evaluation.engine import ClusterError, cluster_client
    from mmh_bench.retrieval.sharded import NpySource, find_duplicates_on_cluster
    npy = NpySource(str(Path(args.path).resolve()), args.metric) if source["format"] == "npy" else None
    try:
        with cluster_client(args.cluster, args.workers) as client:
            return find_duplicates_on_cluster(rows, args.threshold, client, source=npy, **opts)
    except ClusterError as exc:
        raise CLIError(str(exc)) from None


def _cmd_dedup(args: argparse.Namespace) -> int:
    from .errors import CLIError
    from mmh_bench.retrieval.neardup import find_duplicates, group_diameters
    from mmh_bench.retrieval.vector_index import prepare_rows
    if not np.isfinite(args.threshold) or args.threshold < 0:
        raise CLIError(f"--threshold must be a distance >= 0, got {args.threshold}")
    mp = args.max_probe
    if mp not in ("auto", "none"):
        try:
            mp = int(mp)
        except ValueError:
            raise CLIError(f"--max-probe must be auto, none or an integer, got {mp!r}") from None
    x, source = load_embeddings(args.path, args.column)
    rows = prepare_rows(x, args.metric)
    opts = dict(linkage=args.linkage, normalized=True, max_probe=None if mp == "none" else mp, seed=args.seed,
                progress=not args.quiet)
    if args.cluster is None and (args.workers or 0) <= 1:
        res = find_duplicates(rows, args.threshold, **opts)
    else:
        res = _on_cluster(args, rows, source, opts)
    groups = res.groups
    diam = group_diameters(rows, groups)
    out = res.to_json(metric=args.metric, source=source,
                      diameters=[round(float(d), 6) for d in diam],
                      chained_groups=int((diam > args.threshold * (1 + 1e-6)).sum()))
    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, dest)
    st = res.stats
    print(f"{out['n_groups']} duplicate groups ({out['rows_in_groups']} rows) among {out['n_rows']} rows "
          f"at threshold {args.threshold:g} ({args.metric}); {out['rows_after_dedup']} rows after "
          f"dedup; certified {st.get('certified_fraction', 1.0):.1%}; wrote {dest}")
    if out["chained_groups"]:
        print(f"note: {out['chained_groups']} groups chain rows farther apart than the threshold "
              "(single linkage); --linkage complete splits them", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser(
        "dedup", help="find exact and near-duplicate groups in a set of embeddings",
        description="Group the rows of PATH (a .npy array of embeddings, or a datasets folder with "
                    "an embedding column) whose distance is at most --threshold, and write the "
                    "groups as JSON. Scales to millions of rows (see mmh_bench.retrieval.neardup).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("path", help=".npy file (n, d) or a folder written by datasets' save_to_disk")
    s.add_argument("--threshold", type=float, required=True,
                   help="largest distance between two rows that still counts as a duplicate")
    s.add_argument("--out", required=True, help="JSON file to write")
    s.add_argument("--metric", choices=["l2", "cosine"], default="l2", help="distance (default: l2)")
    s.add_argument("--column", default=None,
                   help="embedding column of a datasets folder (default: 'embedding' or the only array column)")
    s.add_argument("--linkage", choices=["single", "complete"], default="single",
                   help="single: connected components (default); complete: split so every pair is within T")
    s.add_argument("--max-probe", default="auto",
                   help="cells compared per row above 4096 rows: auto (measured), an integer, or none (exact)")
    s.add_argument("--seed", type=int, default=0, help="seed for k-means and the probe measurement")
    add_options(s, "cluster", "quiet")
    add_options(s, "workers", workers={"help": "without --cluster: split the cell search among a local cluster "
                                                "of N worker processes (default: this process alone)"})
    s.set_defaults(func=_cmd_dedup)
