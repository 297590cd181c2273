"""Running a view in a worker process, inside a bubblewrap sandbox when one works.

The sandbox sees the root file system read-only, with empty read-only folders over the build
caches, the results and leaderboard folders, ``$HOME/.cache`` and the evaluator's own files, an
empty ``/tmp``, no network and its own process table (so not the evaluator's memory). Without a
working ``bwrap`` the worker still runs as a separate process (its memory holds no labels), but
files are not sealed; results record which (``isolation``: ``sandbox`` or ``process``).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .job import validate_generated, validate_scores
from .view import OUTPUT_FILE, SealError, kind_of, write_view

log = logging.getLogger(__name__)

#: mount points inside the sandbox (under its private /tmp)
VIEW_MOUNT, OUT_MOUNT = "/tmp/mmh-view", "/tmp/mmh-out"
#: environment variables a worker inherits; everything else (MMH_BENCH_CACHE, tokens) stays out
ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE")
LOG_TAIL = 1500
#: set in every worker's environment: an evaluation started inside a worker is refused
WORKER_ENV = "MMH_BENCH_SEALED_WORKER"


class WorkerFailure(RuntimeError):
    """The worker crashed, timed out or reported a detector's (mitigator's) error; the message says which."""


@dataclass
class SealedRun:
    output: np.ndarray  # a detector's scores, a mitigator's generated samples
    cost: dict[str, Any]
    isolation: str  # "sandbox" or "process"

    @property
    def scores(self) -> np.ndarray:
        return self.output


def hidden_paths(extra: Iterable[str | Path | None] = ()) -> list[Path]:
    """Folders a sandboxed detector must not see: build caches, results, the leaderboard, caches."""
    from mmh_bench.task.build import default_cache_dir
    repo = Path(__file__).resolve().parents[3]
    cands = [default_cache_dir(), Path.home() / ".cache", repo / "leaderboard", Path.cwd() / "leaderboard",
             *[p for p in extra if p is not None]]
    out: list[Path] = []
    for p in cands:
        p = Path(p).resolve()
        if p.is_dir() and p not in out and Path("/tmp") not in [p, *p.parents]:  # /tmp is emptied anyway
            out.append(p)
    # a folder inside another hidden one is hidden with it (and bwrap cannot mount inside a mount it
    # made read-only: a pulled instance lives under the cache, which lives under ~/.cache)
    return [p for p in out if not any(q in p.parents for q in out)]


def essential_paths() -> list[Path]:
    import mmh_bench
    return [Path(sys.prefix).resolve(), Path(sys.executable).resolve(), Path(mmh_bench.__file__).resolve()]


def _needed_under_tmp() -> list[Path]:
    """The interpreter, its environment and mmh-bench's own code where they live under /tmp (a
    checkout or venv there, as in many CI jobs): the sandbox's empty /tmp would hide them."""
    prefix, executable, package = essential_paths()
    tmp = Path("/tmp").resolve()
    dirs = {prefix, executable.parent, package.parents[1]}  # the package's folder holds its siblings too
    return sorted(d for d in dirs if tmp in d.parents)


def bwrap_command(view: Path, out: Path, hide: list[Path], argv: list[str]) -> list[str]:
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for d in _needed_under_tmp():  # read-only, before the hidden paths are laid over them
        cmd += ["--ro-bind", str(d), str(d)]
    for dev in sorted(glob.glob("/dev/nvidia*")) + (["/dev/dri"] if os.path.exists("/dev/dri") else []):
        cmd += ["--dev-bind", dev, dev]  # GPUs stay usable; no other device (e.g. raw disks) is
    for p in hide:
        cmd += ["--tmpfs", str(p), "--remount-ro", str(p)]
    cmd += ["--ro-bind", str(view), VIEW_MOUNT, "--bind", str(out), OUT_MOUNT,
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session", "--chdir", "/tmp"]
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL"]  # a root sandbox could otherwise unmount what hides the caches
    return cmd + ["--", *argv]


@lru_cache(maxsize=1)
def sandbox_available() -> bool:
    """Whether bubblewrap is installed and passes a self-test (``MMH_BENCH_SANDBOX=0`` turns it off)."""
    if os.environ.get("MMH_BENCH_SANDBOX", "1") == "0" or shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="mmh-selftest-") as tmp:
        view, out = Path(tmp, "v"), Path(tmp, "o")
        view.mkdir(), out.mkdir()
        (view / "probe").write_text("ok")
        code = (f"import os; assert open('{VIEW_MOUNT}/probe').read() == 'ok'; "
                f"open('{OUT_MOUNT}/probe', 'w').write('ok'); assert not os.path.exists('{tmp}')")
        try:
            proc = subprocess.run(bwrap_command(view, out, [], [sys.executable, "-S", "-c", code]),
                                  capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("bubblewrap self-test failed (%s); sealed runs fall back to process isolation", exc)
            return False
        ok = proc.returncode == 0 and (out / "probe").is_file()
        if not ok:
            log.warning("bubblewrap self-test failed (%s); sealed runs fall back to process isolation",
                        proc.stderr.decode(errors="replace").strip()[-300:])
        return ok


def isolation_mode() -> str:
    return "sandbox" if sandbox_available() else "process"


def worker_env(threads: int, hide: list[Path]) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    paths = [p for p in sys.path if p and os.path.isdir(p)
             and not any(h == Path(p).resolve() or h in Path(p).resolve().parents for h in hide)]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1", **{WORKER_ENV: "1"},
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    return env


def describe_exit(rc: int) -> str:
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0  # bwrap reports a killed child as 128 + signal
    if sig in signal.Signals._value2member_map_:
        return (f"the worker was killed by {signal.Signals(sig).name}"
                + (" (out of memory?)" if sig == signal.SIGKILL else ""))
    return f"the worker exited with status {rc} without a result"


def run_logged(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float | None) -> int:
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd="/")
        try:
            return proc.wait(timeout=timeout)
        except BaseException:  # timeout, or the evaluator itself interrupted: never leave it running
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise


