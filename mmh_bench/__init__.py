"""mmh-bench: a protocol-controlled benchmark for memorization detection in generative models.

A few lines to score a detector of your own (copies of one training point crowd together)::

    import mmh_bench as mb
    from scipy.spatial import cKDTree
    class Crowding(mb.Detector):
        name, access = "crowding", mb.Access.SAMPLES
        def fit(self, ctx): self.tree_ = cKDTree(ctx.samples.x)
        def score(self, batch, ctx): return -self.tree_.query(batch.x, k=2)[0][:, 1]
    if __name__ == "__main__":  # detectors run sealed: the worker imports this file
        mb.evaluate("mmh-toy", [Crowding()], "results/")
"""
from __future__ import annotations

from .api.access import Access
from .api.context import AccessError, Context, TaskInfo
from .api.detector import Batch, Detector, LIDEstimator
from .api.score_model import ScoreModel

__version__ = "0.1.0"


def __getattr__(name: str):
    # Heavy parts (FAISS, builders, evaluator) load on first use, so `import mmh_bench` stays light
    # for detector modules that only need the contract.
    lazy = {
        "evaluate": ("evaluation.runner", "evaluate"),
        "evaluate_pair": ("evaluation.runner", "evaluate_pair"),
        "build_task": ("task.build", "build_task"),
        "get_task": ("registry", "get_task"),
        "resolve_tasks": ("registry", "resolve_tasks"),
        "make_detector": ("registry", "make_detector"),
        "TrainIndex": ("retrieval.train_index", "TrainIndex"),
        "TaskInstance": ("task.instance", "TaskInstance"),
    }
    if name in lazy:
        import importlib
        mod_name, attr = lazy[name]
        module = importlib.import_module(f".{mod_name}", __name__)
        return getattr(module, attr)
    raise AttributeError(f"module 'mmh_bench' has no attribute {name!r}")


__all__ = ["Access", "AccessError", "Batch", "Context", "Detector", "LIDEstimator", "ScoreModel",
           "TaskInfo", "evaluate", "evaluate_pair", "build_task", "get_task", "resolve_tasks",
           "make_detector", "TrainIndex", "TaskInstance", "__version__"]
