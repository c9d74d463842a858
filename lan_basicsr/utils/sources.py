"""Where the official checkpoints and datasets come from, so that a missing one is an error that says where to get it.

Nothing is downloaded: the hints name the release pages (the same table is in docs/data.md, "Weights and data").
"""
import re
from os import path as osp

__all__ = ['OFFICIAL_CHECKPOINTS', 'OFFICIAL_DATASETS', 'checkpoint_hint', 'dataset_hint']

# file name -> (what it is, where it is released, where the option files expect it)
OFFICIAL_CHECKPOINTS = {
    'real_denoising.pth': ('Restormer, SIDD real denoising', 'https://github.com/swz30/Restormer/releases/tag/v1.0'),
    'uformer_b.pth': ('Uformer-B, SIDD', 'the Google Drive link under "Pretrained models" in '
                      'https://github.com/ZhendongWang6/Uformer'),
    'dncnn_color_blind.pth': ('KAIR DnCNN, colour blind', 'https://github.com/cszn/KAIR/releases/tag/v1.0'),
    'dncnn_15.pth': ('KAIR DnCNN, grey, sigma 15', 'https://github.com/cszn/KAIR/releases/tag/v1.0'),
    'dncnn_25.pth': ('KAIR DnCNN, grey, sigma 25', 'https://github.com/cszn/KAIR/releases/tag/v1.0'),
    'dncnn_50.pth': ('KAIR DnCNN, grey, sigma 50', 'https://github.com/cszn/KAIR/releases/tag/v1.0'),
}

# dataset -> (where it is released, how to prepare it); matched against a dataroot path, case-insensitively
OFFICIAL_DATASETS = {
    'polyu': ('https://github.com/csjunxu/PolyU-Real-World-Noisy-Images-Dataset',
              'python tools/prepare_polyu.py --src <download> --dst datasets/PolyU'),
    'nam': ('https://github.com/woozzu/ccnoise (the 15 crops: folder Real_ccnoise_denoised_part of '
            'https://github.com/csjunxu/MCWNNM-ICCV2017)', 'python tools/prepare_nam.py --src <download> --dst '
            'datasets/Nam'),
    'sidd': ('https://abdokamel.github.io/sidd/ (SIDD-Medium sRGB; validation: ValidationNoisyBlocksSrgb.mat and '
             'ValidationGtBlocksSrgb.mat)', 'python tools/prepare_sidd.py --src <SIDD_Medium_Srgb/Data> --dst '
             'datasets/SIDD --val-dir <folder of the .mat files>'),
}

_TRAINED_HERE = re.compile(r'(?:^|[\\/])experiments[\\/]([^\\/]+)[\\/]models[\\/]net_\w+\.pth$')


def checkpoint_hint(path):
    """What to do about a missing checkpoint ``path``: its release page, or the command that trains it."""
    name = osp.basename(str(path))
    entry = OFFICIAL_CHECKPOINTS.get(name.lower())
    if entry is not None:
        return f'it is the official {entry[0]} checkpoint: download {name} from {entry[1]} and put it there'
    trained = _TRAINED_HERE.search(str(path).replace('\\', '/'))
    if trained:
        return (f'this project trains it: python tools/train.py -opt options/{trained.group(1)}.yml (or point '
                'path.pretrain_network_g at your own weights)')
    return 'fix the path (relative paths are relative to the current directory) or point it at your weights'


def dataset_hint(path):
    """What to do about a missing data folder ``path``: the dataset's release page and preparation command."""
    lowered = str(path).lower().replace('\\', '/')
    for key, (url, command) in OFFICIAL_DATASETS.items():
        if re.search(rf'(^|/){key}(/|_|$)', lowered) or (key == 'nam' and 'cc15' in lowered):
            return f'download it from {url} and prepare it: {command}'
    return 'prepare the data (docs/data.md) or fix the path (relative to the current directory)'
