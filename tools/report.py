# Usage: python tools/report.py results/lan_uformer_polyu results/full_uformer_polyu [...] -o results/report_polyu
#            [--label full_uformer_polyu="Full-trainable"] [--steps 0 5 10 20] [--images 3] [--title TEXT]
"""Tables (Table 1, per-image gains), figures (Fig. 5, Fig. 4 / 6) and one self-contained index.html from LANModel
results folders. Reads the folders only (per_step.csv, inputs.csv, adapt_run.json, report.json, saved images and
offsets); nothing is recomputed. Open OUT/index.html in a browser; OUT/table1.md is the Markdown table."""
import argparse

from _entry import run


def parse_args(argv=None):
    from lan_basicsr.utils.options import LANArgumentParser, add_debug_argument
    parser = LANArgumentParser(
        prog='tools/report.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='+', metavar='RESULTS_DIR', help='LANModel results folders (results/<name>)')
    parser.add_argument('-o', '--out', required=True, help='output folder (index.html, tables, figures)')
    parser.add_argument(
        '--label',
        action='append',
        default=[],
        metavar='NAME=LABEL',
        help='display label of a results folder (its path or base name); repeatable')
    parser.add_argument('--steps', nargs='+', type=int, help='Table 1 columns (default: the runs\' report steps)')
    parser.add_argument('--images', type=int, default=3, help='images per dataset shown as pictures (default 3)')
    parser.add_argument('--title', help='page title')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    import logging

    from basicsr.utils import get_root_logger

    import lan_basicsr  # noqa: F401  (registers the noise models)
    from lan_basicsr.report import build_report
    from lan_basicsr.utils.errors import OptionError
    from lan_basicsr.utils.job_lock import check_not_in_use, job_folder
    args = parse_args(argv)
    labels = {}
    for item in args.label:
        name, sep, label = item.partition('=')
        if not sep or not name or not label:
            raise OptionError(f'--label {item!r}: expected NAME=LABEL (NAME: a results folder or its base name)')
        labels[name] = label
    for folder in args.results:  # a folder a job is still writing holds partial results
        check_not_in_use(folder)
    get_root_logger(logger_name='basicsr', log_level=logging.INFO)
    with job_folder(args.out, {}):  # one report writer per output folder
        paths = build_report(
            args.results, args.out, labels=labels, steps=args.steps, images=args.images, title=args.title)
    with open(paths['table1.md'], encoding='utf-8') as f:
        print(f.read())
    print(f'Report: {paths["index.html"]}')


if __name__ == '__main__':
    run(main)
