"""Paired noisy/clean images (folders or LMDBs) for training and for test-time adaptation."""
from os import path as osp

from basicsr.utils import FileClient, get_root_logger, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import IO_BACKEND, DirPath, Str
from .data_util import (COLOR_OPTION, CROP_OPTION, FILENAME_TMPL_OPTION, TRAIN_AUGMENT_OPTIONS, ColorMode, fixed_crop,
                        load_image, option_where, paired_keys_from_lmdbs, paired_paths_from_folders,
                        paired_paths_from_list, parse_crop_opt, read_name_list, require_path, train_crop_augment)

__all__ = ['PairedNoisyDataset']


@DATASET_REGISTRY.register()
class PairedNoisyDataset(ColorMode, data.Dataset):
    """Noisy (lq) / clean (gt) pairs, like BasicSR's ``PairedImageDataset`` but with checked inputs.

    Options:
        dataroot_lq, dataroot_gt (str): folders (pairs matched by name through ``filename_tmpl``, default ``'{}'``)
            or ``.lmdb`` folders made by BasicSR's LMDB utilities (``io_backend: {type: lmdb}``; same keys).
        io_backend (dict): ``{type: disk}`` (default) or ``{type: lmdb}``.
        meta_info_file (str, optional): a text file listing the GT images to use, one per line (first token: the
            file name relative to dataroot_gt, or ``key.png`` for an LMDB), in that order; e.g. one camera's PolyU
            tiles (``tools/prepare_polyu.py --cameras``). Omitted: every pair.
        crop (dict, optional): fixed crop in every phase, ``{size: 256, position: top_left}`` (the official PolyU
            protocol; ``position: center`` also works). Omitted: full images.
        gt_size, use_hflip, use_rot: training only (``phase: train``): random crop plus flips/rotations.
        color (str, optional): ``rgb`` (3 channels) or ``gray`` (1 channel; colour images converted with OpenCV's
            BGR->grey). Unset: the network's input channels decide (``match_network_channels``), else rgb.

    Items: ``{'lq', 'gt'}`` float32 CHW in [0, 1], RGB or grey (conversions: ``data_util``), ``'lq_path'``,
    ``'gt_path'`` (file paths or LMDB keys) and ``'name'`` (the LQ file stem or key). lq and gt of different sizes are a
    DataError.
    """

    option_keys = {
        'dataroot_lq': DirPath(),
        'dataroot_gt': DirPath(),
        'io_backend': IO_BACKEND,
        'color': COLOR_OPTION,
        'filename_tmpl': FILENAME_TMPL_OPTION,
        'meta_info_file': Str(null=True),  # checked (exists, lists known images) when the dataset is built
        'crop': CROP_OPTION,
        **TRAIN_AUGMENT_OPTIONS,
    }

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.phase = opt.get('phase', 'test')
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        backend = self.io_backend_opt.get('type', 'disk')
        lq_root, gt_root = require_path(opt, 'dataroot_lq'), require_path(opt, 'dataroot_gt')
        list_path = opt.get('meta_info_file')
        names = read_name_list(osp.expanduser(str(list_path)), option_where(opt,
                                                                            'meta_info_file')) if list_path else None
        if backend == 'lmdb':
            keys, lq_meta, gt_meta = paired_keys_from_lmdbs(lq_root, gt_root)
            if names is not None:
                wanted = [osp.splitext(n)[0] for n in names]
                absent = [k for k in wanted if k not in gt_meta]
                if absent:
                    raise DataError(f'{list_path}: key "{absent[0]}" is not in {gt_root} ({len(absent)} listed keys '
                                    'missing)')
                keys = wanted
            self.paths = [{'lq_path': k, 'gt_path': k} for k in keys]
            self.meta = {'lq': lq_meta, 'gt': gt_meta}
            self.io_backend_opt.update(db_paths=[lq_root, gt_root], client_keys=['lq', 'gt'])
        elif backend == 'disk':
            tmpl = opt.get('filename_tmpl', '{}')
            self.paths = paired_paths_from_folders(lq_root, gt_root, tmpl) if names is None else \
                paired_paths_from_list(lq_root, gt_root, names, list_path, tmpl)
            self.meta = {'lq': None, 'gt': None}
        else:
            raise OptionError(f'{option_where(opt, "io_backend.type")}: expected disk or lmdb, got {backend!r}')
        self.crop = parse_crop_opt(opt.get('crop'), option_where(opt, 'crop'))
        self.init_color(opt)
        self.file_client = None
        get_root_logger().info(f'{type(self).__name__} "{opt.get("name", "")}": {len(self.paths)} pairs from '
                               f'{lq_root} (lq) and {gt_root} (gt)')

    def __getitem__(self, index):
        if self.file_client is None:
            backend_opt = dict(self.io_backend_opt)
            self.file_client = FileClient(backend_opt.pop('type', 'disk'), **backend_opt)
        lq_path, gt_path = self.paths[index]['lq_path'], self.paths[index]['gt_path']
        img_lq = load_image(self.file_client, lq_path, 'lq', self.meta['lq'], self.color)
        img_gt = load_image(self.file_client, gt_path, 'gt', self.meta['gt'], self.color)
        if img_lq.shape != img_gt.shape:
            raise DataError(f'size mismatch: {lq_path} is {img_lq.shape[0]}x{img_lq.shape[1]}, '
                            f'{gt_path} is {img_gt.shape[0]}x{img_gt.shape[1]}')
        img_lq, img_gt = fixed_crop([img_lq, img_gt], self.crop, lq_path)
        if self.phase == 'train':
            img_gt, img_lq = train_crop_augment(img_gt, img_lq, self.opt, gt_path)
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=False, float32=True)
        name = lq_path if self.meta['lq'] is not None else osp.splitext(osp.basename(lq_path))[0]
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path, 'name': name}

    def __len__(self):
        return len(self.paths)
