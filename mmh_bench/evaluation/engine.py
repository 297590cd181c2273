"""The parallel engine: a run's builds and (instance, detector) pairs as tasks on a Dask cluster.

Why Dask distributed: it is pure Python and installs with pip; a ``LocalCluster`` runs in-process
on a laptop or in CI, the same code reaches a real cluster through a scheduler address, and worker
*resources* (``dask worker ADDR --resources GPU=1``) keep GPU work on GPU machines. Its scheduler
reschedules the tasks of a worker that dies; nothing here schedules by hand. See docs/ENGINE.md.

Every track runs the same way (:class:`~mmh_bench.evaluation.track.Track`): detection, LID
estimation and mitigation plan, judge, score and record their pairs through one grid.

Phase 1 resolves each task's instances on the workers (pulled and verified, or built into the
cache; instances this machine's cache holds already are judged here, so a run with every result
current starts no cluster); phase 2 runs every pair's
:meth:`Track.evaluate <mmh_bench.evaluation.track.Track.evaluate>` on a worker, which returns the typed result. Only this process (the driver) writes results, each once and
atomically, so a worker that dies mid-pair leaves no file behind, and pairs whose result is current
are skipped before anything is submitted, as in the serial run. The instance a pair needs is read
from the cache on its worker: the cache folder must be one that every worker can reach (a local
cluster shares this machine's; a worker that cannot see it rebuilds the identical instance).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator

from mmh_bench.registry import needs_gpu
from mmh_bench.task.instance import TaskInstance
from mmh_bench.task.fresh import FreshPool
from mmh_bench.task.publish import DEFAULT_INSTANCES
from mmh_bench.task.spec import TaskSpec
from mmh_bench.threads import WORKER_CORES_ENV, cores_given, limited_threads, task_cores
from .detection import DEFAULT_BATCH
from .runner import GridPlan, fill_fresh, plan_grid, pool_roots, run_instances, run_plan, task_instances
from .track import GridReport, Track

log = logging.getLogger(__name__)

#: seconds to wait for a scheduler given by address before giving up (exit status 2 in the CLI)
CONNECT_TIMEOUT = 10
#: a task whose worker dies is rescheduled; after this many deaths it is abandoned (KilledWorker)
#: and the pair is recorded as failed: one out-of-memory kill is survived, a pair that kills
#: every worker it lands on does not take the whole cluster down one worker at a time
ALLOWED_FAILURES = 2
#: seconds without any worker on the cluster after which a run stops instead of waiting forever
NO_WORKER_GRACE = 120
#: the worker resource that marks a GPU (``dask worker ADDR --resources GPU=1``)
GPU = "GPU"
#: instance lists a worker keeps loaded (pairs of one instance mostly follow each other)
KEEP_LOADED = 2


#: environment of local workers. Dask's default also sets ``MALLOC_TRIM_THRESHOLD_``, and setting it
#: turns off glibc's adaptive mmap threshold: every tensor above 128 KiB is then mapped and unmapped
#: afresh, and scoring an image task took twice the time (half of it in the kernel, page faults)
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


class ClusterError(RuntimeError):
    """The cluster cannot be reached or cannot serve the run (one line, for the command line)."""


#: fewest cores on which a run goes to a local cluster by default: on 2 cores the default suite
#: ran cold in 386 s on 2 workers against 621 s serially (benchmarks/results/engine_speedup.md)
MIN_CLUSTER_CORES = 2
#: environment variable that fixes the default number of local workers (1: serial)
WORKERS_ENV = "MMH_BENCH_WORKERS"


def default_workers(n_pairs: int, cores: int | None = None) -> int:
    """Local workers for a run of ``n_pairs`` planned pairs: ``$MMH_BENCH_WORKERS`` when set, else
    one per core (one thread each) when there are at least :data:`MIN_CLUSTER_CORES` cores and
    more than one pair; 1 (serial, in this process) otherwise."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit():
            raise ValueError(f"${WORKERS_ENV} must be a whole number of workers, got {env!r}")
        return max(1, int(env))
    cores = cores or cores_given()
    return cores if cores >= MIN_CLUSTER_CORES and n_pairs > 1 else 1


