# Usage: python tools/prepare_sidd.py --src datasets/SIDD_Medium_Srgb/Data --dst datasets/SIDD \
#            --val-dir datasets/SIDD_val --val-format png lmdb
"""SIDD-Medium sRGB -> training LMDBs, and the SIDD validation blocks -> PNG folders and/or LMDBs.

Training (``--src``: scene folders holding ``*NOISY_SRGB*.PNG`` / ``*GT_SRGB*.PNG``): 512x512 crops with 128 overlap
(Restormer's rule: step 384, plus a last crop flush with the bottom/right edge), keys ``{stem}_s{index:03d}`` with
``stem`` = the noisy file stem without ``NOISY_``, written to ``dst/train/lq.lmdb`` and ``dst/train/gt.lmdb``
through BasicSR's LmdbMaker (meta_info.txt included, map size from the image headers).
Validation (``--val-dir`` with ValidationNoisyBlocksSrgb.mat / ValidationGtBlocksSrgb.mat, or ``--val-noisy`` and
``--val-gt``): 40 images x 32 blocks of 256x256 -> ``dst/val/{lq,gt}/{image}_{block}.png`` and/or
``dst/val/{lq,gt}.lmdb``. MATLAB v5 files are read with scipy, v7.3 (HDF5) files need h5py.
"""
import argparse
import time
from os import path as osp

from _entry import run

import lan_basicsr  # noqa: F401  (compat shim before basicsr)
from lan_basicsr.data.prepare_util import prepare_sidd_lmdb, prepare_sidd_val, scan_sidd
from lan_basicsr.utils.errors import DataError
from lan_basicsr.utils.options import LANArgumentParser, add_debug_argument


def parse_args(argv=None):
    parser = LANArgumentParser(
        prog='tools/prepare_sidd.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--src', help='SIDD-Medium sRGB Data folder (scanned recursively)')
    parser.add_argument('--dst', required=True, help='output folder (train/ and val/ are created in it)')
    parser.add_argument('--crop-size', type=int, default=512, help='crop side (default: 512)')
    parser.add_argument('--overlap', type=int, default=128, help='overlap of neighbouring crops (default: 128)')
    parser.add_argument('--val-dir', help='folder with ValidationNoisyBlocksSrgb.mat and ValidationGtBlocksSrgb.mat')
    parser.add_argument('--val-noisy', help='noisy validation .mat (overrides --val-dir)')
    parser.add_argument('--val-gt', help='clean validation .mat (overrides --val-dir)')
    parser.add_argument(
        '--val-format',
        nargs='+',
        choices=('png', 'lmdb'),
        default=['png'],
        help='validation output format(s) (default: png)')
    parser.add_argument('--workers', type=int, default=4, help='worker processes for cropping (default: 4)')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 (default: 1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.val_dir:
        args.val_noisy = args.val_noisy or osp.join(args.val_dir, 'ValidationNoisyBlocksSrgb.mat')
        args.val_gt = args.val_gt or osp.join(args.val_dir, 'ValidationGtBlocksSrgb.mat')
    if bool(args.val_noisy) != bool(args.val_gt):
        parser.error('give both --val-noisy and --val-gt (or --val-dir)')
    if not args.src and not args.val_noisy:
        parser.error('nothing to do: give --src and/or the validation files')
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    if args.src:
        scan = scan_sidd(args.src)
        if not scan.pairs:
            raise DataError(f'{args.src}: no *NOISY_SRGB* / *GT_SRGB* image pairs found')
        summary = prepare_sidd_lmdb(
            scan,
            osp.join(args.dst, 'train'),
            size=args.crop_size,
            overlap=args.overlap,
            workers=args.workers,
            compress_level=args.compress_level,
            progress=not args.no_progress)
        print('SIDD train: ' + '\n'.join(summary.report(f'{args.crop_size}x{args.crop_size} crops')))
        print(f'wrote {osp.join(args.dst, "train", "lq.lmdb")} and {osp.join(args.dst, "train", "gt.lmdb")}')
    if args.val_noisy:
        num = prepare_sidd_val(
            args.val_noisy,
            args.val_gt,
            osp.join(args.dst, 'val'),
            formats=args.val_format,
            compress_level=args.compress_level)
        print(f'SIDD val: {num} blocks per side as {" and ".join(args.val_format)} in {osp.join(args.dst, "val")}')
    print(f'done in {time.time() - start:.1f}s')


if __name__ == '__main__':
    run(main)
