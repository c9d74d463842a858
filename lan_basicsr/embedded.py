"""The denoisers shipped inside the package (``lan_basicsr/weights/``), so that the demo and the own-photos tools run
with nothing downloaded. How each file was made: ``lan_basicsr/weights/README.md``.

``EMBEDDED_MODELS[name]`` gives the file and the ``network_g`` block that loads it; ``DEFAULT_REAL_PHOTO_MODEL`` names
the one the own-photos tools use unless told otherwise (the model best suited to real camera noise).
"""
from copy import deepcopy
from os import path as osp

from lan_basicsr.utils.errors import OptionError

__all__ = ['EMBEDDED_MODELS', 'DEFAULT_REAL_PHOTO_MODEL', 'WEIGHTS_DIR', 'embedded_model']

WEIGHTS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'weights')

_SMALL_DNCNN = {'type': 'DnCNN', 'in_nc': 3, 'out_nc': 3, 'nc': 32, 'nb': 8, 'act_mode': 'R'}

EMBEDDED_MODELS = {
    'dncnn_gaussian': {
        'file':
        'dncnn_gaussian.pth',
        'network_g':
        _SMALL_DNCNN,
        'description':
        'colour DnCNN (57k parameters) trained on Gaussian noise sigma 25 (options/train_dncnn_gaussian.yml)',
    },
    'dncnn_camera': {
        'file': 'dncnn_camera.pth',
        'network_g': {
            'type': 'DnCNN',
            'in_nc': 3,
            'out_nc': 3,
            'nc': 32,
            'nb': 12,
            'act_mode': 'R'
        },
        'description':
        'colour DnCNN (94k parameters) trained on simulated camera noise (options/train_dncnn_camera.yml)',
    },
    'dncnn_gaussian_meta': {
        'file': 'dncnn_gaussian_meta.pth',
        'network_g': _SMALL_DNCNN,
        'description':
        'dncnn_gaussian meta-trained for FullTrainable adaptation (options/train_meta_dncnn_gaussian.yml)',
    },
}

DEFAULT_REAL_PHOTO_MODEL = 'dncnn_camera'


def embedded_model(name=None):
    """``(checkpoint path, network_g dict)`` of an embedded model (default: :data:`DEFAULT_REAL_PHOTO_MODEL`)."""
    name = DEFAULT_REAL_PHOTO_MODEL if name is None else name
    if name not in EMBEDDED_MODELS:
        raise OptionError(f'embedded model "{name}" does not exist (shipped: {", ".join(sorted(EMBEDDED_MODELS))})')
    entry = EMBEDDED_MODELS[name]
    return osp.join(WEIGHTS_DIR, entry['file']), deepcopy(entry['network_g'])
