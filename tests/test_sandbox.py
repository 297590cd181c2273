"""The red team: one hostile detector per way out of the sandbox, each scoring at chance, refused,
or failing alone with a clear reason while the run goes on.

These tests require the sandbox: where bubblewrap is missing or fails its self-test they fail
(naming the reason), never skip, so a green run means the sandbox was in force. Probes that touch
kernel settings open them for writing and write nothing.
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
from typing import Any

import pytest

import mmh_bench as mb
from mmh_bench.evaluation.runner import evaluate_pair, resolve_detector
from mmh_bench.evaluation.sealed.bwrap import OUT_MOUNT, Limits, readable_roots
from mmh_bench.evaluation.sealed.selftest import sandbox_status
from mmh_bench.api.detector import detector_group
from mmh_bench.registry import RegistryError, make_detector
from mmh_bench.task.build import build_task
from mmh_bench.task.spec import load_spec

HERE = Path(__file__).parent
REPO = HERE.parent
CHANCE = 0.1


class Found(RuntimeError):
    """How a probe reports what it reached: the result's error carries it as JSON."""


def report(**found: object) -> None:
    raise Found("PROBE " + json.dumps(found, sort_keys=True))


def findings(res: Any) -> dict:
    assert res.status == "failed" and "PROBE " in (res.error or ""), res.error
    return json.loads(res.error.split("PROBE ", 1)[1])


# -- probes (module level: the sealed worker imports them by name) ------------------------------
class GitProbe(mb.Detector):
    """Row 1: the checkout's .git objects (the published instances and their labels)."""
    name, access = "probe-git", mb.Access.SAMPLES

    def __init__(self, repo: str = "") -> None:
        self.repo = repo

    def fit(self, ctx):
        git = Path(self.repo) / ".git"
        report(git=git.exists(), instances=(Path(self.repo) / "leaderboard" / "instances").exists(),
               checkout=(Path(self.repo) / "README.md").exists())


class OtherCacheProbe(mb.Detector):
    """Row 2: another build cache or an --instances folder: read its labels if it can be reached."""
    name, access = "probe-cache", mb.Access.SAMPLES

    def __init__(self, where: str = "") -> None:
        self.where = where

    def fit(self, ctx):
        hits = sorted(str(p) for p in Path(self.where).rglob("instance.npz")) if Path(self.where).exists() else []
        report(visible=Path(self.where).exists(), labels=hits[:3])


class KeyWriter(mb.Detector):
    """Row 4: launder labels through the kernel keyring (write side: a training-set reader)."""
    name, access = "probe-key-write", mb.Access.TRAIN_DATA

    def fit(self, ctx):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        nr = {"x86_64": 248, "aarch64": 217}[os.uname().machine]  # add_key
        got = libc.syscall(nr, b"user", b"mmh-labels", b"0101", 4, -4)  # the user keyring
        report(add_key=int(got), errno=errno.errorcode.get(ctypes.get_errno(), "0"))


class KeyReader(mb.Detector):
    """Row 4, read side: a samples-only detector looks the key up."""
    name, access = "probe-key-read", mb.Access.SAMPLES

    def fit(self, ctx):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        nr = {"x86_64": 250, "aarch64": 219}[os.uname().machine]  # keyctl
        got = libc.syscall(nr, 10, -4, b"user", b"mmh-labels", 0)  # KEYCTL_SEARCH
        report(search=int(got), errno=errno.errorcode.get(ctypes.get_errno(), "0"))


SYSCTLS = ("kernel/core_pattern", "vm/drop_caches", "kernel/panic", "vm/overcommit_memory")


class SysctlProbe(mb.Detector):
    """Row 5: host-wide kernel settings, opened for writing (nothing written)."""
    name, access = "probe-sysctl", mb.Access.SAMPLES

    def fit(self, ctx):
        writable = []
        for key in SYSCTLS:
            try:
                os.close(os.open(f"/proc/sys/{key}", os.O_WRONLY))
                writable.append(key)
            except OSError:
                pass
        report(writable=writable, uid=os.getuid())


