# Usage: python tools/demo.py [-opt options/demo_lan_dncnn_gaussian.yml] [--methods pretrained lan ...]
#            [--cfg-options KEY=VALUE ...]
#        python tools/demo.py --real-pairs DIR [--methods camera_pretrained ...] [--nproc 2]   (DIR/lq, DIR/gt)
"""Run the demo: one ``tools/test.py`` run per method listed in the option file's ``demo.methods``, then one table.

Each method is ``{key, label, cfg_options}`` and optionally ``model`` (an embedded model of ``lan_basicsr.embedded``:
its checkpoint and ``network_g`` block, added before the cfg_options): its run is ``tools/test.py -opt OPT
--cfg-options name=<name>_<key> <model> <cfg_options> <your --cfg-options>`` and writes ``results/<name>_<key>/``
(summary.csv, per_step.csv, denoised images under visualization/, noisy/step-0/clean images under compare/). Then
``tools/report.py`` 's report of all the runs goes to ``results/<name>_report/`` (index.html, Table 1, figures) and
its table to ``results/<name>_table.md`` and the console. The runs are ``lan_basicsr.table_runs``'s (as
tools/run_table.py's): a run that finished with the same command and option file is not started again, so a second
call only makes the report again.

``--real-pairs DIR``: the same table on real noise, from a folder with ``lq/`` (noisy) and ``gt/`` (clean) images of
the same names (e.g. ``datasets/PolyU`` made by ``tools/prepare_polyu.py``): option file
``options/demo_lan_dncnn_real.yml`` (both embedded defaults, step 0 and LAN / FullTrainable at 20 steps, the official
top-left 256x256 crops) with the data paths set to ``DIR``, run name ``demo_real_<folder name>``.
``--nproc N`` runs each method under ``torchrun --standalone --nproc_per_node=N`` (the images are split between the
processes; the results are the same).
"""
import argparse
import os
import time
from os import path as osp

from _entry import REPO, ROOT, run

from lan_basicsr.utils.errors import OptionError

DEFAULT_OPT = osp.join('options', 'demo_lan_dncnn_gaussian.yml')
REAL_PAIRS_OPT = osp.join('options', 'demo_lan_dncnn_real.yml')


