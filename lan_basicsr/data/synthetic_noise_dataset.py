"""Clean images plus a registered synthetic noise model applied on the fly (seen vs unseen noise, no download)."""
import os
import random
from os import path as osp

import numpy as np
from basicsr.utils import FileClient, get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import IO_BACKEND, Bool, DirPath, Int, ListOf, OneOf, Registered, Str, TrainOnly
from lan_basicsr.utils.registry import NOISE_REGISTRY, build_from_registry
from .data_util import (COLOR_OPTION, CROP_OPTION, TRAIN_AUGMENT_OPTIONS, ColorMode, check_lmdb_keys, fixed_crop,
                        list_images, load_image, option_where, parse_crop_opt, read_lmdb_meta_info, require_path,
                        train_crop_augment)

__all__ = ['SyntheticNoiseDataset', 'SKIMAGE_PHOTOS', 'skimage_image_path']

# Colour photographs shipped inside the scikit-image wheel (no pooch download). Grayscale ones (camera, moon, coins,
# brick, grass, gravel) can be named too; they are replicated to three channels unless ``color: gray``.
SKIMAGE_PHOTOS = ('astronaut', 'chelsea', 'coffee', 'hubble_deep_field', 'ihc', 'motorcycle_left', 'motorcycle_right',
                  'retina', 'rocket')


def _skimage_data_dir(where):
    try:
        import skimage.data
    except ImportError:
        raise OptionError(f'{where}: scikit-image is not installed (pip install scikit-image)') from None
    return osp.dirname(osp.abspath(skimage.data.__file__))


def skimage_image_path(name, where='skimage_images'):
    """Path of a photograph bundled in the scikit-image package; anything that needs a download is refused."""
    folder = _skimage_data_dir(where)
    for ext in ('.png', '.jpg'):
        path = osp.join(folder, name + ext)
        if osp.isfile(path):
            return path
    available = sorted(osp.splitext(f)[0] for f in os.listdir(folder) if f.endswith(('.png', '.jpg')))
    raise OptionError(f'{where}: "{name}" is not an image bundled with scikit-image (images that need a download '
                      f'are not supported); bundled: {", ".join(available)}')


