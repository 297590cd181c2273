"""Task instances as publishable data.

A task is really a task *instance*: models trained on different CPUs differ, so the board's
numbers belong to one set of bytes, named by its data hash. ``publish_instance`` writes an
instance as a self-describing folder (Arrow datasets, the model files as built, the spec, a
dataset card and ``instance.json`` with every file's sha256); ``pull_instance`` checks such a
folder, local or a Hugging Face Hub dataset, and installs it into the build cache as
``<cache>/<task>/instances/<data hash[:16]>/`` in the layout of a build folder, so anyone
evaluates on the very bytes the board was measured on.

Published layout::

    instance.json   identity, array manifest (dtype, shape, where), per-file sha256, meta
    README.md       dataset card
    spec.toml       the task spec, as text
    samples/ train/ heldout/   ``datasets.Dataset.save_to_disk`` folders, one row per first-axis index
    arrays/NAME.npy arrays that fit no row set (or no Arrow type)
    model/...       the build's model files, copied byte for byte

Longer than ~400 lines: writing, verifying and installing an instance share one file format and
its checks, which are safer read together than split across modules.

Longer than ~400 lines: writing, verifying, pulling and resolving published instances share one
file layout and one checksum list; kept together so the format lives in one place.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import tomllib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np

from mmh_bench.common.provenance import package_versions
from mmh_bench.files import atomic_write_text, save_arrays, sha256_arrays, sha256_file, staged_dir
from .fresh import FreshPool, pool_instances
from .build_meta import ModelRecord
from .build import BUILD_FORMAT, build_task, cached_task, default_cache_dir, load_instance
from .instance import TaskInstance, dump_meta
from .spec import SpecError, TaskSpec, parse_spec

log = logging.getLogger(__name__)

FORMAT = "mmh-bench-instance"
FORMAT_VERSION = 1
INSTANCE_FILE = "instance.json"
CARD_FILE = "README.md"
SPEC_FILE = "spec.toml"
ARRAYS_DIR = "arrays"
#: Arrow datasets, in the order an unprefixed array of matching length is placed
ROW_SETS = ("samples", "train", "heldout")
#: build files that are re-encoded (arrays) or rewritten (meta) rather than copied
_REWRITTEN = ("instance.npz", "meta.json")
_RESERVED = {INSTANCE_FILE, CARD_FILE, SPEC_FILE, ARRAYS_DIR, *ROW_SETS}
#: dtype kinds Arrow stores bit-exactly: bool, signed/unsigned int, float, bytes, unicode
_ARROW_KINDS = set("biufSU")
#: meta keys never published; a test instance's placement must stay secret
_SECRET_KEYS = {"secret", "instance_seed"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


class PublishError(ValueError):
    """A published instance cannot be written, or is missing, incomplete or altered."""


# -- helpers ------------------------------------------------------------------------------------
def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _seal(body: dict[str, Any]) -> str:
    """``instance.json`` text carrying the sha256 of its own canonical body, so a changed byte
    anywhere in it (even whitespace) is caught without a second file."""
    return dump_meta({**body, "self_sha256": _text_sha256(dump_meta(body))})


def _unseal(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        obj = json.loads(text)
        body = {k: v for k, v in obj.items() if k != "self_sha256"}
    except FileNotFoundError:
        raise PublishError(f"{path.parent}: no {INSTANCE_FILE}; not a published mmh-bench instance") from None
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise PublishError(f"{path}: unreadable ({type(exc).__name__}); the file is corrupt") from None
    missing = {"task", "spec_hash", "data_hash", "instance_kind", "arrays", "meta", "files"} - body.keys()
    if missing:
        raise PublishError(f"{path}: lacks {sorted(missing)}; not a complete instance record")
    if text != _seal(body):
        raise PublishError(f"{path}: checksum mismatch; the file was altered or corrupted")
    model = _model_record(body["meta"])
    for rel in [*body["files"], *(m["in"] for m in body["arrays"].values()), model.path if model else "."]:
        if not _inside(rel):
            raise PublishError(f"{path}: names {rel!r}, a path outside the instance folder")
    if body.get("format") != FORMAT or body.get("format_version") != FORMAT_VERSION:
        raise PublishError(f"{path}: format {body.get('format')!r} v{body.get('format_version')} "
                           f"is not {FORMAT!r} v{FORMAT_VERSION}")
    return body


def _inside(rel: str) -> bool:
    """Whether a path recorded in ``instance.json`` stays inside the folder (no ``..``, not absolute)."""
    pure = PurePosixPath(rel)
    return not pure.is_absolute() and ".." not in pure.parts and "\\" not in rel


def _public_meta(meta: dict[str, Any], kind: str) -> dict[str, Any]:
    """The build meta minus file checksums (re-made on install) and secrets; a test instance
    also loses any ``seed`` its builder forgot to remove."""
    drop = _SECRET_KEYS | ({"seed"} if kind == "test" else set())

    def clean(obj: Any, where: str) -> Any:
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                if key in drop or "secret" in str(key).lower():
                    log.warning("not publishing meta key %s%s", where, key)
                    continue
                out[key] = clean(value, f"{where}{key}.")
            return out
        if isinstance(obj, list):
            return [clean(v, where) for v in obj]
        return obj

    return clean({k: v for k, v in meta.items() if k not in ("files", "pulled_from")}, "")


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence the ``datasets`` progress bars for a few small writes, restoring the user's setting."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    was_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            enable_progress_bars()


def _place(name: str, a: np.ndarray, rows: dict[str, int]) -> str:
    """The row set an array goes to (``train_*`` / ``heldout_*`` by name, others by length), or
    the ``.npy`` file that keeps what Arrow cannot (scalars, empty rows, other dtypes)."""
    arrow_ok = (a.ndim >= 1 and a.dtype.kind in _ARROW_KINDS and a.dtype.isnative
                and (a.ndim == 1 or int(np.prod(a.shape[1:])) > 0))
    if arrow_ok:
        for rs in ROW_SETS[1:]:
            if (name == rs or name.startswith(rs + "_")) and rows.get(rs) == len(a):
                return rs
        for rs in ROW_SETS:
            if rows.get(rs) == len(a):
                return rs
    return f"{ARRAYS_DIR}/{name}.npy"


def _arrow_column(a: np.ndarray) -> Any:
    import pyarrow as pa
    if a.ndim == 1:
        return pa.array(a)
    flat = np.ascontiguousarray(a).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), int(np.prod(a.shape[1:])))


def _from_arrow(column: Any, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    import pyarrow as pa
    arr = column.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    if arr.null_count:
        raise PublishError(f"{where}: column has missing values")
    out = np.array(arr.to_numpy(zero_copy_only=False), dtype=dtype)
    if out.size != int(np.prod(shape)):
        raise PublishError(f"{where}: {out.size} values, manifest says shape {list(shape)}")
    return out.reshape(shape)


def _spec_text(inst: TaskInstance) -> str:
    """The spec file's text, refused when it no longer describes the instance's build."""
    path = Path(inst.spec.path) if inst.spec.path else None
    if path is None or not path.is_file():
        raise PublishError(f"task {inst.spec.name!r}: spec file {inst.spec.path or '(none)'} is not readable")
    text = path.read_text(encoding="utf-8")
    if parse_spec(tomllib.loads(text), str(path)).hash != inst.meta["spec_hash"]:
        raise PublishError(f"{path}: changed since the instance was built (spec hash differs from "
                           f"{inst.meta['spec_hash']}); rebuild before publishing")
    return text


def _model_record(meta: dict[str, Any]) -> ModelRecord | None:
    """A published record's model entry, typed (None: the task has no model)."""
    return ModelRecord.model_validate(meta["model"]) if meta.get("model") else None


