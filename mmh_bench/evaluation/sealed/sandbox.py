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
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .bwrap import (DROP_ENV, OUT_MOUNT, VIEW_MOUNT, Limits, bwrap_command, exposed_hidden, prepare_folders,
                    python_argv, readable_roots, sandbox_available, sandbox_status, seccomp_program)
from .job import validate_generated, validate_scores
from .view import OUTPUT_FILE, SealError, kind_of, write_view

log = logging.getLogger(__name__)

#: environment variables a worker inherits; everything else (MMH_BENCH_CACHE, tokens) stays out
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE")
LOG_TAIL = 1500
#: set in every worker's environment: an evaluation started inside a worker is refused
WORKER_ENV = "MMH_BENCH_SEALED_WORKER"
#: seconds between two looks at a running worker (time and disk limits)
POLL = 0.2
#: the most bytes read back of a worker's JSON document
JSON_CAP = 4 << 20


class WorkerFailure(RuntimeError):
    """The worker crashed, timed out or reported a detector's (mitigator's) error; the message says which."""


class LimitExceeded(WorkerFailure):
    """The worker went past one of its :class:`~.bwrap.Limits`; the message names it."""


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


def worker_env(threads: int, hide: list[Path], *, sandboxed: bool, limits: Limits) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    env.update(limits.env())
    if sandboxed:
        roots = readable_roots(hide)
        paths = [p for p in sys.path if p and os.path.isdir(p)
                 and any(Path(p).resolve() == r or r in Path(p).resolve().parents for r in roots)]
        env["HOME"] = "/tmp"
        if os.geteuid() == 0:
            env[DROP_ENV] = "1"
    else:
        paths = [p for p in sys.path if p and os.path.isdir(p)
                 and not any(h == Path(p).resolve() or h in Path(p).resolve().parents for h in hide)]
        if "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1", **{WORKER_ENV: "1"},
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    return env


def describe_exit(rc: int, limits: Limits | None = None) -> str:
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0  # bwrap reports a killed child as 128 + signal
    if sig in signal.Signals._value2member_map_:
        if sig == signal.SIGXFSZ and limits is not None:
            return f"the worker wrote a file larger than {limits.describe('disk_mb')}"
        return (f"the worker was killed by {signal.Signals(sig).name}"
                + (" (out of memory?)" if sig == signal.SIGKILL else ""))
    return f"the worker exited with status {rc} without a result"


def explain_error(error: str, limits: Limits) -> str:
    """The worker's error, with the limit it ran into named when it looks like one."""
    if any(m in error for m in ("MemoryError", "Unable to allocate", "Cannot allocate memory",
                                "DefaultCPUAllocator: can't allocate", "std::bad_alloc")):
        return f"{error} [{limits.describe('memory_mb')}]"
    if any(m in error for m in ("can't start new thread", "Resource temporarily unavailable")):
        return f"{error} [{limits.describe('processes')}]"
    if "File too large" in error:
        return f"{error} [{limits.describe('disk_mb')}]"
    return error


def _usage(paths: Iterable[Path]) -> int:
    """Bytes on disk under ``paths`` (files and folders, links not followed)."""
    total = 0
    for root in paths:
        if root.is_file():
            total += root.lstat().st_blocks * 512
            continue
        for dirpath, dirs, files in os.walk(root):
            for name in files + dirs:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def run_logged(cmd: list[str], env: dict[str, str], log_path: Path, limits: Limits, *,
               watch: Iterable[Path] = (), pass_fds: tuple[int, ...] = ()) -> int:
    """Run ``cmd`` (output to ``log_path``; its rlimits travel in ``env``, :data:`~.bwrap.PRELUDE`)
    under ``limits``: the wall-clock time and the bytes under ``watch`` (and the log) checked every :data:`POLL` s;
    past either, the worker's whole process group is killed and :class:`LimitExceeded` raised."""
    watch = [*watch, log_path]
    cap = limits.disk_mb * 2**20
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd="/", pass_fds=pass_fds)
        deadline = time.monotonic() + limits.timeout
        try:
            while True:
                try:
                    return proc.wait(timeout=POLL)
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() > deadline:
                    raise LimitExceeded(f"timed out after {limits.timeout:g} s: {limits.describe('timeout')}")
                used = _usage(watch)
                if used > cap:
                    raise LimitExceeded(f"wrote {used / 2**20:.0f} MB: over {limits.describe('disk_mb')}")
        except BaseException:  # a limit, or the evaluator itself interrupted: never leave it running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise


def launch(tmp: Path, argv: Callable[[str, str], list[str]], *, sandbox: bool, limits: Limits, threads: int,
           hide: Iterable[Path] = (), program: bytes | None = None) -> tuple[int, str]:
    """Run the worker command ``argv(view, out)`` over ``tmp/view`` and ``tmp/out`` (both made by
    the caller), sandboxed or as a plain process; its exit status and the tail of its output."""
    hide = list(hide)
    view, out, scratch = tmp / "view", tmp / "out", tmp / "scratch"
    scratch.mkdir()
    log_path = tmp / "worker.log"
    env = worker_env(threads, hide, sandboxed=sandbox, limits=limits)
    if not sandbox:
        rc = run_logged(argv(str(view), str(out)), env, log_path, limits, watch=[out])
    else:
        prepare_folders(tmp, view, out, scratch)
        filter_path = tmp / "seccomp.bpf"
        filter_path.write_bytes(program if program is not None else seccomp_program())
        fd = os.open(filter_path, os.O_RDONLY)
        try:
            cmd = bwrap_command(view, out, scratch, argv(VIEW_MOUNT, OUT_MOUNT), seccomp_fd=fd, hide=hide)
            rc = run_logged(cmd, env, log_path, limits, watch=[out, scratch], pass_fds=(fd,))
        finally:
            os.close(fd)
    return rc, log_path.read_bytes()[-LOG_TAIL:].decode(errors="replace").strip()


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


__all__ = ["LimitExceeded", "WORKER_ENV", "SealError", "SealedRun", "WorkerFailure", "hidden_paths",
           "isolation_mode", "launch", "read_document", "read_output", "run_sealed", "sandbox_available",
           "sandbox_status"]
