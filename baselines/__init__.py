"""Detectors shipped with mmh-bench, written only against the public ``mmh_bench`` API.

They are registered through the ``mmh_bench.detectors`` entry-point group, exactly as a
third-party package would register its own.
"""