def _card(body: dict[str, Any]) -> str:
    """The dataset card: Hub front matter (Arrow configs, tags) and what is inside."""
    sets = [rs for rs in ROW_SETS if rs in body["row_sets"]]
    configs = "".join(f"- config_name: {rs}\n  data_files: \"{rs}/*.arrow\"\n" for rs in sets)
    lines = [f"| `{name}` | {np.dtype(m['dtype'])} | {m['shape']} | {m['in']} |"
             for name, m in body["arrays"].items()]
    model = _model_record(body["meta"])
    return (f"---\npretty_name: mmh-bench {body['task']} ({body['instance_kind']} instance)\n"
            f"tags:\n- mmh-bench\n- memorization\nconfigs:\n{configs}---\n\n"
            f"# mmh-bench task instance: {body['task']} v{body['version']}\n\n"
            f"A built instance of the mmh-bench task `{body['task']}`: the generated samples with their "
            "labels and audit trail, the sets they were labelled against and the model files, byte for "
            "byte as built. Results are comparable only on the same data hash.\n\n"
            f"- kind: `{body['instance_kind']}`\n- data hash: `{body['data_hash']}`\n"
            f"- spec hash: `{body['spec_hash']}` (spec in `{SPEC_FILE}`)\n"
            f"- model: `{model.kind if model else 'none'}` in `{model.path if model else '-'}`\n"
            f"- rows: {', '.join(f'{rs} {n}' for rs, n in body['row_sets'].items())}\n\n"
            "## Use\n\n```sh\nmmh-bench pull <this folder or hub id>   # verifies every byte, installs it\n```\n\n"
            "```python\nfrom datasets import load_from_disk\nsamples = load_from_disk(\"samples\")"
            "   # one row per sample\n```\n\n## Arrays\n\nRows hold the array flattened; `shape` "
            "restores it.\n\n| array | dtype | shape | in |\n|---|---|---|---|\n"
            + "\n".join(lines) + f"\n\nEvery file's sha256 is in `{INSTANCE_FILE}`.\n")


