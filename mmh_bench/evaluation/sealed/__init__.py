"""Sealed evaluation: a detector runs in its own (sandboxed) process that holds only what its
access grants, read from a view folder; labels are joined in the evaluator afterwards.

- :func:`write_view`: the folder (samples; conditions, model, training rows only as granted).
- ``python -m mmh_bench.evaluation.sealed VIEW OUT``: the worker, one self-contained job.
- :func:`run_sealed`: the evaluator's side (view, sandbox, timeout, read back scores and cost).
- :func:`describe_detector`: a detector's metadata read in a sandboxed worker, as a
  :class:`SealedDetector` stand-in, so the evaluator never imports a submitted detector's code.
"""
from .describe import DESCRIBE_TIMEOUT, SealedDetector, describe_detector, standin
from .job import DetectorFailure, PeakMemory, run_job, validate_scores
from .sandbox import (WORKER_ENV, SealedRun, WorkerFailure, hidden_paths, isolation_mode, run_sealed,
                      sandbox_available)
from .view import SealError, detector_ref, write_view

__all__ = ["DESCRIBE_TIMEOUT", "SealedDetector", "describe_detector", "standin", "WORKER_ENV", "DetectorFailure", "PeakMemory", "SealError", "SealedRun", "WorkerFailure",
           "detector_ref", "hidden_paths", "isolation_mode", "run_job", "run_sealed", "sandbox_available",
           "validate_scores", "write_view"]
