"""The wheel carries every package and the page's own files.

pyproject.toml lists its packages by hand (two of them are mapped from other folders:
``baselines`` and ``tasks``), so a new subpackage, or a data folder such as the board's
``static/``, is easy to forget: setuptools then warns at install, or the wheel lacks it (the
shared ``mmh_bench.common`` was missing once). Discovery is the reference here.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).parent.parent


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_packages_list_every_discovered_package_and_data_folder():
    found = set(find_namespace_packages(where=str(ROOT), include=["mmh_bench", "mmh_bench.*"]))
    assert "mmh_bench.leaderboard.board.static" in found and "mmh_bench.common" in found
    listed = set(_config()["packages"])
    mapped = set(_config()["package-dir"])
    assert listed == found | mapped, (sorted(found | mapped - listed), sorted(listed - found - mapped))


def test_the_built_wheel_carries_static_and_common(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("mmh_bench", "baselines", "tasks"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), "-v"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "is absent from the `packages` configuration" not in run.stdout + run.stderr
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("mmh_bench/leaderboard/board/static/board.css", "mmh_bench/leaderboard/board/static/board.js",
              "mmh_bench/common/fpr.py", "mmh_bench_tasks/mmh-toy.toml", "mmh_bench_baselines/chance.py"):
        assert f in names, f
