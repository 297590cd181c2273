"""The loop both evaluation modes run: ``fit`` once, then ``score`` (or ``estimate``, or a
mitigator's ``generate``) in batches.

It lives here, apart from the evaluator, so a sealed worker imports only what scoring needs
(no metrics, no builders): the worker's start-up time is paid once per (task, detector).
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psutil
import torch

from mmh_bench.api.context import Context
from mmh_bench.api.detector import Batch


class DetectorFailure(RuntimeError):
    """A detector broke the contract (wrong shape, NaN, non-numeric output)."""


class MitigationFailure(DetectorFailure):
    """A mitigator's output cannot be scored (wrong shape, not finite)."""


class PeakMemory:
    """Peak resident memory above the starting level, sampled by a background thread (MB).

    On CUDA the peak allocated device memory is reported separately.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self.device_peak_mb: float | None = None

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._base = self._peak = self._proc.memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = round((self._peak - self._base) / 2**20, 2)
        if torch.cuda.is_available():
            self.device_peak_mb = round(torch.cuda.max_memory_allocated() / 2**20, 2)


def validate_scores(out: Any, n: int, who: str) -> np.ndarray:
    """One finite float per sample, or a :class:`DetectorFailure` saying what is wrong."""
    try:
        arr = np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DetectorFailure(f"{who} returned non-numeric scores ({exc})") from None
    if arr.shape != (n,):
        raise DetectorFailure(f"{who} returned shape {list(arr.shape)}, expected [{n}]")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DetectorFailure(f"{who} returned {int(bad.sum())} NaN/inf value(s) of {n}")
    return arr


def validate_generated(out: Any, shape: tuple[int, ...], who: str) -> np.ndarray:
    """Finished samples of exactly ``shape``, all finite (float32), or a :class:`MitigationFailure`."""
    try:
        arr = np.asarray(out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MitigationFailure(f"{who} returned non-numeric samples ({exc})") from None
    if arr.shape != tuple(shape):
        raise MitigationFailure(f"{who} returned shape {list(arr.shape)}, expected {list(shape)}")
    if not np.isfinite(arr).all():
        raise MitigationFailure(f"{who} returned {int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


def run_job(det: Any, ctx: Context, *, lid: bool = False, generate: bool = False, model: Any, batch_size: int,
            progress: bool = False, desc: str = "") -> tuple[np.ndarray, dict[str, Any]]:
    """Run ``fit`` then ``score`` (``estimate`` when ``lid``; a mitigator's ``generate`` when
    ``generate``) over ``ctx.samples`` in batches (each slice carries what the context's samples
    carry); the scores (or generated samples, one per row of the batch's noise) and the cost.

    ``model`` is the undressed score model behind ``ctx`` (or None): its counters give the cost,
    so network evaluations are counted, not claimed."""
    if model is not None:
        model.reset_counters()
    torch.manual_seed(ctx.seed)
    full = ctx.samples
    n = len(full)
    if generate:
        method = det.generate
        check = lambda out, b: validate_generated(out, b.noise.shape, det.name)  # noqa: E731
    else:
        method = det.estimate if lid else det.score  # type: ignore[attr-defined]
        check = lambda out, b: validate_scores(out, len(b), det.name)  # noqa: E731
    starts: Any = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc or det.name, leave=False, unit="batch")
    parts = []
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        det.fit(ctx)
        for start in starts:
            sl = slice(start, min(start + batch_size, n))
            batch = Batch(x=full.x[sl], cond=None if full.cond is None else full.cond[sl], index=np.arange(n)[sl],
                          noise=None if full.noise is None else full.noise[sl])
            parts.append(check(method(batch, ctx), batch))
    seconds = time.perf_counter() - t0
    cost = {"nfe_per_sample": round(model.evaluations / n, 3) if model is not None else 0.0,
            "jvp_per_sample": round(model.njvp / n, 3) if model is not None else 0.0,
            "seconds": round(seconds, 4), "peak_mb": mem.peak_mb}
    if mem.device_peak_mb is not None:
        cost["device_peak_mb"] = mem.device_peak_mb
    return (np.concatenate(parts) if parts else np.zeros(0)), cost
