import importlib
from os import path as osp

from basicsr.utils import scandir

# Import every '*_loss.py' file in this folder so that its classes register themselves (the BasicSR convention):
# adding a file adds an entry to the LOSS registry.
_folder = osp.dirname(osp.abspath(__file__))
_filenames = sorted(osp.splitext(osp.basename(v))[0] for v in scandir(_folder) if v.endswith('_loss.py'))
_modules = [importlib.import_module(f'lan_basicsr.losses.{name}') for name in _filenames]

from .loss_util import SelfSupervisedOutput, check_noisy, even_crop  # noqa: E402
from .nbr2nbr_loss import NEIGHBOUR_PAIRS, Nbr2NbrLoss, sample_neighbour_pairs, subsample  # noqa: E402
from .zsn2n_loss import ZSN2NLoss, pair_downsample  # noqa: E402

__all__ = [
    'SelfSupervisedOutput', 'check_noisy', 'even_crop', 'NEIGHBOUR_PAIRS', 'Nbr2NbrLoss', 'sample_neighbour_pairs',
    'subsample', 'ZSN2NLoss', 'pair_downsample'
]