class SocketProbe(mb.Detector):
    """Row 6: a host Unix socket, by path and in the abstract namespace."""
    name, access = "probe-socket", mb.Access.SAMPLES

    def __init__(self, path: str = "", abstract: str = "") -> None:
        self.path, self.abstract = path, abstract

    def fit(self, ctx):
        out = {}
        for key, addr in (("path", self.path), ("abstract", "\0" + self.abstract)):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                s.connect(addr)
                out[key] = s.recv(16).decode()
            except OSError as exc:
                out[key] = type(exc).__name__
            finally:
                s.close()
        report(**out)


class RuleProbe(mb.Detector):
    """Row 7: the labelling rule through the training index."""
    name, access = "probe-rule", mb.Access.TRAIN_DATA

    def fit(self, ctx):
        rule = getattr(ctx.train_index, "rule", None)
        self.labels_ = None if rule is None else rule.apply(ctx.train_index, ctx.samples.x)["memorized"]

    def score(self, batch, ctx):
        if self.labels_ is None:
            report(rule=False)
        return np.asarray(self.labels_, dtype=float)[batch.index]


class CondThroughModel(mb.Detector):
    """Row 8: conditional predictions with Access.MODEL only, through the raw network (uncounted
    before): the score is how far any class's prediction lies from the unconditional one."""
    name, access = "probe-model-cond", mb.Access.MODEL

    def fit(self, ctx):
        try:
            ctx.model.net
            self.blocked_ = False
        except AttributeError:
            self.blocked_ = True
        import torch
        self.model_ = ctx._model  # what Python cannot hide: the worker's own object
        self.net_ = self.model_.net
        self.k_ = self.net_.config["n_classes"]
        self.torch_ = torch

    def score(self, batch, ctx):
        torch = self.torch_
        y = torch.as_tensor(batch.x.reshape(len(batch), -1), dtype=torch.float32)
        t = torch.full((len(batch),), 0.3)
        with torch.no_grad():
            null = self.net_(y, t, torch.full((len(batch),), self.k_))
            gaps = [(self.net_(y, t, torch.full((len(batch),), k)) - null).norm(dim=1) for k in range(self.k_)]
        if not self.blocked_:
            raise RuntimeError("ctx.model.net was reachable")
        return torch.stack(gaps).max(0).values.numpy().astype(float)


class SwapsResult(mb.Detector):
    """Row 9: after the worker writes its result, put a FIFO (or a link to a host file) in its place."""
    name, access = "probe-swap", mb.Access.SAMPLES

    def __init__(self, how: str = "fifo") -> None:
        self.how = how

    def score(self, batch, ctx):
        def swap() -> None:
            target = Path(OUT_MOUNT) / ("result.json" if self.how == "fifo" else "scores.npy")
            target.unlink(missing_ok=True)
            if self.how == "fifo":
                os.mkfifo(target)
            else:
                target.symlink_to("/etc/passwd")
        atexit.register(swap)
        return np.zeros(len(batch))


class Hog(mb.Detector):
    """Row 10: memory, disk (OUT or /tmp) or threads beyond the limits."""
    name, access = "probe-hog", mb.Access.SAMPLES

    def __init__(self, what: str = "memory") -> None:
        self.what = what

    def fit(self, ctx):
        if self.what == "memory":
            block = np.ones(3 << 30, dtype=np.uint8)  # 3 GiB, touched
            report(allocated=int(block.sum() > 0))
        if self.what in ("out", "tmp"):
            folder = Path(OUT_MOUNT if self.what == "out" else "/tmp")
            chunk = b"x" * (8 << 20)
            for i in range(128):  # 1 GiB in files of 8 MB
                (folder / f"fill-{i}").write_bytes(chunk)
                time.sleep(0.02)
            report(wrote_mb=1024)
        if self.what == "threads":
            stop = threading.Event()
            for i in range(400):
                threading.Thread(target=stop.wait, daemon=True).start()
            report(threads=400)


class BadName(mb.Detector):
    """Row 11: a name that is a path."""
    name, access = "probe/../../escape", mb.Access.SAMPLES

    def score(self, batch, ctx):
        return np.zeros(len(batch))


