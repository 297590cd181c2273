"""Running a view in a worker process: sandboxed (:mod:`.bwrap`) when the sandbox works, else a
plain child process; limits watched, the worker's output read back safely.

Without a working sandbox the worker still runs as a separate process with a cleaned environment
and the same limits (its memory holds no labels), but files are not sealed; results record which
(``isolation``: ``sandbox`` or ``process``). What the worker wrote is read back only as regular
files (no symbolic links, FIFOs or devices), each capped in size.
"""
from __future__ import annotations

import io
import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .bwrap import Limits, exposed_hidden, python_argv, readable_roots
from .process import WorkerFailure, describe_exit, explain_error, launch
from .selftest import sandbox_available
from .job import validate_generated, validate_scores
from .view import OUTPUT_FILE, SealError, kind_of, write_view

log = logging.getLogger(__name__)

#: the most bytes read back of a worker's JSON document
JSON_CAP = 4 << 20


@dataclass
class SealedRun:
    output: np.ndarray  # a detector's scores, a mitigator's generated samples
    cost: dict[str, Any]
    isolation: str  # "sandbox" or "process"

    @property
    def scores(self) -> np.ndarray:
        return self.output


def hidden_paths(extra: Iterable[str | Path | None] = ()) -> list[Path]:
    """Folders no worker may see: build caches, results, the leaderboard, ``~/.cache``. The sandbox
    binds none of them anyway (it binds an allow-list); these decide which ``sys.path`` entries
    are safe to bind and that no bound folder contains one."""
    from mmh_bench.task.build import default_cache_dir
    repo = Path(__file__).resolve().parents[3]
    cands = [default_cache_dir(), Path.home() / ".cache", repo / "leaderboard", Path.cwd() / "leaderboard",
             *[p for p in extra if p is not None]]
    out: list[Path] = []
    for p in cands:
        p = Path(p).resolve()
        if p not in out:
            out.append(p)
    return out


def isolation_mode() -> str:
    return "sandbox" if sandbox_available() else "process"


def read_output(out: Path, name: str, cap: int) -> bytes | None:
    """The bytes of ``out/name`` if it is a regular file of at most ``cap`` bytes; None if absent.
    A link, FIFO, device or folder in its place, or a larger file, is the worker's failure."""
    try:
        fd = os.open(out / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WorkerFailure(f"the worker's {name} cannot be read back ({exc.strerror}); only regular files "
                            "are read") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WorkerFailure(f"the worker's {name} is not a regular file; only regular files are read back")
        if st.st_size > cap:
            raise WorkerFailure(f"the worker's {name} holds {st.st_size} bytes, more than the {cap} expected")
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise WorkerFailure(f"the worker's {name} holds more than the {cap} bytes expected")
    return data


def read_document(out: Path, name: str, rc: int, tail: str, limits: Limits) -> dict[str, Any]:
    """The worker's JSON document ``name``; a :class:`WorkerFailure` saying why there is none."""
    data = read_output(out, name, JSON_CAP)
    try:
        doc = json.loads(data) if data is not None else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise WorkerFailure(describe_exit(rc, limits) + (f"; last output: {tail}" if tail else ""))
    return doc


def choose_sandbox(sandbox: bool | None, hidden: list[Path]) -> bool:
    """Whether this run is sandboxed: when asked (None: when available) and no bound folder
    would expose one of ``hidden``."""
    use = sandbox_available() if sandbox is None else (sandbox and sandbox_available())
    if use and exposed_hidden(readable_roots(hidden), hidden):
        log.warning("a folder to hide lies inside the Python installation; sealing by process only")
        use = False
    return use


def run_sealed(inst: Any, det: Any, *, seed: int = 0, batch_size: int = 512, timeout: float | None = None,
               threads: int = 1, sandbox: bool | None = None, hide: Iterable[str | Path | None] = (),
               n: int | None = None) -> SealedRun:
    """Score ``inst`` with a fresh copy of ``det`` in a sealed worker (a mitigator: generate the
    first ``n`` samples again, all by default); labels stay in this process.

    ``sandbox``: None uses bubblewrap when it works, False forces plain process isolation.
    ``hide``: more folders no bound folder may contain (the evaluator's cache and results).
    ``timeout``: seconds (default: the sandbox's time limit, :class:`~.bwrap.Limits`).
    Raises :class:`WorkerFailure` (crash, limit, detector error) or :class:`SealError`."""
    kind = kind_of(det)
    limits = Limits.from_env(timeout)
    hidden = hidden_paths([inst.root, *hide])
    use_sandbox = choose_sandbox(sandbox, hidden)
    with tempfile.TemporaryDirectory(prefix="mmh-sealed-") as tmp_name:
        tmp = Path(tmp_name)
        write_view(inst, det, tmp / "view", seed=seed, batch_size=batch_size, n=n)
        (tmp / "out").mkdir()
        rc, tail = launch(tmp, lambda v, o: python_argv("mmh_bench.evaluation.sealed", [v, o, "--threads", str(threads)]),
                          sandbox=use_sandbox, limits=limits, threads=threads, hide=hidden)
        res = read_document(tmp / "out", "result.json", rc, tail, limits)
        if res.get("status") != "ok":
            log.debug("sealed worker traceback:\n%s", res.get("traceback", ""))
            raise WorkerFailure(explain_error(str(res.get("error") or "the worker reported a failure"), limits))
        if rc != 0:
            raise WorkerFailure(describe_exit(rc, limits) + " after writing a result")
        shape = inst.noise[:n].shape if kind == "mitigator" else (len(inst.samples),)
        data = read_output(tmp / "out", OUTPUT_FILE[kind], 8 * int(np.prod(shape)) + 4096)
        if data is None:
            raise WorkerFailure(f"the worker wrote no {OUTPUT_FILE[kind]}")
        try:
            output = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise WorkerFailure(f"unreadable output from the worker ({exc})") from None
    output = (validate_generated(output, shape, det.name) if kind == "mitigator"
              else validate_scores(output, len(inst.samples), det.name))
    cost = {k: v for k, v in dict(res.get("cost") or {}).items() if isinstance(v, (int, float))}
    return SealedRun(output, cost, "sandbox" if use_sandbox else "process")


__all__ = ["SealError", "SealedRun", "hidden_paths", "isolation_mode", "read_document", "read_output", "run_sealed"]
