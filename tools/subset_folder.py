# Usage: python tools/subset_folder.py --src datasets/PolyU --dst datasets/PolyU_every10 --every 10
"""A fixed subset of a paired folder (``lq/`` and ``gt/``, matched by name): every k-th pair in file-name order (of the
names starting with ``--prefix``), from the ``--offset``-th, as symbolic links (nothing is copied); another offset
gives a disjoint subset (e.g. a validation set beside an evaluation set made with offset 0). The choice depends on the
names only, never on a score, so it can be made before anything is run and reproduced by anyone;
lan_basicsr.report.selection_table's ``--every k`` picks the same images out of a run over the whole folder."""
import argparse
import os
from os import path as osp

from _entry import run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--src', required=True, help='folder with lq/ and gt/')
    parser.add_argument('--dst', required=True, help='new folder (lq/ and gt/ of links)')
    parser.add_argument('--every', type=int, required=True, help='keep every k-th pair (k >= 1), from the first')
    parser.add_argument('--offset', type=int, default=0, help='start at the pair with this index (0 <= offset < k)')
    parser.add_argument('--prefix', default='', help='only names starting with this (e.g. a PolyU camera: Canon80D)')
    return parser.parse_args(argv)


def main(argv=None):
    from lan_basicsr.data.data_util import list_images
    from lan_basicsr.utils.errors import DataError, OptionError
    args = parse_args(argv)
    if args.every < 1:
        raise OptionError(f'--every: expected an integer >= 1, got {args.every}')
    if not 0 <= args.offset < args.every:
        raise OptionError(
            f'--offset: expected an integer in [0, {args.every}) (--every {args.every}), got {args.offset}')
    names = {}
    for side in ('lq', 'gt'):
        folder = osp.join(args.src, side)
        if not osp.isdir(folder):
            raise DataError(f'{folder}: missing; --src must hold lq/ and gt/')
        names[side] = sorted(list_images(folder))
    if names['lq'] != names['gt']:
        raise DataError(f'{args.src}: lq/ and gt/ hold different file names; prepare the folder again')
    chosen = [n for n in names['lq'] if n.startswith(args.prefix)]
    if not chosen:
        raise DataError(f'{args.src}: no image name starts with {args.prefix!r}')
    keep = chosen[args.offset::args.every]
    if not keep:
        raise DataError(f'{args.src}: only {len(chosen)} pairs match, none at --offset {args.offset}')
    for side in ('lq', 'gt'):
        os.makedirs(osp.join(args.dst, side), exist_ok=True)
        for name in keep:
            link = osp.join(args.dst, side, name)
            if not osp.lexists(link):
                os.symlink(osp.abspath(osp.join(args.src, side, name)), link)
    print(f'{args.dst}: {len(keep)} of {len(chosen)} pairs (every {args.every}th from index {args.offset}: {keep[0]})')


if __name__ == '__main__':
    run(main)
