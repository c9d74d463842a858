import importlib
from os import path as osp

from basicsr.utils import scandir

# Import every '*_dataset.py' file in this folder so that its classes register themselves (the BasicSR convention):
# adding a file adds an entry to the DATASET registry.
_folder = osp.dirname(osp.abspath(__file__))
_filenames = sorted(osp.splitext(osp.basename(v))[0] for v in scandir(_folder) if v.endswith('_dataset.py'))
_modules = [importlib.import_module(f'lan_basicsr.data.{name}') for name in _filenames]

# Noise models register themselves in lan_basicsr.utils.registry.NOISE_REGISTRY (they are not datasets).
from . import camera_noise, noise_models  # noqa: E402,F401
