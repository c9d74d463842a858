"""One writer per job folder: a second job is refused naming the first, a killed job's lock never blocks, a failed
start leaves nothing behind; under torchrun every rank stops with the same one-line error."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from os import path as osp

import pytest
import yaml
from conftest import ROOT, make_paired_folder, tiny_dncnn

from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.job_lock import JobLock, job_folder

# a job holding the lock as JobLock does (flock on <parent>/.<name>.lock, its details as JSON), without importing torch
HOLDER = '''
import fcntl, json, os, socket, sys, time
folder = os.path.normpath({folder!r})
parent, name = os.path.split(folder)
os.makedirs(parent, exist_ok=True)
fd = os.open(os.path.join(parent, '.' + name + '.lock'), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
info = dict(pid=os.getpid(), host=socket.gethostname(), started='2026-01-01T00:00:00', command='holder')
os.ftruncate(fd, 0)
os.pwrite(fd, json.dumps(info).encode(), 0)
print('held', flush=True)
time.sleep(120)
'''


def _holder(folder):
    """A separate process that takes the lock of ``folder`` and keeps it (until killed)."""
    proc = subprocess.Popen([sys.executable, '-c', HOLDER.format(folder=str(folder))],
                            stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_second_job_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / 'results' / 'job'
    proc = _holder(folder)
    try:
        with pytest.raises(OptionError) as e:
            JobLock(folder).acquire()
        message = str(e.value)
        assert message.startswith(f'{folder} is in use by another job: pid {proc.pid} on ')
        assert ', started 20' in message and '--cfg-options name=<new name>' in message and '\n' not in message
        assert not folder.exists()  # the refused job created nothing
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_job_is_recovered(tmp_path):
    folder = tmp_path / 'results' / 'job'
    proc = _holder(folder)
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up code runs: the kernel releases the flock
    proc.wait()
    lock = JobLock(folder).acquire()
    try:
        assert lock.previous['pid'] == proc.pid  # the dead job's details, replaced by ours
        with open(lock.path) as f:
            assert json.load(f)['pid'] == os.getpid()
        with pytest.raises(OptionError, match=f'pid {os.getpid()}'):
            JobLock(folder).acquire()  # a second lock in this process is refused too (flock is per open file)
    finally:
        lock.release()
    JobLock(folder).acquire().release()  # released: free again


def test_failed_start_leaves_nothing_behind(tmp_path):
    folder = tmp_path / 'results' / 'job'
    with pytest.raises(DataError):
        with job_folder(str(folder), {}):
            os.makedirs(folder / 'visualization')
            (folder / 'test_job_1.log').write_text('log lines')
            raise DataError('bad image')
    assert not folder.exists()
    # an existing folder with results: a failed rerun removes only its own log
    os.makedirs(folder)
    (folder / 'per_step.csv').write_text('rows')
    (folder / 'old.log').write_text('old')
    with pytest.raises(OptionError):
        with job_folder(str(folder), {}):
            (folder / 'new.log').write_text('new')
            raise OptionError('refused')
    assert sorted(os.listdir(folder)) == ['old.log', 'per_step.csv']
    # a job that wrote results keeps them when it fails later
    with pytest.raises(DataError):
        with job_folder(str(folder), {}):
            (folder / 'summary.csv').write_text('summary')
            (folder / 'newer.log').write_text('log')
            raise DataError('image 5 is corrupt')
    assert sorted(os.listdir(folder)) == ['newer.log', 'old.log', 'per_step.csv', 'summary.csv']


def test_failed_training_start_moves_the_archived_folder_back(tmp_path):
    """BasicSR renames experiments/<name> aside when a run starts afresh; a start that fails puts it back."""
    folder = tmp_path / 'experiments' / 'job'
    os.makedirs(folder / 'models')
    (folder / 'models' / 'net_g_100.pth').write_text('weights')
    with pytest.raises(DataError):
        with job_folder(str(folder), {}):
            os.rename(folder, tmp_path / 'experiments' / 'job_archived_20260101_000000')
            os.makedirs(folder / 'training_states')
            (folder / 'train_job.log').write_text('log')
            raise DataError('no images')
    assert os.listdir(tmp_path / 'experiments') == ['job', '.job.lock'] or sorted(os.listdir(
        tmp_path / 'experiments')) == ['.job.lock', 'job']
    assert (folder / 'models' / 'net_g_100.pth').read_text() == 'weights'


def _options(tmp_path, num, steps, size=(24, 32)):
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=num, size=size)
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY
    net = ARCH_REGISTRY.get('DnCNN')(**{k: v for k, v in tiny_dncnn().items() if k != 'type'})
    torch.save({'params': net.state_dict()}, tmp_path / 'net.pth')
    opt = {
        'name': 'job',
        'model_type': 'LANModel',
        'num_gpu': 0,
        'network_g': tiny_dncnn(),
        'path': {
            'pretrain_network_g': str(tmp_path / 'net.pth')
        },
        'datasets': {
            'test': {
                'name': 'toy',
                'type': 'PairedNoisyDataset',
                'dataroot_lq': f'{pairs}/lq',
                'dataroot_gt': f'{pairs}/gt'
            }
        },
        'adapt': {
            'type': 'LAN',
            'steps': steps
        },
        'val': {
            'save_img': False
        },
    }
    path = tmp_path / 'opt.yml'
    path.write_text(yaml.safe_dump(opt))
    return path


def test_two_tools_on_one_name_one_runs_one_is_refused(tmp_path):
    """The reported failure: two test.py runs on one name both exited 0 and per_step.csv ended with 0 rows."""
    sys.path.insert(0, osp.join(ROOT, 'tests', 'helpers'))
    import bad_input_catalogue as catalogue
    opt_path = _options(tmp_path, num=4, steps=60, size=(96, 128))  # seconds of work: the second job starts meanwhile
    root = tmp_path / 'root'
    runner = catalogue.Runner('fork')
    assert runner('test.py', ['-h'], str(tmp_path),
                  str(root))[0] == 0  # the forkserver is up: the second job starts fast
    first = runner.start('test.py', ['-opt', str(opt_path)], str(tmp_path), str(root))
    lock_file = root / 'results' / '.job.lock'
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first job holds the lock
        if lock_file.exists() and lock_file.read_text().strip():
            break
        time.sleep(0.02)
    rc, _, err = runner('test.py', ['-opt', str(opt_path)], str(tmp_path), str(root))
    first_rc, _, first_err = first.wait()
    assert first_rc == 0, first_err[-2000:]
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f'results/job is in use by another job: pid {first.pid} on ' in err
    with open(root / 'results' / 'job' / 'per_step.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 61 and len({(r['image'], r['step']) for r in rows}) == 4 * 61
    with open(root / 'results' / 'job' / 'summary.csv', newline='') as f:
        assert [int(r['images']) for r in csv.DictReader(f)] == [4] * 5  # steps 0, 5, 10, 20, 60


@pytest.mark.skipif(shutil.which('torchrun') is None, reason='torchrun not installed')
def test_torchrun_job_refused_on_every_rank(tmp_path):
    opt_path = _options(tmp_path, num=2, steps=1)
    root = tmp_path / 'root'
    holder = _holder(root / 'results' / 'job')
    try:
        env = dict(os.environ, LAN_BASICSR_ROOT=str(root), OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
        cmd = [
            'torchrun', '--nproc_per_node=2', '--master_port=29517',
            osp.join(ROOT, 'tools', 'test.py'), '-opt',
            str(opt_path), '--launcher', 'pytorch'
        ]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    finally:
        holder.kill()
        holder.wait()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith('error: ')]
    assert len(errors) == 2 and all(f'is in use by another job: pid {holder.pid}' in e for e in errors), output
    assert '/lan_basicsr/' not in output  # no traceback from the ranks (torchrun reports the failed ranks itself)
    assert not (root / 'results' / 'job').exists()
