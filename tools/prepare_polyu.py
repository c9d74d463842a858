# Usage: python tools/prepare_polyu.py --src ../shared/datasets/PolyU --dst datasets/PolyU
#        python tools/prepare_polyu.py --src ../shared/datasets/PolyU --dst datasets/PolyU_cropped --cropped
#    The cross-camera protocol (docs/real_noise.md): test tiles of the unseen cameras, training LMDB of the others
#        python tools/prepare_polyu.py --src ../shared/datasets/PolyU --dst datasets/PolyU_unseen \
#            --cameras Canon80D SonyA7II --every 4 12
#        python tools/prepare_polyu.py --src ../shared/datasets/PolyU --dst datasets/PolyU_seen \
#            --cameras Canon5D2 Nikon800 --format lmdb --val-per-camera 1
"""PolyU (Xu et al. 2018) -> ``dst/lq`` (noisy) and ``dst/gt`` (clean) PNG folders, the official LAN protocol.

OriginalImages: ``{scene}_Real.JPG`` / ``{scene}_mean.JPG`` cut into non-overlapping 512x512 tiles (ragged edges
dropped), row-major from 0, ``{scene}_{index:04d}.png``. The test options then take the top-left 256x256 of each tile
(``crop: {size: 256, position: top_left}``). ``--cropped``: the 100 CroppedImages pairs as whole images
``{scene}.png``. Unpaired, unreadable or size-mismatched files are reported by name and skipped.

``--cameras``: only these cameras' scenes (the camera is the scene name's first token; ``Nikon_800_carbi`` is a
Nikon800 scene), with ``meta_info_{camera}.txt`` tile lists beside lq/ and gt/ (``--every k``: also every k-th tile
of each camera, ``meta_info_{camera}_every{k}.txt``; several k at once: ``--every 4 12``). ``--format lmdb``:
``dst/lq.lmdb`` and ``dst/gt.lmdb`` (BasicSR LmdbMaker) instead of PNG folders. ``--val-per-camera N`` /
``--val-scenes``: hold whole scenes out for validation (the first N of each camera in name order): ``dst/train/...``
and ``dst/val/{lq,gt}`` (PNG), no scene in both.
"""
import argparse
import time
from os import path as osp

from _entry import run

import lan_basicsr  # noqa: F401  (compat shim before basicsr)
from lan_basicsr.data.prepare_util import (prepare_crops_lmdb, prepare_paired_folder, scan_pairs, select_cameras,
                                           split_holdout, write_camera_lists)
from lan_basicsr.utils.errors import DataError
from lan_basicsr.utils.options import LANArgumentParser, add_debug_argument


def parse_args(argv=None):
    parser = LANArgumentParser(
        prog='tools/prepare_polyu.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--src', required=True, help='PolyU root (with OriginalImages/ and CroppedImages/) or an image folder')
    parser.add_argument('--dst', required=True, help='output folder; lq/ and gt/ are created in it (must be empty)')
    parser.add_argument('--cropped', action='store_true', help='use CroppedImages (*_real / *_mean 512x512 crops)')
    parser.add_argument(
        '--tile-size',
        type=int,
        default=None,
        help='tile side; 0 = whole images (default: 512 for OriginalImages, 0 with --cropped)')
    parser.add_argument('--cameras', nargs='+', metavar='CAMERA', help='only these cameras, e.g. Canon80D SonyA7II')
    parser.add_argument(
        '--format', choices=('png', 'lmdb'), default='png', help='png folders (default) or lmdb (BasicSR LmdbMaker)')
    parser.add_argument(
        '--val-per-camera',
        type=int,
        default=0,
        metavar='N',
        help='hold out the first N scenes of each camera (name order) as dst/val (PNG); the rest goes to dst/train')
    parser.add_argument('--val-scenes', nargs='+', default=[], metavar='SCENE', help='hold out these scenes too')
    parser.add_argument(
        '--every',
        type=int,
        nargs='+',
        default=None,
        metavar='K',
        help='also list every K-th tile per camera, for each K given (with --cameras)')
    parser.add_argument('--workers', type=int, default=4, help='worker processes (default: 4; 1 = serial)')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 (default: 1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.val_per_camera < 0 or (args.every is not None and min(args.every) < 1):
        parser.error('--val-per-camera must be >= 0 and --every >= 1')
    if args.every and not args.cameras:
        parser.error('--every lists tiles per camera: give --cameras')
    if args.format == 'lmdb' and args.cropped:
        parser.error('--format lmdb writes tiles: not with --cropped')
    return args


def _write(scan, dst, tile, fmt, args):
    """One split: PNG folders or LMDBs; returns the PrepareSummary."""
    common = dict(workers=args.workers, compress_level=args.compress_level, progress=not args.no_progress)
    if fmt == 'lmdb':
        return prepare_crops_lmdb(scan, dst, size=tile, **common)
    return prepare_paired_folder(scan, dst, tile_size=tile, **common)


def main(argv=None):
    args = parse_args(argv)
    sub = osp.join(args.src, 'CroppedImages' if args.cropped else 'OriginalImages')
    folder = sub if osp.isdir(sub) else args.src
    tile = args.tile_size if args.tile_size is not None else (0 if args.cropped else 512)
    if args.format == 'lmdb' and not tile:
        raise DataError('--format lmdb writes tiles: give --tile-size > 0')
    start = time.time()
    scan = scan_pairs(folder, noisy_suffix='_Real', clean_suffix='_mean')
    if not scan.pairs:
        raise DataError(f'{folder}: no {{scene}}_Real / {{scene}}_mean image pairs found')
    if args.cameras:
        scan = select_cameras(scan, args.cameras)
    what = f'{tile}x{tile} tiles' if tile else 'images'
    splits = [('', scan)]
    if args.val_per_camera or args.val_scenes:
        train, val = split_holdout(scan, args.val_per_camera, args.val_scenes)
        splits = [('train', train), ('val', val)]
    summaries = {}
    for split, part in splits:
        dst, fmt = osp.join(args.dst, split), 'png' if split == 'val' else args.format
        summaries[split] = summary = _write(part, dst, tile, fmt, args)
        label = f'PolyU {osp.basename(osp.normpath(folder))}' + (f' {split}' if split else '')
        print(f'{label}: ' + '\n'.join(summary.report(what)))
        if args.cameras or split:
            print(f'  scenes: {", ".join(p[0] for p in part.pairs)}')
        if args.cameras and fmt == 'png':
            lists = write_camera_lists(dst, args.every)
            print(f'  tile lists in {dst}: ' + ', '.join(f'{n} ({k})' for n, k in lists.items()))
    print(f'wrote {args.dst} in {time.time() - start:.1f}s')
    return summaries[''] if '' in summaries else summaries


if __name__ == '__main__':
    run(main)
