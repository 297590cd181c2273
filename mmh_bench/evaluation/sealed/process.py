"""The worker process itself: its environment, its limits watched from outside, its exit read
back; started inside bubblewrap (:mod:`.bwrap`) or as a plain child process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from mmh_bench.task.families import FAMILIES_ENV

from .bwrap import (DROP_ENV, OUT_MOUNT, VIEW_MOUNT, Limits, bwrap_command, prepare_folders, readable_roots,
                    seccomp_program)


#: environment variables a worker inherits; everything else (MMH_BENCH_CACHE, tokens) stays out.
#: FAMILIES_ENV names the task families registered from outside the package: a worker loads such a
#: task's model through its family's loader
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", FAMILIES_ENV)


LOG_TAIL = 1500


#: set in every worker's environment: an evaluation started inside a worker is refused
WORKER_ENV = "MMH_BENCH_SEALED_WORKER"


#: seconds between two looks at a running worker (time and disk limits)
POLL = 0.2


class WorkerFailure(RuntimeError):
    """The worker crashed, timed out or reported a detector's (mitigator's) error; the message says which."""


class LimitExceeded(WorkerFailure):
    """The worker went past one of its :class:`~.bwrap.Limits`; the message names it."""


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


__all__ = ["LimitExceeded", "WORKER_ENV", "WorkerFailure", "describe_exit", "explain_error", "launch", "run_logged",
           "worker_env"]
