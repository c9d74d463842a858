"""Shared entry for the command-line tools: repo root on sys.path, one-line errors with exit status 2.

An error the user can fix (a :class:`LANError`: option, data, checkpoint, busy results folder), a file the system
refuses (``OSError``: permission, disk full) or memory running out is printed as one line ``error: ...`` and the
tool exits with status 2 (130 on Ctrl-C). ``--debug`` prints the traceback too. Any other exception is a bug and
keeps its traceback. ``LAN_BASICSR_ROOT``: another folder for ``experiments/``, ``results/``, ``tb_logger/`` (e.g.
when the repository is read-only); relative paths in option files stay relative to the current directory.
"""
import os
import sys
import traceback
from os import path as osp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# where experiments/, results/ and tb_logger/ go: the repository root (BasicSR's layout) unless LAN_BASICSR_ROOT says
ROOT = osp.abspath(os.environ['LAN_BASICSR_ROOT']) if os.environ.get('LAN_BASICSR_ROOT') else REPO

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _one_line(text):
    return ' '.join(str(text).splitlines()).strip()


def _fail(message, status, debug):
    if debug:
        traceback.print_exc()
    print(f'error: {_one_line(message)}', file=sys.stderr, flush=True)
    sys.exit(status)


def run(main, *args, **kwargs):
    """Call ``main``; errors the user can act on become one line on stderr and a non-zero exit status."""
    from lan_basicsr.utils.errors import LANError
    debug = '--debug' in sys.argv[1:]
    try:
        return main(*args, **kwargs)
    except LANError as e:
        _fail(e, EXIT_USER_ERROR, debug)
    except KeyboardInterrupt:
        _fail(
            'interrupted; finished work is kept (tools/test.py continues where it stopped when run again, '
            'tools/train.py with --auto_resume)', EXIT_INTERRUPTED, debug)
    except MemoryError:
        _fail('out of memory: use smaller images (a crop), a smaller network or fewer processes', EXIT_USER_ERROR,
              debug)
    except OSError as e:
        where = f'{e.filename}: ' if getattr(e, 'filename', None) else ''
        _fail(
            f'{where}{e.strerror or e} (check the path, its permissions and the free disk space; --debug shows '
            'where it happened)', EXIT_USER_ERROR, debug)
    except RuntimeError as e:
        if type(e).__name__ != 'OutOfMemoryError':  # torch.OutOfMemoryError (CUDA or CPU allocator)
            raise
        _fail(
            f'out of memory ({str(e).splitlines()[0][:120]}): use smaller images (a crop), a smaller network or '
            'fewer processes', EXIT_USER_ERROR, debug)