# -- publish -------------------------------------------------------------------------------------
def publish_instance(inst: TaskInstance, out_dir: str | Path) -> Path:
    """Write ``inst`` as a self-describing, checksummed folder ``out_dir`` (which must not exist
    or be empty) and return it. Nothing named secret is written, nor a test instance's seed."""
    from datasets import Dataset
    from datasets.table import InMemoryTable
    import pyarrow as pa

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PublishError(f"{out}: exists and is not an empty folder")
    arrays, meta = inst.arrays, inst.meta
    pickled = sorted(name for name, a in arrays.items() if a.dtype.hasobject)
    if pickled:
        raise PublishError(f"array {pickled[0]!r} has dtype object, which only pickle could store")
    if sha256_arrays(arrays) != inst.data_hash:
        raise PublishError(f"task {inst.spec.name!r}: arrays do not match the data hash "
                           f"{inst.data_hash[:16]}; rebuild")
    # a fresh (held-out) instance that is published is held out no more: it is published as what
    # it now is, a test instance (e.g. last release's pool becoming this release's public instances)
    kind = "test" if inst.instance_kind == "fresh" else inst.instance_kind
    record = inst.build_meta
    copied = sorted(rel for rel in record.files if rel not in _REWRITTEN)
    clash = {rel.split("/")[0] for rel in copied} & _RESERVED
    if clash:
        raise PublishError(f"build files {sorted(clash)} clash with names the published layout reserves")
    if copied and inst.root is None:
        raise PublishError(f"task {inst.spec.name!r}: instance has no build folder to copy {copied[0]} from")
    rows = {rs: len(arrays[rs]) for rs in ROW_SETS if rs in arrays and arrays[rs].ndim >= 1}
    manifest = {name: {"dtype": a.dtype.str, "shape": list(a.shape), "in": _place(name, a, rows)}
                for name, a in sorted(arrays.items())}

    with staged_dir(out) as work:
        with _quiet_datasets():
            for rs in ROW_SETS:
                cols = {n: _arrow_column(arrays[n]) for n, m in manifest.items() if m["in"] == rs}
                if cols:
                    ds = Dataset(InMemoryTable(pa.table(cols)), fingerprint=f"{inst.data_hash[:16]}-{rs}")
                    ds.save_to_disk(str(work / rs))
        for name, m in manifest.items():
            if m["in"].endswith(".npy"):
                (work / ARRAYS_DIR).mkdir(exist_ok=True)
                np.save(work / m["in"], arrays[name], allow_pickle=False)
        for rel in copied:
            src, dst = inst.root / rel, work / rel
            if sha256_file(src) != record.files[rel]:
                raise PublishError(f"{src}: does not match its build checksum; rebuild before publishing")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        (work / SPEC_FILE).write_text(_spec_text(inst), encoding="utf-8")
        body: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "task": inst.spec.name,
            "version": inst.spec.version, "spec_hash": meta["spec_hash"], "data_hash": inst.data_hash,
            "instance_kind": kind, "row_sets": rows, "arrays": manifest,
            "meta": {**_public_meta(meta, kind), "instance_kind": kind},
            "packages": {"build": record.packages, "publish": package_versions()}}
        (work / CARD_FILE).write_text(_card(body), encoding="utf-8")
        body["files"] = _digests(work)
        (work / INSTANCE_FILE).write_text(_seal(body), encoding="utf-8")
    return out


