"""Shared helpers of the datasets: image decoding with defined conversions, option/path checks, LMDB checks, crops.

Conversions (every dataset): images are decoded as stored (``cv2.IMREAD_UNCHANGED``, so EXIF orientation is ignored
like the official ``torchvision.io.read_image``), then made float32 in [0, 1] (8-bit / 255, 16-bit / 65535) with the
channels of the dataset's ``color`` mode:

- ``rgb`` (3 channels): colour is reordered BGR -> RGB, grayscale is replicated to three channels.
- ``gray`` (1 channel): grayscale is kept as stored; colour is converted with OpenCV's
  ``cv2.cvtColor(COLOR_BGR2GRAY)`` (Y = 0.299 R + 0.587 G + 0.114 B, rounded to the stored integer type, as a grey
  PNG written from that conversion would hold), before the division.

An alpha channel is dropped in both modes. Other sample types (float, 32-bit) are rejected with a
:class:`DataError` naming the file.
"""
import re
from os import path as osp

import cv2
import lmdb
import numpy as np
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import scandir

from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import Bool, Int, ListOf, OneOf, Section, Str, TrainOnly

__all__ = [
    'IMG_EXTENSIONS', 'COLOR_CHANNELS', 'parse_color', 'ColorMode', 'decode_raw', 'decode_image', 'read_file_bytes',
    'read_image_file', 'option_where', 'require_path', 'list_images', 'paired_paths_from_folders', 'read_name_list',
    'paired_paths_from_list', 'read_lmdb_meta_info', 'check_lmdb_keys', 'paired_keys_from_lmdbs', 'fixed_crop',
    'parse_crop_opt', 'train_crop_augment', 'load_image', 'CROP_OPTION', 'FILENAME_TMPL_OPTION', 'COLOR_OPTION',
    'TRAIN_AUGMENT_OPTIONS'
]

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
COLOR_CHANNELS = {'gray': 1, 'rgb': 3}


def parse_color(opt):
    """A dataset's ``color`` option: ``'gray'``, ``'rgb'`` or None (unset: taken from the network, else rgb)."""
    color = opt.get('color')
    if color is not None and color not in COLOR_CHANNELS:
        raise OptionError(f'{option_where(opt, "color")}: expected gray or rgb (or unset: the network\'s input '
                          f'channels decide), got {color!r}')
    return color


class ColorMode:
    """Mixin of the image datasets: the ``color`` option (``gray`` | ``rgb``) and the channels it delivers.

    ``color_option`` is the option as given (None when unset); ``color`` is the mode in use: the option, or the
    network's mode once :func:`lan_basicsr.data.channels.match_network_channels` has set it, else ``rgb``.
    """

    def init_color(self, opt):
        self.color_option = parse_color(opt)
        self.color = self.color_option or 'rgb'

    @property
    def channels(self):
        """Channels of the delivered images: 1 (gray) or 3 (rgb)."""
        return COLOR_CHANNELS[self.color]


def decode_raw(buf, name, flags=cv2.IMREAD_UNCHANGED):
    """Decode image bytes as stored (dtype, channels, OpenCV's BGR order); ``name`` is for error messages.

    ``flags``: OpenCV's ``imdecode`` flags (default: as stored, EXIF orientation ignored). Besides undecodable data,
    a JPEG without its end-of-image marker is refused: some OpenCV versions decode a truncated JPEG without error,
    filling the missing part with grey.
    """
    if buf is None:
        raise DataError(f'{name}: no image data (missing file or LMDB key)')
    buf = bytes(buf)
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), flags) if buf else None
    if img is None:
        raise DataError(f'{name}: cannot decode the image (corrupt, truncated or not an image file)')
    if buf[:3] == b'\xff\xd8\xff' and not buf.rstrip(b'\0').endswith(b'\xff\xd9'):
        raise DataError(f'{name}: truncated JPEG (no end-of-image marker)')
    return img


