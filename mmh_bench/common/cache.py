"""Where builds, prompt files and other downloads are cached: one folder, chosen once."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$MMH_BENCH_CACHE``, else ``$XDG_CACHE_HOME/mmh-bench``, else ``~/.cache/mmh-bench``."""
    env = os.environ.get("MMH_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmh-bench"
