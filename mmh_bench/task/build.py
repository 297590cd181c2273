"""spec -> TaskInstance: run the task's builder once, label, check balance, cache by spec hash.

A cached build lives in ``<cache>/<task>/<spec hash>/`` with ``meta.json`` recording the sha256 of
every file; a build whose files do not match is treated as corrupt and rebuilt.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmh_bench.common.ct_statistic import copying_record
from mmh_bench.files import atomic_write_text, load_arrays, save_arrays, sha256_arrays, sha256_file, staged_dir
from mmh_bench.common.cache import default_cache_dir
from mmh_bench.common.targets import load_target
from .build_meta import read_meta
from .instance import TaskInstance, dump_meta
from .build_output import BuildOutput
from .families import all_families
from .instances import SECRET_KINDS, InstanceKey, cache_name, instance_spec
from .labels import LabellingError, check_null_rate, composition, label_samples
from .subtypes import SUBTYPE_CODE
from .spec import TaskSpec

log = logging.getLogger(__name__)


#: what a build folder holds; a cache of another format is rebuilt (2: held-out set and C_T;
#: 3: shuffled rows, chance-tested labels, instance kind)
BUILD_FORMAT = 3


class BuildError(RuntimeError):
    """A task could not be built as its spec promises (e.g. the label balance was not reached)."""


class LabelCheckError(BuildError):
    """A finished build whose labels fail the spec's checks (balance, null copy rate): the model
    and samples exist, so the build keeps them for diagnosis (``kept``: that folder)."""

    kept: Path | None = None


#: where a build that fails its label checks keeps its folder, beside the task's builds
FAILED_PREFIX = "failed-"


#: the ``[model]`` keys a shipped training function takes (those its family's model declares)
TRAINING_KEYS = ("hidden", "depth", "steps", "batch_size", "lr", "p_uncond", "t_power")


def training_options(spec: TaskSpec, progress: bool) -> dict[str, Any]:
    """Keyword arguments for a shipped training function: the training recipe of the spec's
    ``[model]`` (its family's defaults where the spec is silent), plus the task's seed, the
    progress switch and a progress label."""
    m = spec.model.model
    out: dict[str, Any] = {k: getattr(m, k) for k in TRAINING_KEYS if k in type(m).model_fields}
    out.update(seed=spec.seed, progress=progress, desc=f"{spec.name}: training")
    return out


# -- labelling ---------------------------------------------------------------------------------
#: random stream of the row permutation: row order never carries a label
PERMUTATION_STREAM = 104_729


def permute_rows(out: BuildOutput, seed: int) -> np.ndarray:
    """Shuffle the generated samples (and every per-sample array) with a seeded permutation, so
    neither row order nor ``Batch.index`` says anything about how a sample was made."""
    order = np.random.default_rng([seed, PERMUTATION_STREAM]).permutation(len(out.samples))
    out.samples = np.asarray(out.samples)[order]
    if out.cond is not None:
        out.cond = np.asarray(out.cond)[order]
    for key in ("labels", "subtype", "lid_star"):
        if getattr(out, key) is not None:
            setattr(out, key, np.asarray(getattr(out, key))[order])
    out.sample_arrays = {k: np.asarray(v)[order] for k, v in out.sample_arrays.items()}
    return order


def split_dd(subtype: np.ndarray, source: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """DD codes renamed by the designed source of each copy's nearest training row."""
    out = subtype.copy()
    for code, name in names.items():
        out[(subtype == SUBTYPE_CODE["DD"]) & (source == code)] = SUBTYPE_CODE[name]
    return out


def check_balance(spec: TaskSpec, arrays: dict[str, np.ndarray]) -> None:
    """Fail loudly when the built task does not reach the label balance its spec declares."""
    bal = spec.model.balance
    lab = arrays["labels"].astype(bool)
    frac = float(lab.mean()) if len(lab) else 0.0
    lo, hi = bal.min_memorized, bal.max_memorized
    counts = {name: int((arrays["subtype"] == code).sum()) for name, code in SUBTYPE_CODE.items()}
    problems = []
    if not lo <= frac <= hi:
        problems.append(f"memorized fraction {frac:.3f} outside [{lo}, {hi}]")
    min_sub = bal.min_per_subtype
    for sub in bal.require_subtypes:
        if counts[sub] < min_sub:
            problems.append(f"subtype {sub} has {counts[sub]} samples, needs >= {min_sub}")
    if problems:
        raise BuildError(f"task {spec.name!r} did not reach its declared label balance: "
                         + "; ".join(problems) + f" (counts: {counts})")


# -- cache -------------------------------------------------------------------------------------
def _verify(root: Path) -> dict[str, Any] | None:
    """Return the meta of a complete, uncorrupted build, else None."""
    try:
        meta = json.loads((root / "meta.json").read_text())
        for rel, digest in read_meta(meta).files.items():
            if sha256_file(root / rel) != digest:
                log.warning("cache file %s is corrupt (checksum mismatch); rebuilding", root / rel)
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if (root / "meta.json").exists():
            log.warning("cached build %s is unreadable (%s); rebuilding", root, exc)
        return None


def load_instance(spec: TaskSpec, root: Path) -> TaskInstance | None:
    meta = _verify(root)
    if meta is None:
        return None
    record = read_meta(meta)
    if record.build_format != BUILD_FORMAT:
        log.warning("cached build %s was made by an older mmh-bench (format %s, now %s); rebuilding",
                    root, record.build_format, BUILD_FORMAT)
        return None
    arrays = load_arrays(root / "instance.npz")
    if sha256_arrays(arrays) != record.data_hash:
        log.warning("cached arrays in %s do not match their data hash; rebuilding", root)
        return None
    return TaskInstance(spec=spec, arrays=arrays, meta=meta, root=root)


def cached_task(spec: TaskSpec, cache_dir: str | Path | None = None, *,
                instance: InstanceKey | None = None) -> TaskInstance | None:
    """The cached, intact build of the task (the dev instance by default), else None (no build)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache / spec.name / cache_name(spec, instance)
    return load_instance(spec, root) if (root / "meta.json").exists() else None


def build_task(spec: TaskSpec, cache_dir: str | Path | None = None, *, instance: InstanceKey | None = None,
               force: bool = False, progress: bool = True) -> TaskInstance:
    """Return the instance of the task (the dev instance by default), building it (and caching it
    atomically) when needed."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache / spec.name / cache_name(spec, instance)
    inst = None if force else cached_task(spec, cache_dir, instance=instance)
    if inst is not None:
        return inst
    if spec.builder not in all_families():
        raise BuildError(f"task {spec.name!r}: unknown builder {spec.builder!r}; known: {sorted(all_families())}")
    with staged_dir(root) as work:
        t0 = time.perf_counter()
        try:
            meta, arrays = _build(instance_spec(spec, instance), work, progress)
        except LabelCheckError as exc:
            exc.kept = _keep_failed(work, root, exc, time.perf_counter() - t0)
            raise
        meta["build_seconds"] = round(time.perf_counter() - t0, 2)
        if instance is not None and instance.kind in SECRET_KINDS:
            meta["instance_replicate"] = instance.replicate
            meta["instance_kind"] = instance.kind
        meta["data_hash"] = sha256_arrays(arrays)
        save_arrays(work / "instance.npz", arrays)
        meta["files"] = {str(p.relative_to(work)): sha256_file(p)
                         for p in sorted(work.rglob("*")) if p.is_file()}
        atomic_write_text(work / "meta.json", dump_meta(meta))
    inst = load_instance(spec, root)
    assert inst is not None
    return inst


def _keep_failed(work: Path, root: Path, exc: BuildError, seconds: float) -> Path:
    """Move a build that failed its label checks to ``failed-<name>`` beside ``root`` (replacing an
    older one), with the reason: a long training run is not thrown away, and its samples say why."""
    target = root.parent / f"{FAILED_PREFIX}{root.name}"
    atomic_write_text(work / "failed.json", dump_meta({"error": str(exc), "build_seconds": round(seconds, 2)}))
    if target.exists():
        shutil.rmtree(target)
    os.replace(work, target)  # a move, not a copy: the staged folder is discarded after this anyway
    log.warning("kept the failed build in %s for diagnosis (samples, labels, model)", target)
    return target


def _checked_labels(spec: TaskSpec, work: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                    problem: str | None) -> None:
    """Fail with the build's arrays and meta saved in ``work`` when the labels fail the spec's checks."""
    try:
        check_balance(spec, arrays)
        if problem:
            raise BuildError(problem)
    except BuildError as exc:
        save_arrays(work / "instance.npz", arrays)
        atomic_write_text(work / "meta.json", dump_meta(meta))
        raise LabelCheckError(str(exc)) from None


def _build(spec: TaskSpec, work: Path, progress: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the builder, shuffle rows, label, check, and assemble the arrays and meta of one build."""
    out = load_target(all_families()[spec.builder].builder)(spec, work, progress)
    permute_rows(out, spec.seed)
    arrays: dict[str, np.ndarray] = {"samples": np.asarray(out.samples, dtype=np.float32)}
    meta: dict[str, Any] = {"task": spec.name, "version": spec.version, "spec_hash": spec.hash,
                            "instance_kind": spec.instance, "model": out.model, **out.extra_meta}
    if out.train is not None:
        arrays["train"] = np.asarray(out.train, dtype=np.float32)
        arrays["train_lid"] = np.asarray(out.train_lid, dtype=np.float32)
    for key in ("cond", "train_cond"):
        if getattr(out, key) is not None:
            arrays[key] = np.asarray(getattr(out, key))
    if spec.track == "memorization" and out.labels is not None:
        arrays["labels"] = np.asarray(out.labels, dtype=np.int8)
        arrays["subtype"] = (np.asarray(out.subtype, dtype=np.int8) if out.subtype is not None
                             else np.zeros_like(arrays["labels"]))  # subtype unknown
        check_balance(spec, arrays)
    elif spec.track == "memorization":
        labels_cfg = spec.model.labels
        try:
            lab = label_samples(arrays["samples"], arrays["train"], arrays["train_lid"], labels_cfg,
                                null_draws=out.null_draws, null_check=out.null_check,
                                train_source=out.train_source, scale=out.label_scale)
        except LabellingError as exc:
            raise BuildError(f"task {spec.name!r}: {exc}") from None
        arrays.update(lab.arrays)
        if out.dd_subtype_of_source:
            arrays["subtype"] = split_dd(arrays["subtype"], arrays["source"], out.dd_subtype_of_source)
        meta["dedup_tol"] = labels_cfg.dedup_tol * out.label_scale
        meta["n_train_dedup"] = len(lab.index)
        meta["labelling"] = lab.stats
        meta["null_copy_rate"] = lab.stats.get("null_copy_rate")
        if out.source_names is not None:
            meta["source_names"] = list(out.source_names)
            meta["composition"] = composition(arrays, out.source_names)
        _checked_labels(spec, work, {**arrays, **out.sample_arrays, **out.extra_arrays}, meta,
                        check_null_rate(spec.name, lab.stats, float(arrays["labels"].mean())))
    else:
        if out.lid_star is None:
            raise BuildError(f"LID task {spec.name!r}: builder gave no lid_star")
        arrays["lid_star"] = np.asarray(out.lid_star, dtype=np.float32)
    if out.heldout is not None and "labels" in arrays and len(out.heldout):
        arrays["heldout"] = np.asarray(out.heldout, dtype=np.float32)
        # k-means cells seeded from the published rows, never from the (secret) instance seed, so
        # every published figure recomputes from published data (ct_statistic.instance_ct)
        meta["copying"] = copying_record(arrays)
    arrays.update(out.sample_arrays)
    arrays.update(out.extra_arrays)
    meta["build_format"] = BUILD_FORMAT
    return meta, arrays
