"""Scoring entries on task instances, for every track: the track protocol and its runner and engine,
the metrics, data-side LID, the sealed worker and the conformance checks a submission must pass."""
