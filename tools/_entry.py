"""Shared entry for the command-line tools: repo root on sys.path, one-line errors with exit status 2."""
import sys
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def run(main, *args, **kwargs):
    """Call ``main``; a :class:`LANError` (the user's to fix) is printed on one line and exits with status 2."""
    from lan_basicsr.utils.errors import LANError
    try:
        return main(*args, **kwargs)
    except LANError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
