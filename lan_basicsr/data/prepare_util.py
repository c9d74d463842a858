"""Dataset preparation (SIDD, PolyU, Nam): crops, tiles, LMDBs. The ``tools/prepare_*.py`` scripts are thin wrappers.

Crop rules:
    * SIDD training crops (Restormer's ``generate_patches_sidd.py``): ``size`` crops every ``step`` = size - overlap
      pixels, starts ``0, step, 2 step, ... < L - size`` plus a last crop flush with the bottom/right edge at
      ``L - size`` (so the last two crops overlap more than ``overlap`` unless the image fits exactly); row-major.
    * PolyU / Nam tiles (the official LAN ``prepare.py``): non-overlapping ``size`` tiles, ragged right/bottom edges
      dropped, numbered row-major from 0: ``{scene}_{index:04d}.png``.
Pixels are copied as stored (``cv2.IMREAD_UNCHANGED``: no EXIF rotation, no colour or bit-depth change) and written
losslessly (PNG), so a crop in an LMDB or folder decodes to exactly the source pixels.
"""
import os
import struct
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import Pool
from os import path as osp

import cv2
import numpy as np
from basicsr.utils import get_root_logger
from basicsr.utils.lmdb_util import LmdbMaker
from tqdm import tqdm

from lan_basicsr.utils.errors import DataError
from .data_util import IMG_EXTENSIONS, decode_raw, read_file_bytes

__all__ = [
    'crop_starts', 'tile_starts', 'crop_boxes', 'read_raw', 'encode_png', 'PairScan', 'PrepareSummary', 'scan_pairs',
    'prepare_paired_folder', 'scene_camera', 'select_cameras', 'split_holdout', 'tile_scene', 'write_camera_lists',
    'prepare_crops_lmdb', 'scan_sidd', 'prepare_sidd_lmdb', 'load_mat_blocks', 'prepare_sidd_val'
]


# ----------------------------------------------------------------------------------------------------- crop geometry
def crop_starts(length, size, step):
    """Restormer's start offsets along one axis (see the module docstring); [] if ``length < size``."""
    if length < size:
        return []
    return list(range(0, length - size, step)) + [length - size]


def tile_starts(length, size):
    """Non-overlapping tile offsets along one axis; the ragged end is dropped."""
    return list(range(0, length - size + 1, size))


def crop_boxes(h, w, size, step=None):
    """Row-major ``(top, left)`` of ``size`` crops: Restormer's overlapping rule with ``step``, tiles without."""
    rows = tile_starts(h, size) if step is None else crop_starts(h, size, step)
    cols = tile_starts(w, size) if step is None else crop_starts(w, size, step)
    return [(top, left) for top in rows for left in cols]


# ------------------------------------------------------------------------------------------------------------ I/O
def read_raw(path):
    """Decode an image as stored (dtype, channels, BGR order); unreadable or corrupt files are a DataError."""
    return decode_raw(read_file_bytes(path), path)


def encode_png(img, compress_level=1):
    """Lossless PNG bytes of an array as stored."""
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
    if not ok:
        raise DataError(f'cannot encode an image of shape {img.shape} and type {img.dtype} as PNG')
    return buf.tobytes()


def _write_png(path, img, compress_level):
    with open(path, 'wb') as f:
        f.write(encode_png(img, compress_level))


def _read_pair(noisy_path, clean_path):
    """``('ok', (noisy, clean))``, or ``('unreadable' | 'mismatched', reason)`` for the workers' reports."""
    try:
        noisy, clean = read_raw(noisy_path), read_raw(clean_path)
    except DataError as e:
        return 'unreadable', str(e)
    if noisy.shape != clean.shape:
        return 'mismatched', (f'{noisy_path} is {noisy.shape[0]}x{noisy.shape[1]}, {clean_path} is '
                              f'{clean.shape[0]}x{clean.shape[1]}')
    return 'ok', (noisy, clean)


def _shape3(img):
    return img.shape if img.ndim == 3 else (*img.shape, 1)


def _image_header(path):
    """(h, w, channels, bytes per sample) from the file header, as upper bounds for the LMDB map size."""
    with open(path, 'rb') as f:
        head = f.read(33)
    if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR':
        w, h, depth, colour = struct.unpack('>IIBB', head[16:26])
        return h, w, {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour, 4), 2 if depth == 16 else 1
    from PIL import Image
    with Image.open(path) as im:
        w, h = im.size
        return h, w, {'L': 1, 'RGB': 3}.get(im.mode, 4), 2 if im.mode.startswith('I') else 1