def parse_args(argv=None):
    from lan_basicsr.utils.options import CfgOptionsAction, LANArgumentParser, add_debug_argument
    parser = LANArgumentParser(
        prog='tools/demo.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '-opt', '--opt', default=None, help=f'option file (default: {DEFAULT_OPT}; with --real-pairs {REAL_PAIRS_OPT})')
    parser.add_argument(
        '--real-pairs', metavar='DIR', help='real noisy/clean pairs: a folder with lq/ and gt/ (same file names)')
    parser.add_argument('--methods', nargs='+', metavar='KEY', help='run only these demo.methods keys')
    parser.add_argument(
        '--nproc',
        type=int,
        default=1,
        help='processes per run (torchrun --standalone; the images are split between them, results are the same)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        default=None,
        metavar='KEY=VALUE',
        help='overrides for every run, e.g. num_gpu=0 (values verbatim, as tools/test.py takes them)')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def demo_methods(opt, only=None):
    """The ``demo.methods`` entries (filtered by key), checked."""
    from lan_basicsr.table_runs import table_runs
    methods = (opt.get('demo') or {}).get('methods')
    if not isinstance(methods, list) or not methods:
        raise OptionError('demo.methods: the option file lists no demo methods ({key, label, cfg_options} entries)')
    keys = {r.method for r in table_runs({'demo': opt['demo']}, 'demo', only)}  # checks entries and keys
    return [m for m in methods if m['key'] in keys]


def _runs(name, methods):
    from lan_basicsr.table_runs import table_runs
    return table_runs({'demo': {'methods': methods}}, name)


def real_pairs_options(folder):
    """``(name, --cfg-options dict)`` that point the real-pairs demo at ``folder`` (with ``lq/`` and ``gt/``)."""
    folder = osp.abspath(folder)
    missing = [sub for sub in ('lq', 'gt') if not osp.isdir(osp.join(folder, sub))]
    if missing:
        raise OptionError(f'--real-pairs {folder}: no {" or ".join(missing)}/ folder inside; expected lq/ (noisy) and '
                          'gt/ (clean) images with the same names, e.g. from tools/prepare_polyu.py')
    label = osp.basename(folder.rstrip(os.sep)) or 'pairs'
    name = f'demo_real_{label}'
    return name, {
        'name': name,
        'datasets.test.name': label,
        'datasets.test.dataroot_lq': osp.join(folder, 'lq'),
        'datasets.test.dataroot_gt': osp.join(folder, 'gt')
    }


def write_report(name, methods, results):
    """The demo's report from its runs' folders (``lan_basicsr.report``: Table 1, figures, index.html) under
    ``results/<name>_report/``; the table is also ``results/<name>_table.md``. Returns (table markdown, paths)."""
    from lan_basicsr.table_runs import write_report as write_table_report
    return write_table_report(name, _runs(name, methods), results, title=f'Demo: {name}')


def main(argv=None):
    from lan_basicsr.utils.job_lock import job_folder
    from lan_basicsr.utils.option_schema import TOOL_SECTIONS, OptionContext
    from lan_basicsr.utils.options import OptionSources, load_config, merge_cfg_options
    args = parse_args(argv)
    if args.nproc < 1:
        raise OptionError(f'--nproc: expected a positive number of processes, got {args.nproc}')
    args.opt = args.opt or (REAL_PAIRS_OPT if args.real_pairs else DEFAULT_OPT)
    if args.real_pairs:  # the folder's options first, so that the user's --cfg-options still win
        _, folder_opts = real_pairs_options(args.real_pairs)
        args.cfg_options = {**folder_opts, **(args.cfg_options or {})}
    # runs start in the repository root, where the option files' relative paths (checkpoint, data) point; results go
    # to ROOT (the repository root unless LAN_BASICSR_ROOT says otherwise)
    opt_path = osp.abspath(args.opt) if osp.isfile(args.opt) else osp.join(REPO, args.opt)
    sources = OptionSources(args.opt)
    opt = merge_cfg_options(load_config(opt_path, sources), args.cfg_options)
    sources.record_cli(args.cfg_options)
    TOOL_SECTIONS['demo'].check(opt.get('demo'), ('demo', ), OptionContext(opt, sources=sources))
    name = opt.get('name') or osp.splitext(osp.basename(args.opt))[0]
    methods = demo_methods(opt, args.methods)
    with job_folder(osp.join(ROOT, 'results', name), {}):  # the demo's own outputs (table, inputs): one writer
        _run_methods(args, opt, opt_path, name, methods)


def _run_methods(args, opt, opt_path, name, methods):
    from lan_basicsr.table_runs import options_digest, run_tables
    from lan_basicsr.utils.options import load_config
    results = osp.join(ROOT, 'results')
    start = time.time()
    runs = _runs(name, methods)  # 'name' is each run's own (<name>_<key>); every other override goes to every run
    run_tables(
        runs,
        osp.relpath(opt_path, REPO),
        REPO,
        results,
        options_digest(load_config(opt_path)),
        args.cfg_options,
        nproc_per_node=args.nproc,
        log=lambda line: print(line, flush=True))
    folders = ' '.join(f'results/{r.name}' for r in runs)
    print(f'Report: python tools/report.py {folders} -o results/{name}_report', flush=True)
    table, paths = write_report(name, methods, results)
    print('\n' + table)
    print(f'Denoised images: results/{name}_<method>/visualization/<dataset>/ (noisy, step-0 and clean ones under '
          f'compare/); this table: results/{name}_table.md; the report page: '
          f'{osp.relpath(paths["index.html"], ROOT)}. Total {time.time() - start:.0f} s.')


if __name__ == '__main__':
    run(main)