def run_sealed(inst: Any, det: Any, *, seed: int = 0, batch_size: int = 512, timeout: float | None = None,
               threads: int = 1, sandbox: bool | None = None, hide: Iterable[str | Path | None] = (),
               n: int | None = None) -> SealedRun:
    """Score ``inst`` with a fresh copy of ``det`` in a sealed worker (a mitigator: generate the
    first ``n`` samples again, all by default); labels stay in this process.

    ``sandbox``: None uses bubblewrap when it works, False forces plain process isolation.
    ``hide``: more folders to hide (the evaluator's cache and results folders).
    Raises :class:`WorkerFailure` (crash, timeout, detector error) or :class:`SealError`."""
    kind = kind_of(det)
    use_sandbox = sandbox_available() if sandbox is None else (sandbox and sandbox_available())
    hidden = hidden_paths([inst.root, *hide])
    essential = essential_paths()
    if use_sandbox and any(h == e or h in e.parents for h in hidden for e in essential):
        log.warning("a folder to hide contains the Python installation; sealing by process only")
        use_sandbox = False
    with tempfile.TemporaryDirectory(prefix="mmh-sealed-") as tmp:
        view = write_view(inst, det, Path(tmp, "view"), seed=seed, batch_size=batch_size, n=n)
        out = Path(tmp, "out")
        out.mkdir()
        if use_sandbox:
            cmd = bwrap_command(view, out, hidden, [sys.executable, "-m", "mmh_bench.evaluation.sealed", VIEW_MOUNT,
                                                    OUT_MOUNT, "--threads", str(threads)])
        else:
            cmd = [sys.executable, "-m", "mmh_bench.evaluation.sealed", str(view), str(out), "--threads", str(threads)]
        log_path = Path(tmp, "worker.log")
        try:
            rc = run_logged(cmd, worker_env(threads, hidden), log_path, timeout)
        except subprocess.TimeoutExpired:
            raise WorkerFailure(f"timed out after {timeout:g} s") from None
        tail = log_path.read_bytes()[-LOG_TAIL:].decode(errors="replace").strip()
        try:
            res = json.loads((out / "result.json").read_text())
        except (OSError, ValueError):
            raise WorkerFailure(describe_exit(rc) + (f"; last output: {tail}" if tail else "")) from None
        if res.get("status") != "ok":
            log.debug("sealed worker traceback:\n%s", res.get("traceback", ""))
            raise WorkerFailure(str(res.get("error") or "the worker reported a failure"))
        if rc != 0:
            raise WorkerFailure(describe_exit(rc) + " after writing a result")
        try:
            output = np.load(out / OUTPUT_FILE[kind], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise WorkerFailure(f"unreadable output from the worker ({exc})") from None
        output = (validate_generated(output, inst.noise[:n].shape, det.name) if kind == "mitigator"
                  else validate_scores(output, len(inst.samples), det.name))
        cost = {k: v for k, v in dict(res.get("cost") or {}).items() if isinstance(v, (int, float))}
        return SealedRun(output, cost, "sandbox" if use_sandbox else "process")


__all__ = ["WORKER_ENV", "SealError", "SealedRun", "WorkerFailure", "hidden_paths", "isolation_mode", "run_sealed",
           "sandbox_available"]
