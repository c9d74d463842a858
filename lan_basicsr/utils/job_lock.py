"""One writer per job folder (``results/<name>/``, ``experiments/<name>/``), and nothing left behind by a failed start.

:func:`job_folder` holds an exclusive ``fcntl.flock`` on ``<parent>/.<name>.lock`` for the whole job. A second job
on the same folder is refused at once with a one-line error naming the running one (pid, host, start time,
command). The kernel releases the lock when its holder exits, however it exits (a crash, ``kill -9``), so a lock
left by a dead job never blocks the next one: no stale-lock cleanup is needed, and the file is never deleted (deleting
a lock file is what makes lock files racy). The lock file sits beside the folder, not in it, because BasicSR renames
an existing ``experiments/<name>/`` when a training run starts afresh.

Under torchrun one job is one holder: rank 0 takes the lock and tells the other ranks (a broadcast), and every rank
stops with the same error when it is refused. ``flock`` works across hosts on NFSv4 and other filesystems that
support it; on one without lock support the job is refused with an error that says so.

A job that fails with a :class:`~lan_basicsr.utils.errors.LANError` before writing any result removes what it created
(its log file and empty folders; a training run's archived previous folder is moved back), so that fixing the
option and running again starts from the same state.
"""
import datetime
import fcntl
import json
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from os import path as osp

from .errors import LANError, OptionError

__all__ = ['JobLock', 'job_folder', 'check_not_in_use']


def _describe(holder):
    if not holder:
        return 'another process (it has not written its details yet)'
    return (f'pid {holder.get("pid")} on {holder.get("host")}, started {holder.get("started")} '
            f'({holder.get("command", "")})')


class JobLock:
    """An exclusive, non-blocking lock on ``<parent>/.<name>.lock`` for the job folder ``folder``."""

    def __init__(self, folder):
        parent, name = osp.split(osp.normpath(osp.abspath(folder)))
        self.folder, self.parent = folder, parent
        self.path = osp.join(parent, f'.{name}.lock')
        self.fd = None
        self.previous = None  # the details left by the last holder (a finished or killed job)

    def acquire(self):
        try:
            os.makedirs(self.parent, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OptionError(
                f'{self.parent}: cannot write there ({e.strerror or e}); make it writable, or set '
                'LAN_BASICSR_ROOT to a folder you can write to (results/ and experiments/ go there)') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise OptionError(f'{self.folder} is in use by another job: {_describe(holder)}; wait for it to finish or '
                              'give this run another name (--cfg-options name=<new name>)') from None
        except OSError as e:
            os.close(fd)
            raise OptionError(f'{self.path}: cannot lock ({e.strerror or e}); this filesystem does not support '
                              'file locks: put the repository on a local disk') from None
        self.previous = self._read(fd)
        info = {
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
            'command': ' '.join([osp.basename(sys.argv[0])] + sys.argv[1:])[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
        self.fd = fd
        return self

    @staticmethod
    def _read(fd):
        try:
            text = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_not_in_use(folder):
    """Refuse to read ``folder`` while a job writes it (its results are partial): an OptionError naming the job."""
    lock = JobLock(folder)
    if not osp.isfile(lock.path):
        return
    try:
        fd = os.open(lock.path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: never conflicts with another reader
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise OptionError(f'{folder} is being written by a running job: {_describe(JobLock._read(fd))}; its results '
                          'are not complete yet: wait for it to finish') from None
    except OSError:
        pass
    finally:
        os.close(fd)


def _snapshot(folder):
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder`` (empty when it does not exist)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = osp.join(root, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out[osp.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def _archives(folder):
    parent, name = osp.split(osp.normpath(folder))
    if not osp.isdir(parent):
        return set()
    return {n for n in os.listdir(parent) if n.startswith(f'{name}_archived_')}


def _undo_failed_start(folder, existed, before, archives_before):
    """Remove what a failed job created, unless it wrote anything but log files (then keep all: they are results)."""
    archived = sorted(_archives(folder) - archives_before)
    fresh = not existed or bool(archived)  # BasicSR moved an earlier folder aside: this one is the job's own
    after = _snapshot(folder)
    changed = [p for p, st in after.items() if fresh or before.get(p) != st]
    if any(not p.endswith('.log') for p in changed):
        return
    for p in changed:
        if fresh or p not in before:  # this job's own log (an earlier one that BasicSR rewrote is left alone)
            os.remove(osp.join(folder, p))
    if not fresh or not osp.isdir(folder) or any(files for _, _, files in os.walk(folder)):
        return
    shutil.rmtree(folder)
    if archived:  # move the earlier folder back where it was
        os.rename(osp.join(osp.dirname(osp.normpath(folder)), archived[-1]), folder)


@contextmanager
def job_folder(folder, opt):
    """Hold the job lock of ``folder`` for the ``with`` block (rank 0 under torchrun); undo a failed start."""
    rank = opt.get('rank', 0)
    dist = bool(opt.get('dist'))
    lock, message = None, None
    if rank == 0:
        try:
            lock = JobLock(folder).acquire()
        except OptionError as e:
            message = str(e)
    if dist:
        import torch.distributed as torch_dist
        if torch_dist.is_initialized():
            box = [message]
            torch_dist.broadcast_object_list(box, src=0)
            message = box[0]
    if message is not None:
        raise OptionError(message)
    existed = osp.isdir(folder)
    before = _snapshot(folder) if rank == 0 else {}
    archives_before = _archives(folder) if rank == 0 else set()
    try:
        yield lock
    except LANError:
        if rank == 0:
            try:
                _undo_failed_start(folder, existed, before, archives_before)
            except OSError:
                pass
        raise
    finally:
        if lock is not None:
            lock.release()
