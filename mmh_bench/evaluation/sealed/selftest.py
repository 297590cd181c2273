"""Whether the sandbox works here: a self-test run inside it once per process, and what the
evaluator does with the answer (refuse submitted code, or warn loudly that it runs unsealed)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from .bwrap import OUT_MOUNT, PRELUDE, VIEW_MOUNT, Limits, seccomp_program
from .process import launch

log = logging.getLogger(__name__)


# -- the self-test -----------------------------------------------------------------------------------
#: run inside the sandbox: every property the sandbox promises, checked
SELF_TEST = PRELUDE + f"""
import ctypes, json
checks = {{}}
checks["unprivileged"] = os.getuid() != 0 and os.geteuid() != 0
checks["view"] = open("{VIEW_MOUNT}/probe").read() == "ok"
open("{OUT_MOUNT}/probe", "w").write("ok")
checks["host hidden"] = not os.path.exists(sys.argv[1]) and not os.path.exists(sys.argv[2])
try:
    os.close(os.open("/proc/sys/kernel/core_pattern", os.O_WRONLY)); checks["sysctl read-only"] = False
except OSError:
    checks["sysctl read-only"] = True
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
nr = {{"x86_64": 248, "aarch64": 217}}.get(os.uname().machine)
if nr is not None:
    checks["keyring refused"] = libc.syscall(nr, b"user", b"mmh-probe", b"x", 1, -3) == -1
import mmh_bench.api, numpy
checks["packages"] = True
json.dump(checks, open("{OUT_MOUNT}/checks.json", "w"))
"""


@dataclass(frozen=True)
class SandboxStatus:
    ok: bool
    reason: str  # why not, with the fix; "" when ok


def _self_test() -> SandboxStatus:
    if os.environ.get("MMH_BENCH_SANDBOX", "1") == "0":
        return SandboxStatus(False, "MMH_BENCH_SANDBOX=0 turns the sandbox off")
    if shutil.which("bwrap") is None:
        return SandboxStatus(False, "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    try:
        program = seccomp_program()
    except (ImportError, OSError, RuntimeError) as exc:
        return SandboxStatus(False, f"no seccomp filter ({exc}); install libseccomp2 and pyseccomp")
    repo = Path(__file__).resolve().parents[3]
    with tempfile.TemporaryDirectory(prefix="mmh-selftest-") as tmp:
        view, out = Path(tmp, "view"), Path(tmp, "out")
        view.mkdir(), out.mkdir()
        (view / "probe").write_text("ok")
        argv = lambda v, o: [sys.executable, "-c", SELF_TEST, tmp, str(repo / ".git")]  # noqa: E731
        try:
            rc, tail = launch(Path(tmp), argv, sandbox=True, limits=Limits.from_env(timeout=120), threads=1,
                              program=program)
        except Exception as exc:  # noqa: BLE001 - any failure means: no sandbox
            return SandboxStatus(False, f"the bubblewrap self-test failed ({exc})")
        try:
            checks = json.loads((out / "checks.json").read_text())
        except (OSError, ValueError):
            return SandboxStatus(False, f"the bubblewrap self-test failed (exit {rc}: {tail[-400:]})")
    failed = [k for k, v in checks.items() if v is not True]
    if failed:
        return SandboxStatus(False, f"the bubblewrap self-test found these properties missing: {', '.join(failed)}")
    return SandboxStatus(True, "")


@lru_cache(maxsize=1)
def sandbox_status() -> SandboxStatus:
    """Whether sealed workers can run sandboxed here, and if not why (checked once per process)."""
    status = _self_test()
    if not status.ok:
        log.warning("no sandbox for sealed runs: %s", status.reason)
    return status


class SandboxUnavailable(RuntimeError):
    """Submitted code was to run sealed where no sandbox works; the message says why and the fix."""


def require_sandbox(what: str) -> None:
    """Refuse ``what`` (submit, verify, held-out evaluation) unless the sandbox works here."""
    status = sandbox_status()
    if not status.ok:
        raise SandboxUnavailable(f"{what} runs submitted code only inside the sandbox, and it does not work "
                                 f"here: {status.reason}")


_warned: set[str] = set()


def warn_unsealed(names: Iterable[str]) -> None:
    """Say loudly, once per name and process, that third-party code runs without the sandbox."""
    names = sorted(set(names) - _warned)
    if names and not sandbox_available():
        _warned.update(names)
        msg = (f"UNSEALED: {', '.join(names)} will run without the sandbox ({sandbox_status().reason}); "
               "its worker process holds no labels, but every file this user can read is open to it, and its "
               "results record isolation 'process'")
        log.warning(msg)
        print(f"mmh-bench: warning: {msg}", file=sys.stderr, flush=True)


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and passes the self-test (``MMH_BENCH_SANDBOX=0`` turns it off)."""
    return sandbox_status().ok


__all__ = ["SandboxStatus", "SandboxUnavailable", "require_sandbox", "sandbox_available", "sandbox_status",
           "warn_unsealed"]