class ClaimsGroup(mb.Detector):
    """A detector that names a group above its access (ranked sample-side while reading the training set)."""
    name, access, group = "probe-claims", mb.Access.TRAIN_DATA, "sample-side"

    def score(self, batch, ctx):
        return np.zeros(len(batch))


class ClaimsReference(mb.Detector):
    name, access, reference = "probe-reference", mb.Access.TRAIN_DATA, True

    def score(self, batch, ctx):
        return np.zeros(len(batch))


class HumbleChance(mb.Detector):
    name, access, group = "probe-humble", mb.Access.SAMPLES, "chance"

    def score(self, batch, ctx):
        return np.zeros(len(batch))


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _sandbox_in_force():
    status = sandbox_status()
    assert status.ok, f"the red-team tests need the sandbox, and it does not work here: {status.reason}"


@pytest.fixture(scope="module")
def tiny_cond():
    return build_task(load_spec(HERE / "data" / "tiny_cond.toml"), progress=False)


def sealed(inst, det, **kw):
    res = evaluate_pair(inst, det, isolation="sealed", **kw)
    assert res.isolation == "sandbox", res
    return res


def _auroc(res):
    return res.metrics.auroc if res.metrics is not None else None


# -- the rows of the table -------------------------------------------------------------------------
def test_no_checkout_git_or_instances_in_view(tiny):
    got = findings(sealed(tiny, GitProbe(repo=str(REPO))))
    assert got == {"git": False, "instances": False, "checkout": False}


def test_another_cache_or_instances_folder_is_out_of_reach(tiny, tmp_path_factory):
    other = tmp_path_factory.mktemp("other-cache")  # not this run's cache, not passed to hide
    shutil.copytree(tiny.root, other / "tiny", symlinks=True)
    assert list(other.rglob("instance.npz"))
    got = findings(sealed(tiny, OtherCacheProbe(where=str(other))))
    assert got == {"visible": False, "labels": []}
    far = Path.home() / f".mmh-probe-instances-{os.getpid()}"  # an --instances DIR outside leaderboard/
    shutil.copytree(tiny.root, far / "tiny", symlinks=True)
    try:
        assert findings(sealed(tiny, OtherCacheProbe(where=str(far)))) == {"visible": False, "labels": []}
    finally:
        shutil.rmtree(far)


def test_a_checkout_under_tmp_is_never_bound(monkeypatch, tmp_path):
    """Only the environment inside it is: a venv in /tmp/ci/.venv, never /tmp/ci with its .git."""
    checkout = tmp_path / "ci"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".venv").mkdir()
    (checkout / "leaderboard").mkdir()
    monkeypatch.setattr("sys.prefix", str(checkout / ".venv"))
    monkeypatch.setattr("sys.path", [*__import__("sys").path, str(checkout), ""])
    monkeypatch.chdir(checkout)
    roots = readable_roots()
    assert checkout / ".venv" in roots and checkout not in roots
    assert not [r for r in roots if (r / ".git").exists()]


def test_keyring_is_refused_on_both_sides(tiny):
    wrote = findings(sealed(tiny, KeyWriter()))
    assert wrote == {"add_key": -1, "errno": "EPERM"}
    read = findings(sealed(tiny, KeyReader()))
    assert read == {"search": -1, "errno": "EPERM"}


def test_kernel_settings_are_not_writable(tiny):
    got = findings(sealed(tiny, SysctlProbe()))
    assert got["writable"] == [] and got["uid"] != 0


def test_host_unix_sockets_are_unreachable(tiny):
    path = Path.home() / f".mmh-probe-{os.getpid()}.sock"
    abstract = f"mmh-probe-{os.getpid()}"
    servers = []
    for addr in (str(path), "\0" + abstract):
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(addr)
        srv.listen(4)
        srv.settimeout(0.2)
        servers.append(srv)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            for srv in servers:
                try:
                    conn, _ = srv.accept()
                    conn.sendall(b"host")
                    conn.close()
                except OSError:
                    pass
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # the host itself does reach it
        probe.connect(str(path))
        assert probe.recv(16) == b"host"
        probe.close()
        got = findings(sealed(tiny, SocketProbe(path=str(path), abstract=abstract)))
        assert got["path"] == "FileNotFoundError" and got["abstract"] == "ConnectionRefusedError", got
    finally:
        stop.set()
        th.join()
        for srv in servers:
            srv.close()
        path.unlink(missing_ok=True)


