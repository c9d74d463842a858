"""lan_basicsr: test-time noise adaptation (LAN, CVPR 2024) as a plugin for BasicSR.

Importing the package registers its architectures, losses, datasets, models and adapters into BasicSR's
registries (and ours). The compat shim runs first so that ``import basicsr`` works on torchvision >= 0.17.
"""
# isort: off
from . import compat  # noqa: F401  (must precede every basicsr import)
# isort: on
from . import adapters, archs, data, losses, metrics, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