@DATASET_REGISTRY.register()
class SyntheticNoiseDataset(ColorMode, data.Dataset):
    """Clean images with synthetic noise from ``NOISE_REGISTRY``, drawn on the fly with a per-image seed.

    Options:
        dataroot_gt (str): folder of clean images (recursive) or ``.lmdb`` (``io_backend: {type: lmdb}``); or
        skimage_images (list[str] | 'photos'): photographs bundled with scikit-image by name ('photos': the colour
            ones in ``SKIMAGE_PHOTOS``). Exactly one of the two.
        split (str): ``all`` (default), ``train`` (without the held-out images) or ``heldout``.
        heldout (int | list[str]): the last N images (in sorted order) or these image names. Default: 0.
        noise (dict): ``{type: GaussianNoise, sigma: 25}`` or any NOISE_REGISTRY entry with its arguments.
        seed (int): base seed. Default: 0. Test/val: the noise of image ``i`` is drawn from
            ``numpy.random.default_rng(seed + i)``, the same in every epoch and process. Train: from a seed drawn from
            Python's ``random`` (seeded per worker by BasicSR), so it differs per epoch but is reproducible with
            ``manual_seed``; ``fixed_noise: true`` uses ``seed + i`` in training as well.
        clip (bool): clip the noisy image to [0, 1], as a sensor saturates. Default: true.
        cache_images (bool): keep decoded clean images in memory (per worker); default true for ``skimage_images``
            (a few MB), false for folders.
        crop (dict, optional): fixed crop before the noise, ``{size: 256, position: top_left | center}``.
        gt_size, use_hflip, use_rot: training only: random crop plus flips/rotations before the noise.
        use_channel_shuffle (bool): training only: a random permutation of the clean crop's R, G, B before the noise
            (default false), so that a network trained on a few photographs cannot learn their colours.
        color (str, optional): ``rgb`` or ``gray``: the clean image is made grey (OpenCV's BGR->grey) before the
            noise is drawn, so grey noise is drawn on one channel. Unset: the network's input channels decide.

    Items: ``{'lq', 'gt', 'lq_path', 'gt_path', 'name'}``, float32 CHW (RGB or grey); ``lq_path`` = ``gt_path`` = the
    clean file.
    """

    option_keys = {
        'dataroot_gt': DirPath(),
        'skimage_images':
        OneOf(Str(choices=('photos', )), ListOf(Str(), min_len=1), what='"photos" or a list of names'),
        'split': Str(choices=('all', 'train', 'heldout')),
        'heldout': OneOf(Int(ge=0), ListOf(Str()), what='a number of images or a list of names'),
        'noise': Registered('noise'),
        'seed': Int(ge=0),
        'fixed_noise': Bool(),
        'clip': Bool(),
        'cache_images': Bool(),
        'io_backend': IO_BACKEND,
        'color': COLOR_OPTION,
        'crop': CROP_OPTION,
        **TRAIN_AUGMENT_OPTIONS,
        'use_channel_shuffle': TrainOnly(Bool()),
    }

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.phase = opt.get('phase', 'test')
        self.seed = int(opt.get('seed', 0))
        self.clip = bool(opt.get('clip', True))
        self.fixed_noise = bool(opt.get('fixed_noise', False)) or self.phase != 'train'
        if 'noise' not in opt:
            raise OptionError(f'{option_where(opt, "noise")} is not set (e.g. {{type: GaussianNoise, sigma: 25}})')
        self.noise = build_from_registry(NOISE_REGISTRY, opt['noise'], where=option_where(opt, 'noise'))
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.meta = None
        names, paths = self._sources(opt)
        self.names, self.paths = self._split(opt, names, paths)
        self.crop = parse_crop_opt(opt.get('crop'), option_where(opt, 'crop'))
        self.init_color(opt)
        self._cache_color = self.color
        self.cache = {} if opt.get('cache_images', opt.get('skimage_images') is not None) else None
        self.file_client = None
        get_root_logger().info(f'{type(self).__name__} "{opt.get("name", "")}": {len(self.paths)} clean images '
                               f'({opt.get("split", "all")}), noise {self.noise}, seed {self.seed}')

    def _sources(self, opt):
        """(names, paths) of every clean image before the split."""
        has_root, has_skimage = opt.get('dataroot_gt') is not None, opt.get('skimage_images') is not None
        if has_root == has_skimage:
            raise OptionError(f'{option_where(opt, "dataroot_gt")}: give exactly one of dataroot_gt or skimage_images')
        if has_skimage:
            where = option_where(opt, 'skimage_images')
            names = opt['skimage_images']
            names = list(SKIMAGE_PHOTOS) if names == 'photos' else names
            if isinstance(names, str) or not names:
                raise OptionError(f'{where}: expected a non-empty list of names or "photos", got {names!r}')
            self.io_backend_opt = {'type': 'disk'}
            return list(names), [skimage_image_path(n, where) for n in names]
        root = require_path(opt, 'dataroot_gt')
        backend = self.io_backend_opt.get('type', 'disk')
        if backend == 'lmdb':
            self.meta = read_lmdb_meta_info(root)
            check_lmdb_keys(root, self.meta)
            self.io_backend_opt.update(db_paths=[root], client_keys=['gt'])
            keys = sorted(self.meta)
            return keys, keys
        if backend != 'disk':
            raise OptionError(f'{option_where(opt, "io_backend.type")}: expected disk or lmdb, got {backend!r}')
        rel = list_images(root)
        if not rel:
            raise DataError(f'{option_where(opt, "dataroot_gt")}: no images found in {root}')
        return [osp.splitext(osp.basename(p))[0] for p in rel], [osp.join(root, p) for p in rel]

    @staticmethod
    def _split(opt, names, paths):
        split, heldout = opt.get('split', 'all'), opt.get('heldout', 0)
        if split not in ('all', 'train', 'heldout'):
            raise OptionError(f'{option_where(opt, "split")}: expected all, train or heldout, got {split!r}')
        if isinstance(heldout, int):
            if not 0 <= heldout <= len(names):
                raise OptionError(f'{option_where(opt, "heldout")}: {heldout} is not in [0, {len(names)}]')
            order = sorted(range(len(names)), key=lambda i: names[i])
            held = {names[i] for i in order[len(order) - heldout:]} if heldout else set()
        else:
            held = set(heldout)
            unknown = sorted(held - set(names))
            if unknown:
                raise OptionError(f'{option_where(opt, "heldout")}: "{unknown[0]}" is not among the images')
        keep = [i for i, n in enumerate(names) if split == 'all' or (n in held) == (split == 'heldout')]
        if not keep:
            raise OptionError(f'{option_where(opt, "split")}: split {split!r} with heldout {heldout!r} leaves no image')
        return [names[i] for i in keep], [paths[i] for i in keep]

    def _clean(self, path):
        if self.cache is None:
            return load_image(self.file_client, path, 'gt', self.meta, self.color)
        if self.cache and self._cache_color != self.color:  # the mode was set after images were cached
            self.cache.clear()
        self._cache_color = self.color
        if path not in self.cache:
            self.cache[path] = load_image(self.file_client, path, 'gt', self.meta, self.color)
        return self.cache[path]

    def rng(self, index):
        """The numpy Generator of item ``index`` (see the ``seed`` option)."""
        if self.fixed_noise:
            return np.random.default_rng(self.seed + index)
        return np.random.default_rng(random.getrandbits(64))

    def __getitem__(self, index):
        if self.file_client is None:
            backend_opt = dict(self.io_backend_opt)
            self.file_client = FileClient(backend_opt.pop('type', 'disk'), **backend_opt)
        path = self.paths[index]
        img_gt, = fixed_crop([self._clean(path)], self.crop, path)
        if self.phase == 'train':
            img_gt, _ = train_crop_augment(img_gt, img_gt, self.opt, path)
            if self.opt.get('use_channel_shuffle', False):
                img_gt = np.ascontiguousarray(img_gt[..., random.sample(range(3), 3)])
        img_lq = self.noise(img_gt, self.rng(index))
        if self.clip:
            img_lq = np.clip(img_lq, 0, 1)
        img_gt, img_lq = img2tensor([np.array(img_gt), img_lq], bgr2rgb=False, float32=True)  # copy: cache intact
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': path, 'gt_path': path, 'name': self.names[index]}

    def __len__(self):
        return len(self.paths)
