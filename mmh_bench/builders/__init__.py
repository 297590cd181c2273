"""Task builders, one module per family; importing this package registers them all."""
from . import synthetic  # noqa: F401
from . import lid  # noqa: F401
from . import image  # noqa: F401
from . import stable_diffusion  # noqa: F401
from . import text_to_image  # noqa: F401
