# Usage: python tools/selection_table.py results/sel_lan_zsn2n results/sel_full_zsn2n [...] [--every 10] \
#            [--ours "rule across 2 methods"] [--lan "LAN + ZS-N2N, k = 20"] [--out table.md] [--title TEXT]
"""The comparison table of the GT-free step selection (lan_basicsr.report.selection_table) from LANModel results
folders: noisy input, step 0, each run at its last step, the best of them in hindsight, each run's selected result
and the per-image choice across runs by the rule's score; mean and worst image, images below step 0 / the noisy
input. Runs of one network at a time. Reads the folders only."""
import argparse

from _entry import run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('results', nargs='+', metavar='RESULTS_DIR', help='LANModel results folders (results/<name>)')
    parser.add_argument('--every', type=int, help='compare on every k-th image (name order) of the smallest run')
    parser.add_argument('--tolerance', type=float, default=0.05, help='dB below step 0 that counts (default 0.05)')
    parser.add_argument('--ours', help='row label (or kind: across, selected) whose goals are printed')
    parser.add_argument('--lan', help='row label of the LAN baseline for the goals (e.g. "LAN + ZS-N2N, k = 20")')
    parser.add_argument('--by-camera', action='store_true', help='also one table per PolyU camera (from tile names)')
    parser.add_argument('--title', help='heading of the table')
    parser.add_argument('--out', help='also write the Markdown here')
    return parser.parse_args(argv)


def main(argv=None):
    import json

    from lan_basicsr.report.selection_table import goals, polyu_camera, selection_markdown, selection_rows
    args = parse_args(argv)
    tables = selection_rows(args.results, every=args.every, split=polyu_camera if args.by_camera else None)
    text = selection_markdown(tables, args.tolerance, args.title)
    if args.ours:
        text += '\nGoals (' + args.ours + '):\n\n```\n' + json.dumps(
            goals(tables, args.ours, args.lan, args.tolerance), indent=1) + '\n```\n'
    print(text)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)


if __name__ == '__main__':
    run(main)