def _gpus_here() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextlib.contextmanager
def cluster_client(address: str | None = None, workers: int | None = None, *,
                   gpu: bool = False) -> Iterator[Any]:
    """A Dask client: connected to the scheduler at ``address``, or to a fresh local cluster of
    ``workers`` processes with one thread each (the first one offers the GPU resource when ``gpu``
    and this machine has CUDA). Closed, with the local cluster, when the block ends."""
    import importlib
    importlib.import_module("distributed")  # importing it sets its loggers' levels: quieten them after
    quiet = logging.getLogger("distributed")  # its INFO chatter (connections, closing) unless -v
    old_level = quiet.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        quiet.setLevel(logging.WARNING)
    try:
        with _client(address, workers, gpu) as client:
            yield client
    finally:
        quiet.setLevel(old_level)


@contextlib.contextmanager
def _client(address: str | None, workers: int | None, gpu: bool) -> Iterator[Any]:
    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                          "distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}):
        if address:
            try:
                client = Client(address, timeout=f"{CONNECT_TIMEOUT}s")
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT} s "
                                   f"({type(exc).__name__}); start one with `dask scheduler` or drop "
                                   "--cluster to run on this machine") from None
            try:
                yield client
            finally:
                client.close()
            return
        n = max(1, int(workers or default_workers(2)))
        cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR,
                               env={WORKER_CORES_ENV: str(max(1, cores_given() // n))})
        try:
            proto = cluster.new_spec
            for i in range(n):
                opts = dict(proto["options"])
                if i == 0 and gpu and _gpus_here():
                    opts["resources"] = {GPU: 1}
                cluster.worker_spec[i] = {"cls": proto["cls"], "options": opts}
            cluster.scale(n)
            client = Client(cluster)
            try:
                client.wait_for_workers(n, timeout=120)
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


def _gpu_workers(client: Any) -> int:
    return sum(1 for w in client.scheduler_info()["workers"].values() if (w.get("resources") or {}).get(GPU))


# -- worker side ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class InstanceRef:
    """What the driver needs of an instance resolved on a worker (the arrays stay there).
    ``source``: the spec that was resolved (None: the instance was given, and a worker loads it
    from ``root``)."""
    spec: TaskSpec  # the instance's own spec (a pulled test instance names its kind)
    source: TaskSpec | None
    root: str | None
    data_hash: str
    info: dict[str, Any]
    why_not: dict[str, str | None]
    n_samples: int

    def instance_info(self) -> dict[str, Any]:
        return self.info


_LOADED: OrderedDict[tuple[str, ...], list[TaskInstance]] = OrderedDict()
_BY_HASH: OrderedDict[str, TaskInstance] = OrderedDict()


def _instances(track: Track, spec: TaskSpec, cache_dir: str | None, published: Any, model_override: Any, *,
               build: bool = True) -> list[TaskInstance]:
    """The task's instances in this process (:func:`~.runner.task_instances`), resolved once and
    kept for the pairs that follow (``build=False``: only what the cache holds already, else [])."""
    key = (type(track).__name__, spec.hash, str(spec.path), str(cache_dir), str(published))
    if key not in _LOADED:
        insts = task_instances(track, spec, cache_dir, published, model_override=model_override, build=build)
        if not insts:
            return []
        _keep(_LOADED, key, insts)
    return _recall(_LOADED, key)


def _keep(store: OrderedDict, key: Any, value: Any) -> None:
    """Remember ``value`` in this worker, forgetting the least recently used beyond :data:`KEEP_LOADED`."""
    store[key] = value
    while len(store) > KEEP_LOADED:
        store.popitem(last=False)


def _recall(store: OrderedDict, key: Any) -> Any:
    store.move_to_end(key)
    return store[key]


def _loaded(spec: TaskSpec, root: str, data_hash: str) -> TaskInstance:
    """The instance installed at ``root`` in this process, verified against its data hash once."""
    if data_hash not in _BY_HASH:
        from mmh_bench.task.build import load_instance
        inst = load_instance(spec, Path(root))
        if inst is None or inst.data_hash != data_hash:
            raise RuntimeError(f"{spec.name}: instance {data_hash[:16]} is not intact at {root}")
        _keep(_BY_HASH, data_hash, inst)
    return _recall(_BY_HASH, data_hash)


def _instance(track: Track, ref: InstanceRef, cache_dir: str | None, published: Any,
              model_override: Any) -> TaskInstance:
    if ref.source is None:
        return _loaded(ref.spec, str(ref.root), ref.data_hash)
    for inst in _instances(track, ref.source, cache_dir, published, model_override):
        if inst.data_hash == ref.data_hash:
            return inst
    raise RuntimeError(f"{ref.spec.name}: instance {ref.data_hash[:16]} is not in the cache {cache_dir} "
                       "any more, nor could it be rebuilt identically")


def _refs(track: Track, spec: TaskSpec | None, candidates: list[Any], insts: list[TaskInstance]) -> list[InstanceRef]:
    return [InstanceRef(inst.spec, spec, None if inst.root is None else str(inst.root), inst.data_hash,
                        inst.instance_info(), {track.result_name(d): track.why_not(d, inst) for d in candidates},
                        inst.n_samples)
            for inst in insts]


def _resolve_task(track: Track, spec: TaskSpec, candidates: list[Any], cache_dir: str | None, published: Any,
                  model_override: Any, context: Callable[[], ContextManager[Any]]) -> list[InstanceRef]:
    """Phase 1, on a worker: build or pull the task's instances and judge each candidate on them."""
    with context(), limited_threads(task_cores()):
        return _refs(track, spec, candidates, _instances(track, spec, cache_dir, published, model_override))


def _run_pair(track: Track, ref: InstanceRef, proto: Any, opts: dict[str, Any], cache_dir: str | None,
              published: Any, model_override: Any, context: Callable[[], ContextManager[Any]]) -> Any:
    """Phase 2, on a worker: one pair's typed result (written by the driver)."""
    with context(), limited_threads(task_cores()):
        inst = _instance(track, ref, cache_dir, published, model_override)
        return track.evaluate(inst, proto.clone(), **opts)


# -- driver side ---------------------------------------------------------------------------------
def _absolute(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def evaluate_parallel(tasks: str | Iterable[str | TaskSpec], detectors: str | Iterable[Any],
                      results_dir: str | Path, *, cluster: str | None = None, workers: int | None = None,
                      context: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                      cache_dir: str | Path | None = None, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                      force: bool = False, progress: bool = True, model_override: Any = None,
                      isolation: str = "auto", timeout: float | None = None, threads: int = 1,
                      instances: str | Path | FreshPool | None = DEFAULT_INSTANCES) -> GridReport:
    """:func:`~mmh_bench.evaluation.runner.evaluate` on a Dask cluster: the scheduler at ``cluster``,
    else a local cluster of ``workers`` processes (``None``: :func:`default_workers`; 0 or 1 with no
    ``cluster``: the serial run in this process). ``context``: a picklable callable whose context
    wraps all work on a worker (the CLI's ``--model``). Same results, metrics included, as serial."""
    plan = plan_grid(tasks, detectors, isolation=isolation, hide=[cache_dir, results_dir])
    return run_grid(plan, results_dir, cluster=cluster, workers=workers, context=context, cache_dir=cache_dir,
                    seed=seed, batch_size=batch_size, force=force, progress=progress,
                    model_override=model_override, isolation=isolation, timeout=timeout, threads=threads,
                    instances=instances)


def run_grid(plan: GridPlan, results_dir: str | Path, *, cluster: str | None = None, workers: int | None = None,
             context: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
             cache_dir: str | Path | None = None, seed: int = 0, batch_size: int = DEFAULT_BATCH,
             force: bool = False, progress: bool = True, model_override: Any = None, isolation: str = "auto",
             timeout: float | None = None, threads: int = 1,
             instances: str | Path | FreshPool | None = DEFAULT_INSTANCES,
             hide: Iterable[str | Path | None] = ()) -> GridReport:
    """A planned grid of any track, serially here or on a cluster (see :func:`evaluate_parallel`)."""
    n = default_workers(plan.n_pairs) if workers is None else workers
    if cluster is None and n <= 1 or not plan.tasks:  # serial: everything here, in plan order
        with context():
            return run_plan(plan, results_dir, cache_dir=cache_dir, seed=seed, batch_size=batch_size, force=force,
                            progress=progress, model_override=model_override, isolation=isolation,
                            timeout=timeout, threads=threads, instances=instances, hide=hide)
    hide = [_absolute(cache_dir), _absolute(results_dir), *pool_roots(instances), *map(_absolute, hide)]
    opts = dict(seed=seed, batch_size=batch_size, isolation=isolation, timeout=timeout, threads=threads, hide=hide)
    published = instances if isinstance(instances, FreshPool) else _absolute(instances)
    shared = (_absolute(cache_dir), published, model_override, context)
    with context():  # the driver too may load a model (a failed pair's record) or run serially
        fill_fresh(plan, instances, progress=progress)  # held-out builds stay in this process
        grid = _Grid(plan.track, plan.report, Path(results_dir), shared, opts, force=force, progress=progress)
        for spec, candidates in plan.tasks:
            grid.plan_task(spec, candidates)
        return grid.run(cluster, n, gpu=any(needs_gpu(spec) for spec, _ in plan.tasks))


def run_instances_parallel(track: Track, work: list[tuple[TaskInstance, list[Any]]], results_dir: str | Path,
                           report: GridReport, *, force: bool, progress: bool, opts: dict[str, Any],
                           workers: int | None = 1, cluster: str | None = None) -> GridReport:
    """Given instances' pairs (each with its candidates), on a cluster where its workers can load
    the instance from its folder, else here (:func:`~.runner.run_instances`)."""
    n = default_workers(sum(len(c) for _, c in work)) if workers is None else workers
    if cluster is None and n <= 1:
        return run_instances(track, work, results_dir, report, force=force, progress=progress, opts=opts)
    opts = {**opts, "hide": [_absolute(h) for h in opts.get("hide", ())]}
    grid = _Grid(track, report, Path(results_dir), (None, None, None, contextlib.nullcontext), opts,
                 force=force, progress=progress)
    for inst, candidates in work:
        grid.here([inst], candidates) if track.runs_here(inst) else grid.queue([inst], None, candidates)
    return grid.run(cluster, n)


class _Grid:
    """One run's pairs: those that must run here, those queued for the cluster with their instance
    known, and the tasks whose instances phase 1 resolves on a worker first; results are written
    here as they arrive."""

    def __init__(self, track: Track, report: GridReport, results_dir: Path, shared: tuple[Any, ...],
                 opts: dict[str, Any], *, force: bool, progress: bool) -> None:
        self.track, self.report, self.results_dir = track, report, results_dir
        self.shared, self.opts, self.force, self.progress = shared, opts, force, progress
        self.pending: dict[Any, tuple[Any, ...]] = {}
        self.errors: list[BaseException] = []
        self.to_resolve: list[tuple[TaskSpec, list[Any]]] = []
        self.to_run: list[tuple[TaskSpec, InstanceRef, Any, Path]] = []
        self.local: list[tuple[TaskInstance, list[Any]]] = []

    def here(self, insts: list[TaskInstance], candidates: list[Any]) -> None:
        """Run these instances' pairs in this process."""
        self.local += [(inst, candidates) for inst in insts]

    def queue(self, insts: list[TaskInstance], spec: TaskSpec | None, candidates: list[Any]) -> None:
        """Judge these instances' pairs here and queue them for the cluster."""
        for ref in _refs(self.track, spec, candidates, insts):
            self.to_run += [(ref.spec, ref, *pair) for pair in self._pairs(ref, candidates)]

    def plan_task(self, spec: TaskSpec, candidates: list[Any]) -> None:
        """Judge here a task whose instances this machine's cache holds already (not a GPU one:
        its model would load here), as the serial run would; else leave it to phase 1."""
        insts = [] if needs_gpu(spec) else _instances(self.track, spec, *self.shared[:3], build=False)
        here = [inst for inst in insts if self.track.runs_here(inst)]
        self.here(here, candidates)
        if not insts:
            self.to_resolve.append((spec, candidates))
        self.queue([inst for inst in insts if inst not in here], spec, candidates)

    def _pairs(self, ref: InstanceRef, candidates: list[Any]) -> list[tuple[Any, Path]]:
        return self.track.pairs(ref, candidates, self.results_dir, self.report, force=self.force, why_not=ref.why_not)

    def run(self, cluster: str | None, workers: int, *, gpu: bool = False) -> GridReport:
        run_instances(self.track, self.local, self.results_dir, self.report, force=self.force,
                      progress=self.progress, opts=self.opts)
        if self.to_resolve or self.to_run:  # all current or all here: no cluster to start
            with cluster_client(cluster, workers, gpu=gpu) as client:
                if self.progress:
                    print(f"engine: {len(client.scheduler_info()['workers'])} workers at "
                          f"{client.scheduler.address}", file=sys.stderr)
                self._run(client)
        if self.errors:
            raise self.errors[0]
        return self.report.sort()

    def _resources(self, spec: TaskSpec) -> dict[str, int] | None:
        if not needs_gpu(spec):
            return None
        if self.gpu:
            return {GPU: 1}
        if self.client.cluster is None:  # a remote cluster without GPU workers would wait forever
            raise ClusterError(f"task {spec.name} needs a GPU, and no worker of the cluster offers one: "
                               f"start one with `dask worker ADDRESS --resources {GPU}=1`")
        return None  # a local cluster on a machine without CUDA runs it on the CPU, as serially

    def _run(self, client: Any) -> None:
        self.client, self.gpu = client, _gpu_workers(client) > 0
        for spec, candidates in self.to_resolve:
            fut = client.submit(_resolve_task, self.track, spec, candidates, *self.shared, pure=False,
                                resources=self._resources(spec))
            self.pending[fut] = ("resolve", spec, candidates)
        for spec, ref, proto, path in self.to_run:
            self._submit(spec, ref, proto, path)
        self._drain()

    def _submit(self, spec: TaskSpec, ref: InstanceRef, proto: Any, path: Path) -> None:
        pair = self.client.submit(_run_pair, self.track, ref, proto, self.opts, *self.shared, pure=False,
                                  resources=self._resources(spec))
        self.pending[pair] = ("pair", ref, proto, path)

    def _drain(self) -> None:
        from distributed import wait
        lonely_since = None
        while self.pending:
            try:
                done = wait(list(self.pending), timeout=10, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            for fut in done:
                self._finish(fut, *self.pending.pop(fut))
            if done or self.client.scheduler_info()["workers"]:
                lonely_since = None
            elif lonely_since is None:
                lonely_since = time.monotonic()
            elif time.monotonic() - lonely_since > NO_WORKER_GRACE:
                raise ClusterError(f"no worker left on the cluster for {NO_WORKER_GRACE} s; "
                                   f"{len(self.pending)} tasks unfinished (finished results are saved)")

    def _finish(self, fut: Any, kind: str, *what: Any) -> None:
        if kind == "resolve":
            spec, candidates = what
            try:
                refs = fut.result()
            except Exception as exc:  # a build error: the other tasks finish, then it is raised
                self.errors.append(exc)
                return
            for ref in refs:
                for proto, path in self._pairs(ref, candidates):
                    self._submit(spec, ref, proto, path)
            return
        ref, proto, path = what
        try:
            res = fut.result()
        except Exception as exc:  # the worker died ALLOWED_FAILURES + 1 times, or the task broke
            log.debug("pair %s / %s failed on the cluster", ref.spec.name, proto.name, exc_info=True)
            try:
                res = self.track.failed(_instance(self.track, ref, *self.shared[:3]), proto.clone(),
                                        f"worker failure: {type(exc).__name__}: {exc}", seed=self.opts["seed"],
                                        isolation=self.opts["isolation"])
            except Exception as again:  # not even the record can be made: said at the end
                self.errors.append(again)
                return
        self.track.record(self.report, path, res, progress=self.progress)
