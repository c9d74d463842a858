import importlib
from os import path as osp

from basicsr.utils import scandir

# Import every '*_arch.py' file in this folder so that its classes register themselves (the BasicSR convention):
# adding a file adds an entry to the ARCH registry.
_folder = osp.dirname(osp.abspath(__file__))
_filenames = sorted(osp.splitext(osp.basename(v))[0] for v in scandir(_folder) if v.endswith('_arch.py'))
_modules = [importlib.import_module(f'lan_basicsr.archs.{name}') for name in _filenames]
