"""Scoring detectors on task instances: the runner, the metrics, set-level statistics (C_T), data-side
LID, provenance, the sealed worker and the conformance checks a submission must pass."""