# -- pull ---------------------------------------------------------------------------------------
def _resolve_source(source: str | Path) -> Path:
    """A local folder as is; ``owner/name[@revision]`` downloaded from the Hugging Face Hub."""
    path = Path(source)
    if path.is_dir():
        return path
    text = str(source)
    if path.exists() or not _HUB_ID.match(text):
        raise PublishError(f"{source}: no such folder (and not a Hugging Face Hub dataset id "
                           "owner/name[@revision])")
    repo_id, _, revision = text.partition("@")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision or None))
    except Exception as exc:  # offline, missing repo, gated: all say the same thing to the user
        raise PublishError(f"{source}: cannot download from the Hugging Face Hub "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def verify_published(folder: str | Path) -> tuple[dict[str, Any], TaskSpec, dict[str, np.ndarray]]:
    """Check every file's sha256, then that the arrays rebuilt from Arrow and ``.npy`` give the
    recorded data hash; return the instance record, its spec and its arrays."""
    from datasets import load_from_disk

    folder = Path(folder)
    body = _unseal(folder / INSTANCE_FILE)
    for rel, digest in body["files"].items():
        path = folder / rel
        if not path.is_file():
            raise PublishError(f"{path}: missing from the published instance")
        if sha256_file(path) != digest:
            raise PublishError(f"{path}: checksum mismatch; the file was altered or corrupted")
    for name, m in body["arrays"].items():
        if m["in"] not in ROW_SETS and m["in"] not in body["files"]:
            raise PublishError(f"{folder / INSTANCE_FILE}: array {name!r} is in unlisted {m['in']}")
    try:
        text = (folder / SPEC_FILE).read_text(encoding="utf-8")
        spec = parse_spec(tomllib.loads(text), str(folder / SPEC_FILE))
    except (tomllib.TOMLDecodeError, SpecError) as exc:
        raise PublishError(f"{folder / SPEC_FILE}: not a valid task spec ({exc})") from None
    if spec.hash != body["spec_hash"] or spec.name != body["task"]:
        raise PublishError(f"{folder / SPEC_FILE}: spec hash {spec.hash} does not match the "
                           f"instance's {body['spec_hash']}")
    arrays: dict[str, np.ndarray] = {}
    tables = {rs: load_from_disk(str(folder / rs)).data.table for rs in ROW_SETS if (folder / rs).is_dir()}
    for name, m in body["arrays"].items():
        dtype, shape, where = np.dtype(m["dtype"]), tuple(m["shape"]), folder / m["in"]
        if m["in"] in ROW_SETS:
            if m["in"] not in tables or name not in tables[m["in"]].column_names:
                raise PublishError(f"{where}: no column {name!r}")
            arrays[name] = _from_arrow(tables[m["in"]].column(name), dtype, shape, f"{where}:{name}")
        else:
            arrays[name] = np.load(where, allow_pickle=False)
    if sha256_arrays(arrays) != body["data_hash"]:
        raise PublishError(f"{folder}: arrays rebuilt from the published files do not give the data hash "
                           f"{body['data_hash'][:16]}")
    return body, spec, arrays


def restamp_copying(folder: str | Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Recompute a published instance's C_T from its published arrays alone
    (:func:`~mmh_bench.common.ct_statistic.copying_record`, as the build does) and reseal its record with it; return
    (old, new) ``copying`` meta. For instances published before C_T's k-means cells were seeded
    from the published rows (they were seeded from the secret, so nobody could recompute them)."""
    from mmh_bench.common.ct_statistic import copying_record

    folder = Path(folder)
    body, _, arrays = verify_published(folder)
    old = body["meta"].get("copying")
    if old is None or "heldout" not in arrays or "labels" not in arrays:
        return old, old
    new = copying_record(arrays)
    if new != old:
        body["meta"]["copying"] = new
        atomic_write_text(folder / INSTANCE_FILE, _seal(body))
    return old, new


def instances_dir(task_name: str, cache_dir: str | Path | None = None) -> Path:
    """Where pulled instances of a task live: ``<cache>/<task>/instances/``."""
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / task_name / "instances"


def _load_installed(root: Path) -> TaskInstance | None:
    try:
        text = (root / SPEC_FILE).read_text(encoding="utf-8")
        spec = parse_spec(tomllib.loads(text), str(root / SPEC_FILE))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, SpecError):
        return None
    inst = load_instance(spec, root)
    if inst is not None and hasattr(spec, "instance"):  # the spec of a pulled test instance says so
        inst.spec = dataclasses.replace(spec, instance=inst.instance_kind)
    if inst is not None and (inst.spec.hash != inst.build_meta.spec_hash or
                             sha256_file(root / SPEC_FILE) != inst.build_meta.files.get(SPEC_FILE)):
        return None
    return inst


def pull_instance(source: str | Path, cache_dir: str | Path | None = None, *,
                  install: bool = True) -> TaskInstance | None:
    """Verify a published instance (local folder or Hub dataset id) and install it into the cache
    as ``<cache>/<task>/instances/<data hash[:16]>/``; a valid installed copy is reused, a corrupt
    one replaced (``install=False``: None instead of installing). Raises :class:`PublishError`
    naming the file on any mismatch."""
    folder = _resolve_source(source)
    body, spec, arrays = verify_published(folder)
    if body["meta"].get("build_format") != BUILD_FORMAT:
        raise PublishError(f"{folder / INSTANCE_FILE}: made by build format "
                           f"{body['meta'].get('build_format')}, this mmh-bench reads {BUILD_FORMAT}")
    parent = instances_dir(spec.name, cache_dir)
    root = parent / body["data_hash"][:16]
    record = sha256_file(folder / INSTANCE_FILE)
    if (root / "meta.json").exists():
        inst = _load_installed(root)
        if inst is not None and inst.data_hash == body["data_hash"] and inst.build_meta.published_record == record:
            return inst
        if inst is not None and inst.data_hash == body["data_hash"]:  # same bytes, record restamped
            log.info("published record of %s changed; installing it again", root)
        else:
            log.warning("installed instance %s is corrupt; installing it again from %s", root, source)
    if not install:
        return None
    with staged_dir(root) as work:
        save_arrays(work / "instance.npz", arrays)
        copied = [rel for rel in body["files"] if rel.split("/")[0] not in _RESERVED]
        for rel in copied:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, work / rel)
        shutil.copyfile(folder / SPEC_FILE, work / SPEC_FILE)
        meta = {**body["meta"], "instance_kind": body["instance_kind"], "pulled_from": str(source),
                "published_record": record}
        meta["files"] = _digests(work)
        for rel in copied:  # a file changed between the check above and the copy
            if meta["files"][rel] != body["files"][rel]:
                raise PublishError(f"{folder / rel}: changed while being installed")
        atomic_write_text(work / "meta.json", dump_meta(meta))
    inst = _load_installed(root)
    if inst is None:
        raise PublishError(f"{root}: the installed instance does not load; report this as a bug")
    return inst


def find_instances(task_name: str, cache_dir: str | Path | None = None) -> list[TaskInstance]:
    """The pulled instances of a task installed in the cache (corrupt ones skipped with a warning)."""
    found = []
    parent = instances_dir(task_name, cache_dir)
    for root in sorted(parent.iterdir()) if parent.is_dir() else []:
        if root.name.startswith(".") or not root.is_dir():
            continue
        inst = _load_installed(root)
        if inst is None:
            log.warning("installed instance %s is corrupt; pull it again", root)
        else:
            found.append(inst)
    return found


#: where the board's published instances live in a checkout of the project (``make bench`` uses them)
DEFAULT_INSTANCES = "leaderboard/instances"


def published_for(spec: TaskSpec, root: str | Path = DEFAULT_INSTANCES) -> list[Path]:
    """Published instance folders under ``root/<task>/`` that were built from this very spec."""
    found = []
    task_dir = Path(root) / spec.name
    for folder in sorted(task_dir.iterdir()) if task_dir.is_dir() else []:
        try:
            body = json.loads((folder / INSTANCE_FILE).read_text())
        except (OSError, ValueError):
            continue
        if body.get("spec_hash") == spec.hash:
            found.append(folder)
    return found


def resolve_instances(spec: TaskSpec, cache_dir: str | Path | None = None, *,
                      published: "str | Path | FreshPool | None" = DEFAULT_INSTANCES, progress: bool = True,
                      build: bool = True) -> list[TaskInstance]:
    """The instances a run evaluates: the published ones of this spec when ``published`` holds any
    (each pulled and verified byte for byte, so every machine measures the board's very bytes; a
    task may keep several replicates), else this machine's own build of the dev instance (another
    instance: its results rank apart). ``build=False``: only what the cache holds already, nothing
    built or installed; an empty list when that is not all of them. ``published`` a
    :class:`~mmh_bench.task.fresh.FreshPool`: the held-out instances the pool holds (filled beforehand
    by :func:`~mmh_bench.task.fresh.fill_pool`; they cannot be built here, their secret is gone)."""
    if isinstance(published, FreshPool):
        found = pool_instances(spec, published)
        if not found and build:
            raise PublishError(f"task {spec.name!r}: the fresh pool {published.root} holds no instance of spec "
                               f"{spec.hash}; fill it first (mmh_bench.task.fresh.fill_pool)")
        return found
    folders = published_for(spec, published) if published else []
    if folders:
        pulled = [pull_instance(f, cache_dir, install=build) for f in folders]
        return [] if any(inst is None for inst in pulled) else pulled  # type: ignore[return-value]
    if not build:
        inst = cached_task(spec, cache_dir)
        return [inst] if inst is not None else []
    return [build_task(spec, cache_dir, progress=progress)]
