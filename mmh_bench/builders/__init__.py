"""Task builders, one module per family; importing this package registers them all."""
from . import synthetic  # noqa: F401
