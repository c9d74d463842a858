# Usage: python tools/selection_grid.py -opt options/select_dncnn_polyu.yml --prefix sel_polyu_gauss \
#            --variants lan_zsn2n:adapt.type=LAN full_zsn2n:adapt.type=FullTrainable [...] \
#            [--cfg-options adapt.select.type=SubImageScore ...]
"""Run a grid of adaptations, one ``tools/test.py`` run per variant, each into ``results/<prefix>_<variant>/``.

A variant is ``key:K=V,K=V`` (``--cfg-options`` of the option file, added after ``--cfg-options`` for all runs). Runs
already finished are skipped by LANModel itself (a rerun continues an interrupted one). Print the selection table
(lan_basicsr.report.selection_table) of the grid at the end.
"""
import argparse
import sys

from _entry import ROOT, run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', required=True, help='option file (LANModel)')
    parser.add_argument('--prefix', required=True, help='run names: <prefix>_<variant key>')
    parser.add_argument('--variants', nargs='+', required=True, metavar='KEY:K=V,K=V')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='K=V', help='for every run')
    parser.add_argument('--table', action='store_true', help='print the selection table of the grid at the end')
    return parser.parse_args(argv)


def main(argv=None):
    from os import path as osp

    from lan_basicsr.test import test_pipeline
    from lan_basicsr.utils.errors import OptionError
    args = parse_args(argv)
    folders = []
    for variant in args.variants:
        key, sep, cfg = variant.partition(':')
        if not key or not sep and cfg:
            raise OptionError(f'--variants {variant!r}: expected KEY:K=V,K=V')
        name = f'{args.prefix}_{key}'
        cfg_list = [c for c in cfg.split(',') if c]
        print(f'== {name}: {" ".join(args.cfg_options + cfg_list)}', file=sys.stderr, flush=True)
        test_pipeline(ROOT, argv=['-opt', args.opt, '--cfg-options', f'name={name}', *args.cfg_options, *cfg_list])
        folders.append(osp.join(ROOT, 'results', name))
    if args.table:
        from lan_basicsr.report.selection_table import selection_markdown, selection_rows
        print(selection_markdown(selection_rows(folders)))


if __name__ == '__main__':
    run(main)
