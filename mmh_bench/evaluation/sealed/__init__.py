"""Sealed evaluation: a detector runs in its own (sandboxed) process that holds only what its
access grants, read from a view folder; labels are joined in the evaluator afterwards.

- :func:`write_view`: the folder (samples; conditions, model, training rows only as granted).
- ``python -m mmh_bench.evaluation.sealed VIEW OUT``: the worker, one self-contained job.
- :func:`run_sealed`: the evaluator's side (view, sandbox, timeout, read back scores and cost).
- :func:`describe_detector`: a detector's metadata read in a sandboxed worker, as a
  :class:`SealedDetector` stand-in, so the evaluator never imports a submitted detector's code.

Mitigators take the same path: their view holds the initial noises (not the task's generations),
the worker runs their ``generate`` in the same loop and writes the generated samples, which the
evaluator labels; :class:`SealedMitigator` is their stand-in.
"""
from .describe import DESCRIBE_TIMEOUT, describe_detector
from .standin import SealedDetector, SealedMitigator, StandIn, standin
from .job import DetectorFailure, MitigationFailure, PeakMemory, run_job, validate_generated, validate_scores
from .process import WORKER_ENV, WorkerFailure
from .sandbox import SealedRun, hidden_paths, isolation_mode, run_sealed
from .selftest import sandbox_available
from .view import SealError, detector_ref, granted, kind_of, write_view

__all__ = ["DESCRIBE_TIMEOUT", "SealedDetector", "SealedMitigator", "StandIn", "describe_detector", "standin",
           "WORKER_ENV", "DetectorFailure", "MitigationFailure", "PeakMemory", "SealError", "SealedRun",
           "WorkerFailure", "detector_ref", "granted", "hidden_paths", "isolation_mode", "kind_of", "run_job",
           "run_sealed", "sandbox_available", "validate_generated", "validate_scores", "write_view"]