def decode_image(buf, name, color='rgb'):
    """Decode encoded image bytes to float32 HWC in [0, 1]: RGB (``color='rgb'``) or one grey channel (``'gray'``).

    Conversions in the module docstring; ``name`` (a path or LMDB key) is only used in error messages.
    """
    img = decode_raw(buf, name)
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(f'{name}: unsupported sample type {img.dtype} (expected 8- or 16-bit images)')
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels not in (1, 2, 3, 4):
        raise DataError(f'{name}: unsupported number of channels {channels}')
    if channels <= 2:  # gray (+ alpha)
        img = img[..., :1]
        if color == 'rgb':
            img = np.repeat(img, 3, axis=2)
    elif color == 'gray':
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)[..., None]  # alpha dropped
    else:
        img = img[..., 2::-1]  # BGR(A) -> RGB, alpha dropped
    scale = 255. if img.dtype == np.uint8 else 65535.
    return np.ascontiguousarray(img, dtype=np.float32) / np.float32(scale)


def read_file_bytes(path):
    """The bytes of ``path``; a missing or unreadable file is a :class:`DataError` naming it."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as e:
        raise DataError(f'{path}: cannot read the file ({e.strerror or e})') from None


def read_image_file(path, color='rgb'):
    """Read and decode an image file (see :func:`decode_image`); a missing file is a :class:`DataError`."""
    return decode_image(read_file_bytes(path), path, color)


def option_where(opt, key):
    """Name of a dataset option for messages, e.g. ``datasets.test.dataroot_lq (dataset "PolyU")``."""
    phase = opt.get('phase', '<phase>')
    name = opt.get('name')
    return f'datasets.{phase}.{key}' + (f' (dataset "{name}")' if name else '')


def require_path(opt, key):
    """Return ``opt[key]`` after checking that it is set and exists; else :class:`DataError` naming key and path."""
    path = opt.get(key)
    if not path:
        raise DataError(f'{option_where(opt, key)} is not set')
    path = osp.expanduser(str(path))
    if not osp.exists(path):
        raise DataError(f'{option_where(opt, key)}: {path} does not exist')
    return path


def list_images(folder):
    """Sorted image file names (relative, recursive) in ``folder``."""
    return sorted(p for p in scandir(folder, recursive=True) if p.lower().endswith(IMG_EXTENSIONS))


def paired_paths_from_folders(lq_folder, gt_folder, filename_tmpl='{}'):
    """Pair every GT image with its LQ partner ``filename_tmpl.format(gt_stem) + gt_ext`` (BasicSR's convention).

    A GT image without partner, or an LQ image that no GT image claims, is a :class:`DataError` naming the file.
    """
    gt_names = list_images(gt_folder)
    lq_names = set(list_images(lq_folder))
    if not gt_names:
        raise DataError(f'{gt_folder}: no images found')
    paths, claimed = [], set()
    for gt_name in gt_names:
        stem, ext = osp.splitext(gt_name)
        lq_name = osp.join(osp.dirname(stem), filename_tmpl.format(osp.basename(stem))) + ext
        if lq_name not in lq_names:
            raise DataError(f'{osp.join(lq_folder, lq_name)}: missing (partner of {osp.join(gt_folder, gt_name)})')
        claimed.add(lq_name)
        paths.append({'lq_path': osp.join(lq_folder, lq_name), 'gt_path': osp.join(gt_folder, gt_name)})
    orphans = sorted(lq_names - claimed)
    if orphans:
        raise DataError(f'{osp.join(lq_folder, orphans[0])}: no GT partner in {gt_folder} '
                        f'({len(orphans)} LQ image(s) without GT)')
    return paths


def read_name_list(path, where):
    """Image names listed in a ``meta_info_file``: the first whitespace-separated token of every non-empty line
    (BasicSR's format, so ``name.png (512,512,3) 1`` lines work too), in file order, each once."""
    if not osp.isfile(path):
        raise DataError(f'{where}: {path} does not exist')
    names, seen = [], set()
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                name = line.split()[0]
                if name in seen:
                    raise DataError(f'{path}:{lineno}: "{name}" listed twice')
                names.append(name)
                seen.add(name)
    if not names:
        raise DataError(f'{path}: lists no images')
    return names


def paired_paths_from_list(lq_folder, gt_folder, names, list_path, filename_tmpl='{}'):
    """Pairs for the GT images ``names`` (relative to ``gt_folder``), partners found as by
    :func:`paired_paths_from_folders`; a listed image missing on either side is a :class:`DataError` naming the list
    and the file."""
    paths = []
    for gt_name in names:
        stem, ext = osp.splitext(gt_name)
        lq_name = osp.join(osp.dirname(stem), filename_tmpl.format(osp.basename(stem))) + ext
        for folder, name in ((gt_folder, gt_name), (lq_folder, lq_name)):
            if not osp.isfile(osp.join(folder, name)):
                raise DataError(f'{osp.join(folder, name)}: missing (listed in {list_path})')
        paths.append({'lq_path': osp.join(lq_folder, lq_name), 'gt_path': osp.join(gt_folder, gt_name)})
    return paths


_META_LINE = re.compile(r'^(\S+?)\.\w+ \((\d+),\s*(\d+),\s*(\d+)\)(?: \d+)?$')


def read_lmdb_meta_info(lmdb_path):
    """Parse BasicSR's ``meta_info.txt`` of an LMDB: ``{key: (h, w, c)}`` in file order."""
    meta_path = osp.join(lmdb_path, 'meta_info.txt')
    if not osp.isfile(meta_path):
        raise DataError(f'{meta_path}: missing (an LMDB made by BasicSR\'s LmdbMaker has one)')
    meta = {}
    with open(meta_path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            m = _META_LINE.match(line)
            if m is None:
                raise DataError(f'{meta_path}:{lineno}: malformed line "{line}" (expected "KEY.png (H,W,C) LEVEL")')
            key = m.group(1)
            if key in meta:
                raise DataError(f'{meta_path}:{lineno}: key "{key}" listed twice')
            meta[key] = tuple(int(m.group(i)) for i in (2, 3, 4))
    if not meta:
        raise DataError(f'{meta_path}: lists no keys')
    return meta


def check_lmdb_keys(lmdb_path, keys):
    """Check that the LMDB at ``lmdb_path`` holds exactly ``keys``; else :class:`DataError` naming a key."""
    if not osp.isfile(osp.join(lmdb_path, 'data.mdb')):
        raise DataError(f'{lmdb_path}: not an LMDB (no data.mdb)')
    env = lmdb.open(lmdb_path, readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            present = {k.decode('ascii', 'replace') for k in txn.cursor().iternext(keys=True, values=False)}
    finally:
        env.close()
    keys = set(keys)
    missing, extra = sorted(keys - present), sorted(present - keys)
    if missing:
        raise DataError(f'{lmdb_path}: key "{missing[0]}" is listed in meta_info.txt but not in the database '
                        f'({len(missing)} missing); rebuild the LMDB')
    if extra:
        raise DataError(f'{lmdb_path}: key "{extra[0]}" is in the database but not in meta_info.txt '
                        f'({len(extra)} unlisted); rebuild the LMDB')


def paired_keys_from_lmdbs(lq_path, gt_path):
    """Sorted keys shared by a paired LQ/GT LMDB after checking both against their meta_info; plus both meta dicts."""
    lq_meta, gt_meta = read_lmdb_meta_info(lq_path), read_lmdb_meta_info(gt_path)
    only_lq, only_gt = sorted(set(lq_meta) - set(gt_meta)), sorted(set(gt_meta) - set(lq_meta))
    if only_lq or only_gt:
        key, where, other = (only_lq[0], lq_path, gt_path) if only_lq else (only_gt[0], gt_path, lq_path)
        raise DataError(f'key "{key}" of {where} is not in {other} (LQ and GT LMDBs must share their keys)')
    check_lmdb_keys(lq_path, lq_meta)
    check_lmdb_keys(gt_path, gt_meta)
    return sorted(gt_meta), lq_meta, gt_meta


# Option specs shared by the datasets' ``option_keys`` (see lan_basicsr.utils.option_schema).
CROP_OPTION = Section(
    {
        'size': OneOf(Int(ge=1), ListOf(Int(ge=1), length=2), what='a positive int or [H, W]'),
        'position': Str(choices=('top_left', 'center')),
    },
    required=('size', ),
    null=True,
    what='{size: S or [H, W], position: top_left | center}')
# the keys of train_crop_augment (random crop, flips, rotations): training datasets only
TRAIN_AUGMENT_OPTIONS = {'gt_size': TrainOnly(Int(ge=1)), 'use_hflip': TrainOnly(Bool()), 'use_rot': TrainOnly(Bool())}
COLOR_OPTION = Str(choices=tuple(COLOR_CHANNELS), null=True)  # null: the network's input channels decide
FILENAME_TMPL_OPTION = Str(check=lambda v: None if '{}' in v else f'"{v}" has no {{}} for the GT file stem')


def parse_crop_opt(crop, where):
    """Validate a ``crop: {size: S | [H, W], position: top_left | center}`` option; ``None`` means no crop."""
    if crop is None:
        return None
    if not isinstance(crop, dict) or 'size' not in crop:
        raise OptionError(f'{where}: expected {{size: S or [H, W], position: top_left | center}}, got {crop!r}')
    size = crop['size']
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise OptionError(f'{where}.size: expected a positive int or [H, W], got {crop["size"]!r}')
    position = crop.get('position', 'top_left')
    if position not in ('top_left', 'center'):
        raise OptionError(f'{where}.position: expected top_left or center, got {position!r}')
    return {'size': size, 'position': position}


def fixed_crop(imgs, crop, name):
    """Crop HWC arrays identically with a parsed crop option; an image smaller than the crop is a DataError."""
    if crop is None:
        return imgs
    (ch, cw), (h, w) = crop['size'], imgs[0].shape[:2]
    if h < ch or w < cw:
        raise DataError(f'{name}: image {h}x{w} is smaller than the fixed crop {ch}x{cw}')
    top, left = (0, 0) if crop['position'] == 'top_left' else ((h - ch) // 2, (w - cw) // 2)
    return [img[top:top + ch, left:left + cw] for img in imgs]


def train_crop_augment(gt, lq, opt, name):
    """Random ``gt_size`` crop (BasicSR's ``paired_random_crop``) plus flips/rotations of a pair; copies the crop."""
    gt_size = opt.get('gt_size')
    if not isinstance(gt_size, int) or gt_size < 1:
        raise OptionError(f'{option_where(opt, "gt_size")}: a positive int is required for training, got {gt_size!r}')
    h, w = gt.shape[:2]
    if h < gt_size or w < gt_size:
        raise DataError(f'{name}: image {h}x{w} is smaller than gt_size {gt_size}')
    gt, lq = paired_random_crop(gt, lq, gt_size, 1, name)
    gt, lq = augment([gt.copy(), lq.copy()], opt.get('use_hflip', True), opt.get('use_rot', True))
    return gt, lq


def load_image(file_client, path, client_key, meta=None, color='rgb'):
    """Read ``path`` (file path or LMDB key) through a BasicSR FileClient and decode it; errors name the file/key.

    ``meta`` (``{key: (h, w, c)}`` from meta_info.txt) makes an LMDB image whose size disagrees a DataError;
    ``color`` is ``'rgb'`` or ``'gray'`` (see :func:`decode_image`).
    """
    try:
        buf = file_client.get(path, client_key)
    except OSError as e:
        raise DataError(f'{path}: cannot read the file ({e.strerror or e})') from None
    name = path if meta is None else f'LMDB key "{path}" ({client_key})'
    img = decode_image(buf, name, color)
    if meta is not None and tuple(meta[path][:2]) != img.shape[:2]:
        raise DataError(f'{name}: meta_info.txt says {meta[path][0]}x{meta[path][1]}, the stored image is '
                        f'{img.shape[0]}x{img.shape[1]}; rebuild the LMDB')
    return img