def _new_path(path):
    if osp.exists(path):
        raise DataError(f'{path}: already exists; remove it or choose another --dst')
    return path


# ----------------------------------------------------------------------------------------------------- job runner
def _run_jobs(fn, jobs, workers, desc, progress):
    """Yield ``fn(job)`` in job order, in a process pool of ``workers`` (serial if <= 1), at most 2 x workers ahead."""
    pbar = tqdm(total=len(jobs), unit='image', desc=desc, disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield fn(job)
                pbar.update(1)
            return
        with Pool(min(workers, len(jobs))) as pool:
            pending, queue = deque(), iter(jobs)
            for job in queue:
                pending.append(pool.apply_async(fn, (job, )))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().get()
                    pbar.update(1)
            while pending:
                yield pending.popleft().get()
                pbar.update(1)
    finally:
        pbar.close()


# ------------------------------------------------------------------------------------------------- summaries/scans
@dataclass
class PairScan:
    """Result of scanning a folder for noisy/clean pairs: ``pairs`` = [(scene, noisy_path, clean_path)]."""
    pairs: list = field(default_factory=list)
    unpaired: list = field(default_factory=list)  # 'scene: path has no partner ...' lines
    ignored: list = field(default_factory=list)  # image files matching neither suffix


@dataclass
class PrepareSummary:
    """What a preparation run did; the lists hold one line per skipped pair or file, naming the file(s)."""
    pairs: int = 0  # pairs that produced output
    outputs: int = 0  # crops / tiles / images written per side
    unpaired: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    too_small: list = field(default_factory=list)

    @property
    def skipped(self):
        return self.unpaired + self.unreadable + self.mismatched + self.too_small

    def report(self, what='tiles'):
        """Human-readable lines: counts first, then every skipped file or pair by name."""
        lines = [
            f'{self.pairs} pairs -> {self.outputs} {what} per side; skipped: {len(self.unpaired)} unpaired, '
            f'{len(self.unreadable)} unreadable, {len(self.mismatched)} size-mismatched, '
            f'{len(self.too_small)} too small'
        ]
        for title, items in (('unpaired', self.unpaired), ('unreadable', self.unreadable),
                             ('size mismatch', self.mismatched), ('too small', self.too_small)):
            lines += [f'  {title}: {item}' for item in items]
        return lines


def scan_pairs(folder, noisy_suffix='_Real', clean_suffix='_mean'):
    """Pair ``{scene}{noisy_suffix}.ext`` with ``{scene}{clean_suffix}.ext`` (suffixes case-insensitive) in a folder."""
    if not osp.isdir(folder):
        raise DataError(f'{folder}: not a folder')
    noisy, clean, scan = {}, {}, PairScan()
    for name in sorted(os.listdir(folder)):
        stem, ext = osp.splitext(name)
        if ext.lower() not in IMG_EXTENSIONS or not osp.isfile(osp.join(folder, name)):
            continue
        for suffix, side in ((noisy_suffix, noisy), (clean_suffix, clean)):
            if stem.lower().endswith(suffix.lower()):
                scene = stem[:-len(suffix)]
                if scene in side:
                    raise DataError(f'{osp.join(folder, name)}: scene "{scene}" already has '
                                    f'{osp.join(folder, side[scene])}; keep one of them')
                side[scene] = name
                break
        else:
            scan.ignored.append(osp.join(folder, name))
    for scene in sorted(set(noisy) | set(clean)):
        if scene in noisy and scene in clean:
            scan.pairs.append((scene, osp.join(folder, noisy[scene]), osp.join(folder, clean[scene])))
        else:
            present, missing = (noisy[scene], f'{scene}{clean_suffix}') if scene in noisy else \
                (clean[scene], f'{scene}{noisy_suffix}')
            scan.unpaired.append(f'{scene}: {osp.join(folder, present)} has no partner {missing}.*')
    return scan


# -------------------------------------------------------------------------------------------------- PolyU cameras
def scene_camera(scene):
    """The camera of a PolyU scene name: its first ``_``-separated token, joined with the next ones while it has no
    digit (``Canon5D2_bag`` -> Canon5D2; ``Nikon_800_carbi``, a Nikon800 scene spelled apart, -> Nikon800)."""
    tokens = scene.split('_')
    camera, i = tokens[0], 1
    while not any(c.isdigit() for c in camera) and i < len(tokens) - 1:  # the last token names the scene
        camera, i = camera + tokens[i], i + 1
    return camera


def _line_scene(line):
    return line.split(': ', 1)[0]  # scan_pairs' unpaired lines start with '{scene}: '


def select_cameras(scan, cameras, where='--cameras'):
    """The part of a PolyU :class:`PairScan` whose scenes belong to ``cameras`` (names compared case-insensitively).

    A camera without any complete pair is a DataError naming the cameras that have some.
    """
    wanted = {c.lower() for c in cameras}
    present = sorted({scene_camera(scene) for scene, _, _ in scan.pairs})
    missing = [c for c in cameras if c.lower() not in {p.lower() for p in present}]
    if missing:
        raise DataError(f'{where}: no complete noisy/clean pair of camera {", ".join(missing)} (cameras with pairs: '
                        f'{", ".join(present)})')
    return PairScan(
        pairs=[p for p in scan.pairs if scene_camera(p[0]).lower() in wanted],
        unpaired=[u for u in scan.unpaired if scene_camera(_line_scene(u)).lower() in wanted],
        ignored=list(scan.ignored))


def split_holdout(scan, per_camera=0, scenes=()):
    """Split a :class:`PairScan` by scene into (train, held-out): the named ``scenes`` and the first ``per_camera``
    scenes of each camera in sorted name order are held out (a rule that looks at names only, never at scores).

    Unknown scene names and a camera left without a training scene are DataErrors.
    """
    names = [p[0] for p in scan.pairs]
    unknown = sorted(set(scenes) - set(names))
    if unknown:
        raise DataError(f'--val-scenes: no pair named {", ".join(unknown)} (scenes: {", ".join(names)})')
    held = set(scenes)
    by_camera = {}
    for name in sorted(names):
        by_camera.setdefault(scene_camera(name), []).append(name)
    for camera, camera_scenes in by_camera.items():
        if per_camera:
            held.update(camera_scenes[:per_camera])
        if not set(camera_scenes) - held:
            raise DataError(f'holding out {", ".join(sorted(held & set(camera_scenes)))} leaves camera {camera} '
                            'without a training scene; hold out fewer scenes')
    train = PairScan([p for p in scan.pairs if p[0] not in held], list(scan.unpaired), list(scan.ignored))
    val = PairScan([p for p in scan.pairs if p[0] in held])
    return train, val


def tile_scene(name):
    """Scene of a tile file name or key ``{scene}_{index:04d}[.png]``."""
    return osp.splitext(name)[0].rsplit('_', 1)[0]


def write_camera_lists(folder, every=None):
    """Write ``meta_info_{camera}.txt`` (and for each k of the sequence ``every``,
    ``meta_info_{camera}_every{k}.txt``: tiles 0, k, 2k, ... of each camera in name order) beside ``folder/gt``,
    listing the tile file names one per line (BasicSR's ``meta_info_file``).

    Returns ``{file name: number of tiles}``. The subset rule reads names only, so every method gets the same tiles,
    and the every-k list is a subset of the every-j one whenever j divides k.
    """
    by_camera = {}
    for name in sorted(os.listdir(osp.join(folder, 'gt'))):
        if name.lower().endswith(IMG_EXTENSIONS):
            by_camera.setdefault(scene_camera(tile_scene(name)), []).append(name)
    written = {}
    for camera, names in sorted(by_camera.items()):
        lists = {f'meta_info_{camera}.txt': names}
        for k in sorted(set(every or ())):
            if k > 1:
                lists[f'meta_info_{camera}_every{k}.txt'] = names[::k]
        for file_name, chosen in lists.items():
            with open(osp.join(folder, file_name), 'w', encoding='utf-8') as f:
                f.write(''.join(f'{n}\n' for n in chosen))
            written[file_name] = len(chosen)
    return written


# ---------------------------------------------------------------------------------------------- paired PNG folders
def _tile_pair(job):
    """Worker: tile (or copy) one pair into lq/ and gt/; returns (status, scene, count or reason)."""
    scene, noisy_path, clean_path, size, lq_dir, gt_dir, level = job
    status, pair = _read_pair(noisy_path, clean_path)
    if status != 'ok':
        return status, scene, pair
    noisy, clean = pair
    if not size:
        _write_png(osp.join(lq_dir, f'{scene}.png'), noisy, level)
        _write_png(osp.join(gt_dir, f'{scene}.png'), clean, level)
        return 'ok', scene, 1
    boxes = crop_boxes(noisy.shape[0], noisy.shape[1], size)
    if not boxes:
        return 'too_small', scene, f'{noisy_path} is {noisy.shape[0]}x{noisy.shape[1]}, smaller than {size}x{size}'
    for index, (top, left) in enumerate(boxes):
        name = f'{scene}_{index:04d}.png'
        _write_png(osp.join(lq_dir, name), noisy[top:top + size, left:left + size], level)
        _write_png(osp.join(gt_dir, name), clean[top:top + size, left:left + size], level)
    return 'ok', scene, len(boxes)


def prepare_paired_folder(scan, dst, tile_size=512, workers=1, compress_level=1, progress=True):
    """Write the pairs of a :class:`PairScan` to ``dst/lq`` and ``dst/gt`` as PNG.

    ``tile_size`` > 0: non-overlapping tiles ``{scene}_{index:04d}.png`` (row-major from 0, ragged edges dropped);
    0: whole images ``{scene}.png``. Unreadable, size-mismatched or too-small pairs are skipped and reported.
    """
    lq_dir, gt_dir = osp.join(dst, 'lq'), osp.join(dst, 'gt')
    for d in (lq_dir, gt_dir):
        if osp.isdir(d) and os.listdir(d):
            raise DataError(f'{d}: not empty; remove it or choose another --dst')
        os.makedirs(d, exist_ok=True)
    logger = get_root_logger()
    summary = PrepareSummary(unpaired=list(scan.unpaired))
    jobs = [(scene, n, c, tile_size, lq_dir, gt_dir, compress_level) for scene, n, c in scan.pairs]
    for status, scene, result in _run_jobs(_tile_pair, jobs, workers, 'pairs', progress):
        if status == 'ok':
            summary.pairs += 1
            summary.outputs += result
        else:
            getattr(summary, status).append(result)
            logger.warning(f'skipped scene {scene}: {result}')
    return summary


# ------------------------------------------------------------------------------------------------------ SIDD train
def scan_sidd(src):
    """Find SIDD-Medium sRGB pairs ``*NOISY_SRGB*`` / ``*GT_SRGB*`` (same folder) under ``src``, recursively.

    Returns a :class:`PairScan` whose scene is the LMDB key stem: the noisy file stem with ``NOISY_`` removed
    (``0001_NOISY_SRGB_010`` -> ``0001_SRGB_010``).
    """
    if not osp.isdir(src):
        raise DataError(f'{src}: not a folder')
    scan, stems = PairScan(), {}
    for root, dirs, files in os.walk(src):
        dirs.sort()
        names = {f for f in files if osp.splitext(f)[1].lower() in IMG_EXTENSIONS}
        claimed = set()
        for name in sorted(names):
            if 'NOISY_SRGB' not in name.upper():
                continue
            i = name.upper().index('NOISY_SRGB')
            gt_name = name[:i] + 'GT' + name[i + len('NOISY'):]
            if gt_name not in names:
                scan.unpaired.append(f'{osp.join(root, name)} has no partner {gt_name}')
                continue
            claimed.add(gt_name)
            stem = osp.splitext(name[:i] + name[i + len('NOISY_'):])[0]
            if not stem.isascii() or any(c in stem for c in ' .') or stem in stems:
                other = f' (also {stems[stem]})' if stem in stems else ''
                raise DataError(f'{osp.join(root, name)}: cannot use "{stem}" as an LMDB key{other}')
            stems[stem] = osp.join(root, name)
            scan.pairs.append((stem, osp.join(root, name), osp.join(root, gt_name)))
        scan.unpaired += [
            f'{osp.join(root, n)} has no NOISY_SRGB partner' for n in sorted(names - claimed) if 'GT_SRGB' in n.upper()
        ]
    return scan


def _crop_pair(job):
    """Worker: PNG bytes of the crops of one pair; returns (status, stem, [(key, lq, gt, shape)] or reason)."""
    stem, noisy_path, gt_path, size, step, level, key_fmt, first = job
    status, pair = _read_pair(noisy_path, gt_path)
    if status != 'ok':
        return status, stem, pair
    noisy, gt = pair
    crops = []
    for index, (top, left) in enumerate(crop_boxes(noisy.shape[0], noisy.shape[1], size, step), first):
        lq_crop, gt_crop = noisy[top:top + size, left:left + size], gt[top:top + size, left:left + size]
        key = key_fmt.format(stem=stem, index=index)
        crops.append((key, encode_png(lq_crop, level), encode_png(gt_crop, level), _shape3(lq_crop)))
    return 'ok', stem, crops


def prepare_crops_lmdb(scan,
                       dst,
                       size=512,
                       step=None,
                       key_fmt='{stem}_{index:04d}',
                       first_index=0,
                       workers=1,
                       compress_level=1,
                       progress=True,
                       desc='pairs'):
    """Crop the pairs of a :class:`PairScan` into ``dst/lq.lmdb`` and ``dst/gt.lmdb`` with BasicSR's LmdbMaker.

    ``step`` None: non-overlapping tiles (the PolyU rule); else Restormer's overlapping rule. Keys
    ``key_fmt.format(stem=scene, index=i)`` with ``i`` row-major from ``first_index``, identical in both LMDBs, each
    with BasicSR's meta_info.txt. The map size is an upper bound computed from the image headers.
    """
    lq_lmdb, gt_lmdb = _new_path(osp.join(dst, 'lq.lmdb')), _new_path(osp.join(dst, 'gt.lmdb'))
    logger = get_root_logger()
    summary, jobs, map_size = PrepareSummary(unpaired=list(scan.unpaired)), [], 0
    for stem, noisy_path, gt_path in scan.pairs:
        try:
            hn, wn, cn, bn = _image_header(noisy_path)
            hg, wg, cg, bg = _image_header(gt_path)
        except Exception as e:  # PIL and struct raise various types on a corrupt header
            summary.unreadable.append(f'{noisy_path} / {gt_path}: cannot read the image header ({e})')
            continue
        if (hn, wn) != (hg, wg):
            summary.mismatched.append(f'{noisy_path} is {hn}x{wn}, {gt_path} is {hg}x{wg}')
            continue
        num = len(crop_boxes(hn, wn, size, step))
        if num == 0:
            summary.too_small.append(f'{noisy_path} is {hn}x{wn}, smaller than {size}x{size}')
            continue
        # PNG of incompressible data: raw bytes + <1% (filter bytes, deflate blocks, chunks); LMDB pages: +8 KiB/value
        map_size += num * (int(size * size * max(cn * bn, cg * bg) * 1.02) + 8192)
        jobs.append((stem, noisy_path, gt_path, size, step, compress_level, key_fmt, first_index))
    for line in summary.skipped[len(summary.unpaired):]:
        logger.warning(f'skipped: {line}')
    if not jobs:
        raise DataError(f'no usable pair ({len(scan.pairs)} found, {len(summary.skipped)} files/pairs skipped)')
    os.makedirs(dst, exist_ok=True)
    map_size = int(map_size * 1.1) + (64 << 20)
    makers = [
        LmdbMaker(lq_lmdb, map_size, compress_level=compress_level),
        LmdbMaker(gt_lmdb, map_size, compress_level=compress_level)
    ]
    try:
        for status, stem, result in _run_jobs(_crop_pair, jobs, workers, desc, progress):
            if status != 'ok':
                getattr(summary, status).append(result)
                logger.warning(f'skipped {stem}: {result}')
                continue
            for key, lq_bytes, gt_bytes, shape in result:
                makers[0].put(lq_bytes, key, shape)
                makers[1].put(gt_bytes, key, shape)
            summary.pairs += 1
            summary.outputs += len(result)
    finally:
        for maker in makers:
            maker.close()
    return summary


def prepare_sidd_lmdb(scan, dst, size=512, overlap=128, workers=1, compress_level=1, progress=True):
    """Crop SIDD pairs (Restormer's rule, step = size - overlap) into ``dst/lq.lmdb`` and ``dst/gt.lmdb``.

    Keys ``{stem}_s{index:03d}`` (row-major from 1, like Restormer's patch numbering); see :func:`prepare_crops_lmdb`.
    """
    if not 0 <= overlap < size:
        raise DataError(f'overlap must be in [0, crop size {size}), got {overlap}')
    return prepare_crops_lmdb(scan, dst, size, size - overlap, '{stem}_s{index:03d}', 1, workers, compress_level,
                              progress, 'SIDD pairs')


# -------------------------------------------------------------------------------------------------------- SIDD val
def _load_mat_h5(path, var):
    try:
        import h5py
    except ImportError:
        raise DataError(f'{path}: a MATLAB v7.3 (HDF5) file; reading it needs h5py (pip install h5py)') from None
    with h5py.File(path, 'r') as f:
        names = [k for k in f.keys() if not k.startswith('#')]
        var = var or _pick_var(path, names)
        if var not in f:
            raise DataError(f'{path}: no variable "{var}" (variables: {", ".join(names)})')
        return np.asarray(f[var][()]).transpose()  # MATLAB is column-major: HDF5 stores the axes reversed


def _pick_var(path, names):
    if len(names) == 1:
        return names[0]
    preferred = [n for n in names if 'block' in n.lower()]
    if len(preferred) == 1:
        return preferred[0]
    raise DataError(f'{path}: several variables ({", ".join(names)}); name the one to use')


def load_mat_blocks(path, var=None):
    """Load SIDD validation blocks (N, B, H, W, C) from a MATLAB v5 (scipy) or v7.3 (h5py) ``.mat`` file."""
    if not osp.isfile(path):
        raise DataError(f'{path}: no such file')
    import scipy.io
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError:  # scipy refuses v7.3 files
        blocks = _load_mat_h5(path, var)
    except Exception as e:  # scipy raises many types on a corrupt file
        raise DataError(f'{path}: cannot read the .mat file ({type(e).__name__}: {e})') from None
    else:
        names = [k for k in mat if not k.startswith('__')]
        var = var or _pick_var(path, names)
        if var not in mat:
            raise DataError(f'{path}: no variable "{var}" (variables: {", ".join(names)})')
        blocks = mat[var]
    if blocks.ndim == 4:
        blocks = blocks[None]
    if blocks.ndim != 5 or blocks.shape[-1] not in (1, 3) or blocks.dtype not in (np.uint8, np.uint16):
        raise DataError(f'{path}: expected 8/16-bit blocks of shape (images, blocks, H, W, 3), got {blocks.shape} '
                        f'{blocks.dtype}')
    return blocks


def prepare_sidd_val(noisy_mat, gt_mat, dst, formats=('png', ), compress_level=1):
    """SIDD validation blocks to ``dst/{lq,gt}/`` PNG folders and/or ``dst/{lq,gt}.lmdb``; names ``{image}_{block}``.

    Blocks are RGB in the .mat files; PNGs are written so that they decode to the same RGB values.
    """
    noisy, gt = load_mat_blocks(noisy_mat), load_mat_blocks(gt_mat)
    if noisy.shape != gt.shape:
        raise DataError(f'{noisy_mat} holds blocks {noisy.shape}, {gt_mat} holds {gt.shape}; they must match')
    n, b = noisy.shape[:2]
    wi, wb = max(2, len(str(n - 1))), max(2, len(str(b - 1)))
    keys = [(i, j, f'{i:0{wi}d}_{j:0{wb}d}') for i in range(n) for j in range(b)]

    def to_stored(block):
        return block[..., ::-1] if block.shape[-1] == 3 else block[..., 0]  # RGB -> BGR for OpenCV

    for side in ('lq', 'gt'):  # check every destination before writing anything
        d = osp.join(dst, side)
        if 'png' in formats and osp.isdir(d) and os.listdir(d):
            raise DataError(f'{d}: not empty; remove it or choose another --dst')
        if 'lmdb' in formats:
            _new_path(d + '.lmdb')
    if 'png' in formats:
        for side in ('lq', 'gt'):
            os.makedirs(osp.join(dst, side), exist_ok=True)
        for i, j, key in keys:
            _write_png(osp.join(dst, 'lq', f'{key}.png'), to_stored(noisy[i, j]), compress_level)
            _write_png(osp.join(dst, 'gt', f'{key}.png'), to_stored(gt[i, j]), compress_level)
    if 'lmdb' in formats:
        map_size = int(len(keys) * (noisy[0, 0].nbytes * 1.02 + 8192) * 1.1) + (64 << 20)
        for side, blocks in (('lq', noisy), ('gt', gt)):
            maker = LmdbMaker(_new_path(osp.join(dst, f'{side}.lmdb')), map_size, compress_level=compress_level)
            try:
                for i, j, key in keys:
                    maker.put(encode_png(to_stored(blocks[i, j]), compress_level), key, _shape3(blocks[i, j]))
            finally:
                maker.close()
    return len(keys)
