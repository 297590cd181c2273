"""The bubblewrap sandbox a sealed worker runs in: an allow-list of folders, an unprivileged uid,
a seccomp filter and resource limits.

Why each part:

- **Allow-list, not holes.** The worker's root is an empty tmpfs holding only the system's
  programs and libraries (``/usr`` and its links), a few files of ``/etc`` the loader needs, the
  interpreter and its installed packages, mmh-bench's own code, the view (read-only), its OUT
  folder and a private ``/tmp``. No checkout, ``.git``, build cache, instances folder, results,
  home folder or host socket exists there, so none can be read, whatever their permissions.
- **Unprivileged uid.** Run by root, the worker drops to :data:`SANDBOX_UID` (``nobody``) inside
  the sandbox before any submitted code is imported (bwrap keeps only CAP_SETUID/SETGID for
  that), so ``/proc/sys`` is not writable and no capability is left; run by another user, it
  runs as that user in a user namespace of its own. Nested user namespaces are refused (seccomp).
- **Seccomp.** The kernel keyrings are shared by every process of a uid (two workers would share
  one), so ``keyctl``/``add_key``/``request_key`` are refused, with the calls containers refuse
  (``ptrace``, ``mount``, module loading, ``bpf``, ``unshare``/``setns``, new namespaces, ...).
- **Limits** (:class:`Limits`): address space for data (``RLIMIT_DATA``), processes and threads
  (``RLIMIT_NPROC``), the size of any one file (``RLIMIT_FSIZE``) and, watched from outside, the
  total written to OUT and ``/tmp`` and the wall-clock time.

:func:`~.selftest.sandbox_status` runs a self-test of all of it once per process; where it fails, sealed
runs cannot be sandboxed and the reason says why.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

#: mount points inside the sandbox (under its private /tmp)
VIEW_MOUNT, OUT_MOUNT = "/tmp/mmh-view", "/tmp/mmh-out"
#: the uid and gid a worker started by root runs as
SANDBOX_UID = SANDBOX_GID = 65534
#: set in the worker's environment when it must drop to SANDBOX_UID itself (started by root)
DROP_ENV = "MMH_BENCH_SANDBOX_DROP"
#: the worker's rlimits, ``DATA:FSIZE:NPROC`` (set by its first lines, not between fork and exec,
#: which is unsafe in a threaded evaluator such as a Dask worker)
RLIMITS_ENV = "MMH_BENCH_SANDBOX_RLIMITS"
#: system folders bound read-only (or recreated as the same symbolic links)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: the only files of /etc the worker sees (dynamic loader, time zone, user names)
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
               "alternatives")
#: system calls refused with EPERM (keyrings, tracing, mounts, modules, namespaces, kernel state)
DENIED_SYSCALLS = ("keyctl", "add_key", "request_key", "ptrace", "process_vm_readv", "process_vm_writev",
                   "perf_event_open", "bpf", "userfaultfd", "kexec_load", "kexec_file_load", "init_module",
                   "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "syslog", "mount",
                   "umount2", "pivot_root", "chroot", "open_by_handle_at", "name_to_handle_at", "unshare", "setns",
                   "mount_setattr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
                   "quotactl", "iopl", "ioperm", "settimeofday", "clock_settime", "adjtimex", "sethostname",
                   "setdomainname", "lookup_dcookie", "vhangup")
#: clone() flags that make a namespace (mount, cgroup, uts, ipc, user, pid, net)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


@dataclass(frozen=True)
class Limits:
    """What one sealed worker may use; exceeding any fails that pair alone, naming the limit.

    Set per run by ``--memory-limit``, ``--process-limit``, ``--disk-limit`` and ``--timeout``
    (which write the ``MMH_BENCH_SANDBOX_*`` variables :meth:`from_env` reads, so local Dask
    workers inherit them)."""

    memory_mb: int  # RLIMIT_DATA: heap and anonymous mappings of the worker
    processes: int  # RLIMIT_NPROC: processes and threads of the sandbox's uid
    disk_mb: int  # OUT and /tmp together (and any one file)
    timeout: float  # seconds of wall-clock time

    ENV = {"memory_mb": "MMH_BENCH_SANDBOX_MEMORY_MB", "processes": "MMH_BENCH_SANDBOX_PROCESSES",
           "disk_mb": "MMH_BENCH_SANDBOX_DISK_MB", "timeout": "MMH_BENCH_SANDBOX_TIMEOUT"}
    FLAGS = {"memory_mb": "--memory-limit", "processes": "--process-limit", "disk_mb": "--disk-limit",
             "timeout": "--timeout"}

    @staticmethod
    def defaults() -> dict[str, float]:
        """Half the machine's memory (at least 2 GiB), 1024 tasks, 4 GiB written, one hour."""
        try:
            ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        except (ValueError, OSError):
            ram_mb = 8192
        return {"memory_mb": max(2048, ram_mb // 2), "processes": 1024, "disk_mb": 4096, "timeout": 3600.0}

    @classmethod
    def from_env(cls, timeout: float | None = None) -> "Limits":
        vals = cls.defaults()
        for key, var in cls.ENV.items():
            text = os.environ.get(var, "").strip()
            if text:
                try:
                    vals[key] = float(text)
                except ValueError:
                    raise ValueError(f"{var}={text!r} is not a number") from None
                if not vals[key] > 0:
                    raise ValueError(f"{var} must be positive, got {text!r}")
        if timeout is not None:
            vals["timeout"] = float(timeout)
        return cls(memory_mb=int(vals["memory_mb"]), processes=int(vals["processes"]),
                   disk_mb=int(vals["disk_mb"]), timeout=float(vals["timeout"]))

    def describe(self, key: str) -> str:
        """The limit ``key`` in words, with the option that changes it."""
        value = getattr(self, key)
        what = {"memory_mb": f"memory limit of {value} MB", "processes": f"process limit of {value} tasks",
                "disk_mb": f"disk limit of {value} MB (OUT and /tmp together)",
                "timeout": f"time limit of {value:g} s"}[key]
        return f"the sandbox's {what} (change it with {self.FLAGS[key]})"

    def env(self) -> dict[str, str]:
        """The rlimits (heap, file size, tasks) as the worker's first lines (:data:`PRELUDE`) set them."""
        return {RLIMITS_ENV: f"{self.memory_mb * 2**20}:{self.disk_mb * 2**20}:{self.processes}"}


def set_limit_env(**values: float | None) -> None:
    """Write the CLI's limit options where :meth:`Limits.from_env` (here and in local workers) reads them."""
    for key, value in values.items():
        if value is not None:
            os.environ[Limits.ENV[key]] = f"{value:g}"


# -- what the worker may read ----------------------------------------------------------------------
def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def readable_roots(hide: Iterable[Path] = ()) -> list[Path]:
    """Folders bound read-only besides the system's: the interpreter and its environment,
    mmh-bench's code, and ``sys.path`` entries that hold no repository (``.git``) and none of
    ``hide`` (caches, results)."""
    import mmh_bench
    import mmh_bench_baselines
    hide = [Path(h).resolve() for h in hide]
    system = [Path(d) for d in SYSTEM_DIRS]
    cands = [Path(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}]
    cands += [Path(sys.executable).resolve().parent, Path(mmh_bench.__file__).resolve().parent,
              Path(mmh_bench_baselines.__file__).resolve().parent]
    for entry in sys.path:
        p = Path(entry or ".").resolve()
        if p.is_dir() and p != Path("/") and not (p / ".git").exists() and not any(p in h.parents or p == h
                                                                                    for h in hide):
            cands.append(p)
    out: list[Path] = []
    for p in sorted({c.resolve() for c in cands if c.exists()}, key=lambda q: len(q.parts)):
        if not _inside(p, system) and not _inside(p, out):
            out.append(p)
    return out


def exposed_hidden(roots: Iterable[Path], hide: Iterable[Path]) -> list[Path]:
    """Folders of ``hide`` that a bound root would expose (a cache inside the environment)."""
    return [h for h in (Path(x).resolve() for x in hide) if _inside(h, roots)]


def _gpu_devices() -> list[str]:
    return sorted(glob.glob("/dev/nvidia*")) + (["/dev/dri"] if os.path.exists("/dev/dri") else [])


def seccomp_program() -> bytes:
    """The seccomp BPF program (libseccomp through pyseccomp) refusing :data:`DENIED_SYSCALLS`,
    ``clone`` with namespace flags, and ``clone3`` (ENOSYS, so the C library falls back to clone)."""
    import pyseccomp as sc
    flt = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):  # not a system call of this architecture
            pass
    for flag in NAMESPACE_FLAGS:  # one rule a flag: any of them refuses the call
        flt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    try:
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    except (RuntimeError, ValueError, OSError):
        pass
    with tempfile.TemporaryFile() as fh:
        flt.export_bpf(fh)
        fh.seek(0)
        return fh.read()


def bwrap_command(view: Path, out: Path, scratch: Path, argv: list[str], *, seccomp_fd: int,
                  hide: Iterable[Path] = ()) -> list[str]:
    """The bwrap command line running ``argv`` with ``view`` at :data:`VIEW_MOUNT` (read-only),
    ``out`` at :data:`OUT_MOUNT` and ``scratch`` as ``/tmp``; nothing else of the host's files
    but the allow-list."""
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--hostname", "mmh-sealed"]
    root = os.geteuid() == 0
    if root:  # the worker drops to SANDBOX_UID itself (DROP_ENV); nothing else is kept
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:  # nested user namespaces are refused by the seccomp filter (unshare, clone flags), as on
        cmd += ["--unshare-user"]  # bwrap releases older than --disable-userns (0.8)
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    for name in ETC_ENTRIES:
        if os.path.exists(f"/etc/{name}"):
            cmd += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    cmd += ["--dev", "/dev", "--proc", "/proc", "--bind", str(scratch), "/tmp"]
    made: set[Path] = set()
    for p in readable_roots(hide):  # after /tmp: a checkout or venv under /tmp is bound over the scratch
        for parent in reversed(p.parents[:-1]):  # traversable by the worker (bwrap copies 0700 from /root)
            if parent not in made and parent != Path("/tmp"):
                cmd += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        cmd += ["--ro-bind", str(p), str(p)]
    gpus = _gpu_devices()
    for dev in gpus:
        cmd += ["--dev-bind", dev, dev]  # GPUs stay usable; no other device (e.g. raw disks) is
    if gpus:
        cmd += ["--ro-bind", "/sys", "/sys"]  # the GPU driver reads its topology there
    cmd += ["--ro-bind", str(view), VIEW_MOUNT, "--bind", str(out), OUT_MOUNT, "--chdir", "/tmp",
            "--seccomp", str(seccomp_fd)]
    return cmd + ["--", *argv]


def prepare_folders(tmp: Path, view: Path, out: Path, scratch: Path) -> None:
    """Let the worker's uid read the view and write OUT and ``/tmp`` (root drops to nobody).

    View files not readable by others (the cache writes 0600) that are hard links into the cache
    are replaced by copies, so no cache file's permissions change."""
    if os.geteuid() != 0:
        return
    os.chmod(tmp, 0o711)
    for dirpath, dirs, files in os.walk(view):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mode & 0o004:
                continue
            if st.st_nlink > 1:
                shutil.copyfile(path, path + ".copy")
                os.replace(path + ".copy", path)
            os.chmod(path, 0o644)
    for d in (out, scratch):
        os.chown(d, SANDBOX_UID, SANDBOX_GID)
        os.chmod(d, 0o711)  # root inside the sandbox (no DAC override) still enters it


#: what every worker's interpreter runs first, before it imports anything of the package (no
#: module may run as root: importing one already runs code): its rlimits (hard, so never raised
#: again), then, started by root, the drop to SANDBOX_UID; then ``python -m`` of its module
PRELUDE = (f"import os, sys, resource\n"
           f"_lim = os.environ.pop({RLIMITS_ENV!r}, '')\n"
           f"if _lim:\n"
           f"    for _r, _v in zip((resource.RLIMIT_DATA, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC), _lim.split(':')):\n"
           f"        resource.setrlimit(_r, (int(_v), int(_v)))\n"
           f"    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
           f"if os.environ.pop({DROP_ENV!r}, None) == '1':\n"
           f"    os.setgroups([]); os.setresgid({SANDBOX_GID}, {SANDBOX_GID}, {SANDBOX_GID})\n"
           f"    os.setresuid({SANDBOX_UID}, {SANDBOX_UID}, {SANDBOX_UID})\n"
           f"    if 0 in os.getresuid(): sys.exit('the sealed worker could not drop root')\n")


def python_argv(module: str, args: list[str]) -> list[str]:
    """``python -m module args`` after :data:`PRELUDE` (limits, and the drop from root)."""
    code = PRELUDE + f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    return [sys.executable, "-c", code, *args]


__all__ = ["DROP_ENV", "Limits", "OUT_MOUNT", "PRELUDE", "SANDBOX_UID", "VIEW_MOUNT", "bwrap_command", "python_argv",
           "exposed_hidden", "prepare_folders", "readable_roots", "seccomp_program", "set_limit_env"]