def test_the_labelling_rule_goes_to_the_reference_alone(tiny):
    inside = evaluate_pair(tiny, RuleProbe(), isolation="in-process")  # trusted code in the evaluator
    assert inside.status == "ok" and inside.metrics.auroc > 0.99
    assert findings(sealed(tiny, RuleProbe())) == {"rule": False}
    ref = sealed(tiny, make_detector("copy-rule"))  # the shipped reference, sealed: still exact
    assert ref.status == "ok" and ref.metrics.auroc == 1.0


def test_groups_follow_access_and_untrusted_code_never_claims_more():
    for cls, why in ((ClaimsGroup, "may only place itself lower"), (ClaimsReference, "only the shipped copy-rule")):
        with pytest.raises(RegistryError, match=why):
            resolve_detector(f"test_sandbox:{cls.__name__}", "auto")
    humble = resolve_detector("test_sandbox:HumbleChance", "auto")
    assert detector_group(humble) == "chance"
    with pytest.raises(ValueError, match="follows its access"):
        detector_group(ClaimsGroup())  # in-process too


def test_model_access_reaches_no_conditional_prediction_and_pays_for_every_call(tiny_cond):
    inside = evaluate_pair(tiny_cond, CondThroughModel(), isolation="in-process")
    assert inside.status == "ok"
    res = sealed(tiny_cond, CondThroughModel())
    assert res.status == "ok", res.error
    assert _auroc(res) == 0.5  # every class's prediction is the unconditional one: a constant score
    k = 2  # tiny_cond's classes; each sample costs the null and every class's prediction
    assert res.cost.nfe_per_sample >= k + 1, res.cost


@pytest.mark.parametrize("how", ["fifo", "link"])
def test_output_swapped_for_a_fifo_or_link_fails_alone(tiny, how):
    t0 = time.monotonic()
    res = sealed(tiny, SwapsResult(how=how), timeout=60)
    assert time.monotonic() - t0 < 60
    assert res.status == "failed"
    assert "not a regular file" in res.error or "cannot be read back" in res.error, res.error


@pytest.mark.parametrize("what, limit, env, words", [
    ("memory", "memory limit of 1024 MB", "MMH_BENCH_SANDBOX_MEMORY_MB", "Unable to allocate"),
    ("out", "disk limit of 64 MB", "MMH_BENCH_SANDBOX_DISK_MB", "over the sandbox's"),
    ("tmp", "disk limit of 64 MB", "MMH_BENCH_SANDBOX_DISK_MB", "over the sandbox's"),
    ("threads", "process limit of 64 tasks", "MMH_BENCH_SANDBOX_PROCESSES", "thread"),
])
def test_resources_beyond_the_limits_fail_that_pair_naming_the_limit(tiny, monkeypatch, what, limit, env, words):
    monkeypatch.setenv(env, limit.split(" of ")[1].split()[0])
    res = sealed(tiny, Hog(what=what), timeout=120)
    assert res.status == "failed" and limit in res.error and words in res.error, res.error
    ok = sealed(tiny, HumbleChance())  # the next pair runs as usual
    assert ok.status == "ok"


def test_time_limit_has_a_default_and_ends_a_sleeper(tiny, monkeypatch):
    monkeypatch.delenv("MMH_BENCH_SANDBOX_TIMEOUT", raising=False)
    assert Limits.from_env().timeout == 3600
    from test_sealed import Sleeps
    monkeypatch.setenv("MMH_BENCH_SANDBOX_TIMEOUT", "5")
    t0 = time.monotonic()
    res = sealed(tiny, Sleeps())
    assert time.monotonic() - t0 < 60
    assert res.status == "failed" and "time limit of 5 s" in res.error, res.error


def test_a_name_that_is_a_path_is_refused_at_describe():
    with pytest.raises(RegistryError, match="name the result schema refuses"):
        resolve_detector("test_sandbox:BadName", "auto")
