"""Where a number came from: versions, hardware, seed, spec and data hashes, date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
from functools import lru_cache
from importlib import metadata
from typing import Any

PACKAGES = ("mmh-bench", "numpy", "scipy", "torch", "faiss-cpu", "scikit-learn", "diffusers",
            "datasets", "scikit-dimension")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    out: dict[str, Any] = {"machine": platform.machine(), "system": platform.system(),
                           "cpu_count": os.cpu_count() or 0, "accelerator": "none"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    out["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        out["cpu"] = platform.processor() or "unknown"
    try:
        import torch
        if torch.cuda.is_available():
            out["accelerator"] = torch.cuda.get_device_name(0)
        out["torch_threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover - torch is a hard dependency
        pass
    return out


def hardware_label(hw: dict[str, Any]) -> str:
    acc = hw.get("accelerator", "none")
    base = f"{hw.get('cpu', 'cpu')} x{hw.get('cpu_count', '?')}"
    return base if acc in ("none", "", None) else f"{acc} + {base}"


def provenance(*, seed: int, spec_hash: str, data_hash: str) -> dict[str, Any]:
    return {"mmh_bench_version": package_versions().get("mmh-bench", "unknown"),
            "packages": package_versions(), "hardware": hardware(), "seed": int(seed),
            "spec_hash": spec_hash, "data_hash": data_hash,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
