# Usage: python tools/run_table.py -opt options/table_dncnn_polyu_cross.yml [--methods lan full] [--losses zsn2n]
#            [--nproc-per-node 2] [--cfg-options num_gpu=0] [--dry-run]
"""Run a whole results table, then its report: one ``tools/test.py`` run per method and loss of the option file's
``table:`` section (see ``lan_basicsr/table_runs.py``), then ``tools/report.py`` on all of them.

Runs land in ``results/<name>_<method>[_<loss>]/``; a run that finished with the same command and option file is
reused without being started, an interrupted one resumes. ``--nproc-per-node N`` shards each run's images over N
processes (torchrun, ``--standalone``; ``--torchrun-args`` for other rendezvous settings, e.g. several nodes). The
report (Table 1 as Markdown and CSV, figures, index.html) goes to ``results/<name>_report/``, the table also to
``results/<name>_table.md``, and the wall time of every run to ``results/<name>_runs.csv``.
"""
import argparse
import csv
import os
import shlex
import time
from os import path as osp

from _entry import REPO, ROOT, run

import lan_basicsr  # noqa: F401  (compat shim before basicsr)


def parse_args(argv=None):
    from lan_basicsr.utils.options import CfgOptionsAction, LANArgumentParser, add_debug_argument
    parser = LANArgumentParser(
        prog='tools/run_table.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', required=True, help='option file with a table: section')
    parser.add_argument('--methods', nargs='+', metavar='KEY', help='only these table.methods keys')
    parser.add_argument('--losses', nargs='+', metavar='KEY', help='only these table.losses keys')
    parser.add_argument('--nproc-per-node', type=int, default=1, help='processes per run (torchrun); default 1')
    parser.add_argument(
        '--torchrun-args',
        default='',
        help='torchrun rendezvous arguments instead of --standalone, e.g. "--nnodes=2 --node_rank=0 '
        '--master_addr=HOST --master_port=29500"')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        default=None,
        metavar='KEY=VALUE',
        help='overrides for every run, e.g. num_gpu=0 (values verbatim, as tools/test.py takes them; name= renames '
        'the table)')
    parser.add_argument('--dry-run', action='store_true', help='print the runs\' commands and stop')
    parser.add_argument('--no-report', action='store_true', help='run only; make the report later (a second call)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.nproc_per_node < 1:
        parser.error('--nproc-per-node must be >= 1')
    return args


def main(argv=None):
    from lan_basicsr.table_runs import (finished_runs, options_digest, run_command, run_tables, table_runs,
                                        table_section, write_report)
    from lan_basicsr.utils.job_lock import job_folder
    from lan_basicsr.utils.option_schema import TOOL_SECTIONS, OptionContext
    from lan_basicsr.utils.options import OptionSources, load_config, merge_cfg_options
    args = parse_args(argv)
    opt_path = osp.abspath(args.opt) if osp.isfile(args.opt) else osp.join(REPO, args.opt)
    sources = OptionSources(args.opt)
    file_opt = load_config(opt_path, sources)
    opt = merge_cfg_options(file_opt, args.cfg_options)
    sources.record_cli(args.cfg_options)
    section, where = table_section(opt)
    TOOL_SECTIONS[where].check(section, (where, ), OptionContext(opt, sources=sources))
    name = opt.get('name') or osp.splitext(osp.basename(opt_path))[0]
    runs = table_runs(opt, name, args.methods, args.losses)
    opt_rel = osp.relpath(opt_path, REPO) if opt_path.startswith(osp.join(REPO, '')) else opt_path
    torchrun_args = shlex.split(args.torchrun_args)
    if args.dry_run:
        for r in runs:
            cmd = run_command(opt_rel, r, args.cfg_options, args.nproc_per_node, torchrun_args)
            print(' '.join(shlex.quote(c) for c in ['python'] + cmd[1:]))
        return runs
    results = osp.join(ROOT, 'results')
    digest = options_digest(file_opt)
    start = time.time()
    done = run_tables(  # each run holds its own results folder's lock
        runs,
        opt_rel,
        REPO,
        results,
        digest,
        args.cfg_options,
        args.nproc_per_node,
        torchrun_args,
        capture=False,
        log=lambda line: print(line, flush=True))
    run_seconds = sum(d['seconds'] for d in done)
    print(
        f'runs: {time.time() - start:.0f} s this call; its {len(done)} runs took {run_seconds:.0f} s (a reused run its '
        'first time)',
        flush=True)
    everything = table_runs(opt, name)  # the report covers every finished run of the table, not only this call's
    with job_folder(osp.join(results, name), {}):  # the table's own files: one writer at a time
        _write_times(osp.join(results, f'{name}_runs.csv'), everything, done)
        if args.no_report:
            return runs
        finished = finished_runs(everything, opt_rel, results, digest, args.cfg_options)
        table, paths = write_report(name, finished, results, section.get('steps'), section.get('title'))
    missing = [r.name for r in everything if r not in finished]
    print('\n' + table)
    if missing:
        print(f'Not in the report (not finished yet): {", ".join(missing)}')
    print(
        f'Report: {osp.relpath(paths["index.html"], ROOT)}; this table: results/{name}_table.md; run times: '
        f'results/{name}_runs.csv',
        flush=True)
    return runs


def _write_times(path, everything, done):
    """``runs.csv`` (run, method, loss, seconds, reused): this call's runs updated, other rows kept, table order."""
    rows = {}
    if osp.isfile(path):
        with open(path, newline='', encoding='utf-8') as f:
            rows = {row['run']: row for row in csv.DictReader(f)}
    for d in done:
        r = d['run']
        rows[r.name] = {
            'run': r.name,
            'method': r.method,
            'loss': r.loss or '',
            'seconds': f'{d["seconds"]:.1f}',
            'reused': d['reused']
        }
    fields = ['run', 'method', 'loss', 'seconds', 'reused']
    order = [r.name for r in everything if r.name in rows] + sorted(set(rows) - {r.name for r in everything})
    with open(path + '.tmp', 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fields, lineterminator='\n', extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows[n] for n in order)
    os.replace(path + '.tmp', path)


if __name__ == '__main__':
    run(main)
