"""Noisy images without ground truth (a folder or an LMDB), for test-time adaptation on the user's own photos."""
from os import path as osp

from basicsr.utils import FileClient, get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import IO_BACKEND, DirPath
from .data_util import (COLOR_OPTION, CROP_OPTION, ColorMode, check_lmdb_keys, fixed_crop, list_images, load_image,
                        option_where, parse_crop_opt, read_lmdb_meta_info, require_path)

__all__ = ['NoisyImageDataset']


@DATASET_REGISTRY.register()
class NoisyImageDataset(ColorMode, data.Dataset):
    """Noisy images only: items ``{'lq', 'lq_path', 'name'}`` (no ``'gt'``: metrics are skipped).

    Options:
        dataroot_lq (str): a folder of images (recursive) or an ``.lmdb`` folder (``io_backend: {type: lmdb}``).
        io_backend (dict): ``{type: disk}`` (default) or ``{type: lmdb}``.
        crop (dict, optional): fixed crop ``{size: 256, position: top_left | center}``; omitted: full images.
        color (str, optional): ``rgb`` or ``gray`` (OpenCV's BGR->grey); unset: the network's input channels decide.
    """

    option_keys = {'dataroot_lq': DirPath(), 'io_backend': IO_BACKEND, 'color': COLOR_OPTION, 'crop': CROP_OPTION}

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        backend = self.io_backend_opt.get('type', 'disk')
        root = require_path(opt, 'dataroot_lq')
        if backend == 'lmdb':
            self.meta = read_lmdb_meta_info(root)
            check_lmdb_keys(root, self.meta)
            self.paths = sorted(self.meta)
            self.io_backend_opt.update(db_paths=[root], client_keys=['lq'])
        elif backend == 'disk':
            self.meta = None
            self.paths = [osp.join(root, p) for p in list_images(root)]
            if not self.paths:
                raise DataError(f'{option_where(opt, "dataroot_lq")}: no images found in {root}')
        else:
            raise OptionError(f'{option_where(opt, "io_backend.type")}: expected disk or lmdb, got {backend!r}')
        self.crop = parse_crop_opt(opt.get('crop'), option_where(opt, 'crop'))
        self.init_color(opt)
        self.file_client = None
        get_root_logger().info(f'{type(self).__name__} "{opt.get("name", "")}": {len(self.paths)} images from {root}')

    def __getitem__(self, index):
        if self.file_client is None:
            backend_opt = dict(self.io_backend_opt)
            self.file_client = FileClient(backend_opt.pop('type', 'disk'), **backend_opt)
        lq_path = self.paths[index]
        img_lq, = fixed_crop([load_image(self.file_client, lq_path, 'lq', self.meta, self.color)], self.crop, lq_path)
        name = lq_path if self.meta is not None else osp.splitext(osp.basename(lq_path))[0]
        return {'lq': img2tensor(img_lq, bgr2rgb=False, float32=True), 'lq_path': lq_path, 'name': name}

    def __len__(self):
        return len(self.paths)
