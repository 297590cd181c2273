"""``mmh-bench detectors``: list the registered detectors."""
from __future__ import annotations

import argparse
from typing import Any

from .options import add_options, print_listing


def _cmd_detectors(args: argparse.Namespace) -> int:
    from mmh_bench.registry import all_detectors
    rows = [{"name": name, "access": cls.access.label, "version": cls.version,
             "reference": cls.reference, "lid_estimator": hasattr(cls, "estimate"),
             "cost": cls.cost_note, "source": f"{cls.__module__}:{cls.__qualname__}",
             "summary": (cls.__doc__ or "").strip().split("\n")[0]}
            for name, cls in all_detectors().items()]
    return print_listing(rows, args.json, [[r["name"], r["access"], r["cost"], r["summary"][:70]] for r in rows],
                         ["detector", "access", "cost", "summary"])


def register(sub: Any) -> None:
    s = sub.add_parser("detectors", help="list the registered detectors",
                       description="List detectors registered under the 'mmh_bench.detectors' entry-point group.")
    add_options(s, "json")
    s.set_defaults(func=_cmd_detectors)
