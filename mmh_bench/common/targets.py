"""``"module:attribute"`` targets: how builders, model loaders and other plug-ins are named without
importing them, so naming one costs nothing until it is used."""
from __future__ import annotations

import importlib
from typing import Any


def load_target(target: str) -> Any:
    """The object a ``"module:attribute"`` target names, importing its module."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
