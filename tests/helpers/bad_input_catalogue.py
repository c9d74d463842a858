"""A catalogue of bad inputs run through the real command-line tools (tools/*.py), each classified as

- ``clean``: exit status 2, the last stderr line is ``error: ...`` matching the expected message, no traceback
  (and, for errors found before anything runs, that line is all there is);
- ``traceback``: a Python traceback reached the user;
- ``silent``: the tool exited 0 although the input is wrong, or (for inputs that must work) wrote the wrong result;
- ``unclear``: anything else (another exit status, no error line, a message that does not name the problem).

Every case runs in a fresh folder with its own ``LAN_BASICSR_ROOT``; ``check`` then asserts what must (not) have been
written. Two ways to run the tools:

- ``fork`` (default, used by tests/test_tools/test_bad_input_catalogue.py): a forkserver that has imported torch,
  BasicSR and lan_basicsr forks one process per run, which executes the tool script as ``__main__`` with its argv,
  its own stdout/stderr and exit status; the same code path as ``python tools/X.py`` minus the interpreter start.
- ``subprocess``: ``python tools/X.py ...`` itself (5 s of CPU per run; by hand or in the job queue).

By hand: ``python tests/helpers/bad_input_catalogue.py [--subprocess] [-k NAME]`` prints one line per case and the
counts.
"""
import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from os import path as osp
from typing import Callable, Optional

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools')
if sys.path[0] != REPO:  # this checkout's lan_basicsr, not an installed one
    sys.path.insert(0, REPO)
PRELOAD = [
    'numpy', 'cv2', 'torch', 'lan_basicsr', 'basicsr', 'mmengine.config', 'lan_basicsr.test', 'lan_basicsr.train',
    'skimage.data', 'lmdb'
]

# ----------------------------------------------------------------------------------------------------------------------
# running a tool


def _child(tool, argv, cwd, root, out_path, err_path):
    """Forked worker: run ``tools/<tool>`` as ``__main__`` like ``python tools/<tool> argv`` would."""
    import runpy
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    code = 0
    try:
        import torch
        torch.set_num_threads(1)
        os.chdir(cwd)
        os.environ['LAN_BASICSR_ROOT'] = root
        os.environ['OMP_NUM_THREADS'] = '1'
        sys.path.insert(0, TOOLS)
        sys.modules.pop('_entry', None)
        script = osp.join(TOOLS, tool)
        sys.argv = [script] + list(argv)
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter would print
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class Runner:
    """Runs tools by fork (from a preloaded forkserver) or as subprocesses."""

    def __init__(self, mode='fork', timeout=300):
        self.mode, self.timeout = mode, timeout
        self.ctx = None
        if mode == 'fork':
            self.ctx = multiprocessing.get_context('forkserver')
            self.ctx.set_forkserver_preload([__name__] + PRELOAD)

    def start(self, tool, argv, cwd, root):
        """Start a run in the background (fork mode); ``.wait()`` on the result gives ``(rc, stdout, stderr)``."""
        tmp = tempfile.mkdtemp()
        out, err = osp.join(tmp, 'out'), osp.join(tmp, 'err')
        p = self.ctx.Process(target=_child, args=(tool, list(argv), cwd, root, out, err))
        p.start()

        class Started:
            pid = p.pid

            @staticmethod
            def wait(timeout=self.timeout):
                p.join(timeout)
                if p.is_alive():
                    p.kill()
                    p.join()
                with open(out, errors='replace') as f, open(err, errors='replace') as g:
                    result = p.exitcode, f.read(), g.read()
                shutil.rmtree(tmp, ignore_errors=True)
                return result

        return Started

    def __call__(self, tool, argv, cwd, root):
        if self.mode == 'fork':
            return self.start(tool, argv, cwd, root).wait()
        if self.mode == 'subprocess':
            env = dict(os.environ, LAN_BASICSR_ROOT=root, OMP_NUM_THREADS='1')
            proc = subprocess.run(
                [sys.executable, osp.join(TOOLS, tool)] + list(argv),
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout)
            return proc.returncode, proc.stdout, proc.stderr


# ----------------------------------------------------------------------------------------------------------------------
# the workspace of a case


def tiny_dncnn():
    return {'type': 'DnCNN', 'in_nc': 3, 'out_nc': 3, 'nc': 4, 'nb': 3, 'act_mode': 'R'}


def make_fixtures(base):
    """Shared inputs (read-only for the cases): image pairs, a tiny checkpoint, odd files."""
    import cv2
    import numpy as np
    import torch
    import lan_basicsr  # noqa: F401  isort:skip  (before basicsr: the torchvision shim)
    from basicsr.utils.registry import ARCH_REGISTRY

    rng = np.random.default_rng(0)
    for folder, num, (h, w) in (('pairs', 2, (24, 32)), ('tiny', 1, (1, 1))):
        for side in ('lq', 'gt'):
            os.makedirs(osp.join(base, folder, side), exist_ok=True)
        for i in range(num):
            gt = (rng.random((h, w, 3)) * 200 + 20).astype(np.uint8)
            lq = np.clip(gt + rng.normal(0, 20, gt.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(osp.join(base, folder, 'gt', f'img{i:03d}.png'), gt)
            cv2.imwrite(osp.join(base, folder, 'lq', f'img{i:03d}.png'), lq)
    torch.manual_seed(0)
    net = ARCH_REGISTRY.get('DnCNN')(**{k: v for k, v in tiny_dncnn().items() if k != 'type'})
    torch.save({'params': net.state_dict()}, osp.join(base, 'net.pth'))
    with open(osp.join(base, 'garbage.pth'), 'wb') as f:
        f.write(b'this is not a checkpoint\n' * 20)

    class Evil:

        def __reduce__(self):
            return (os.system, ('echo this file ran code', ))

    torch.save({'params': net.state_dict(), 'evil': Evil()}, osp.join(base, 'evil.pth'))
    torch.save({'iter': 1, 'evil': Evil()}, osp.join(base, 'evil.state'))
    deep = ARCH_REGISTRY.get('DnCNN')(in_nc=3, out_nc=3, nc=4, nb=8, act_mode='R')  # spandrel detects nb >= 8
    torch.save(deep.state_dict(), osp.join(base, 'kair_layout_dncnn.pth'))  # a bare state dict, as KAIR releases
    big = ARCH_REGISTRY.get('DnCNN')(in_nc=3, out_nc=3, nc=8, nb=3, act_mode='R')
    torch.save({'params': big.state_dict()}, osp.join(base, 'other_net.pth'))
    os.makedirs(osp.join(base, 'empty'), exist_ok=True)
    with open(osp.join(base, 'a_file.txt'), 'w') as f:
        f.write('not a folder\n')
    return base


@dataclass
class Workspace:
    """One case's folder: ``root`` (LAN_BASICSR_ROOT), ``cwd``, the shared fixtures ``fx``, the runner."""
    dir: str
    fx: str
    runner: Runner

    @property
    def root(self):
        return osp.join(self.dir, 'root')

    def results(self, name='job'):
        return osp.join(self.root, 'results', name)

    def experiments(self, name='job'):
        return osp.join(self.root, 'experiments', name)

    def lan_opt(self, **changes):
        opt = {
            'name': 'job',
            'model_type': 'LANModel',
            'num_gpu': 0,
            'manual_seed': 0,
            'network_g': tiny_dncnn(),
            'path': {
                'pretrain_network_g': osp.join(self.fx, 'net.pth')
            },
            'datasets': {
                'test': {
                    'name': 'toy',
                    'type': 'PairedNoisyDataset',
                    'dataroot_lq': osp.join(self.fx, 'pairs', 'lq'),
                    'dataroot_gt': osp.join(self.fx, 'pairs', 'gt')
                }
            },
            'adapt': {
                'type': 'LAN',
                'steps': 1
            },
            'val': {
                'save_img': False
            },
        }
        return _apply(opt, changes)

    def synthetic_opt(self, **changes):
        opt = self.lan_opt()
        opt['datasets']['test'] = {
            'name': 'toy',
            'type': 'SyntheticNoiseDataset',
            'dataroot_gt': osp.join(self.fx, 'pairs', 'gt'),
            'noise': {
                'type': 'GaussianNoise',
                'sigma': 25
            },
            'seed': 0
        }
        return _apply(opt, changes)

    def train_opt(self, **changes):
        opt = {
            'name': 'job',
            'model_type': 'DenoiseModel',
            'num_gpu': 0,
            'manual_seed': 0,
            'network_g': tiny_dncnn(),
            'datasets': {
                'train': {
                    'name': 'toy',
                    'type': 'PairedNoisyDataset',
                    'dataroot_lq': osp.join(self.fx, 'pairs', 'lq'),
                    'dataroot_gt': osp.join(self.fx, 'pairs', 'gt'),
                    'gt_size': 16,
                    'batch_size_per_gpu': 1,
                    'num_worker_per_gpu': 0,
                    'use_shuffle': True
                }
            },
            'train': {
                'total_iter': 1,
                'optim_g': {
                    'type': 'Adam',
                    'lr': 1e-3
                },
                'pixel_opt': {
                    'type': 'MSELoss'
                }
            },
            'logger': {
                'print_freq': 1,
                'save_checkpoint_freq': 100
            },
        }
        return _apply(opt, changes)

    def write(self, opt_or_text, name='opt.yml'):
        path = osp.join(self.dir, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(opt_or_text if isinstance(opt_or_text, str) else yaml.safe_dump(opt_or_text, sort_keys=False))
        return path

    def run(self, tool, *argv):
        return self.runner(tool, list(argv), self.dir, self.root)

    def run_ok(self, tool, *argv):
        rc, out, err = self.run(tool, *argv)
        if rc != 0:
            raise RuntimeError(f'set-up run failed ({rc}): {err[-2000:]}')


def _apply(opt, changes):
    """``changes``: {'a__b': value} sets opt['a']['b']; value DELETE removes the key."""
    for dotted_key, value in changes.items():
        keys = dotted_key.split('__')
        node = opt
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return opt


DELETE = object()


def files_under(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = osp.join(root, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, folder)] = fh.read()
    return out


# ----------------------------------------------------------------------------------------------------------------------
# the cases


@dataclass
class Case:
    name: str
    kind: str  # the class of bad input (for the counts)
    tool: str
    make: Callable  # Workspace -> argv (may write files, run set-up jobs)
    expect: Optional[str] = None  # regex of the one-line error; None: the tool must succeed
    only_line: bool = True  # the error line is all of stderr (found before anything ran)
    check: Optional[Callable] = None  # Workspace, (rc, out, err) -> None; raises AssertionError
    status: int = 2
    debug: bool = False  # --debug given: a traceback is expected before the error line


CASES = []


def case(kind, tool, expect=None, only_line=True, check=None, status=2, debug=False):

    def register(fn):
        CASES.append(Case(fn.__name__, kind, tool, fn, expect, only_line, check, status, debug))
        return fn

    return register


def nothing_written(ws, result=None):
    assert not osp.exists(ws.results()), f'{ws.results()} was created'
    assert not osp.exists(ws.experiments()), f'{ws.experiments()} was created'


def unchanged(snapshot_name='before'):
    """A check: the results folder is byte-identical to what the case stored in ws.<snapshot_name>."""

    def check(ws, result=None):  # log files: BasicSR names them by the second, so a rerun may rewrite one
        after = files_under(ws.results())
        before = getattr(ws, snapshot_name)
        new = sorted(set(after) - set(before))
        assert not new, f'written: {new}'
        changed = sorted(k for k in after if not k.endswith('.log') and after[k] != before[k])
        assert not changed and set(after) == set(before), f'changed: {changed or sorted(set(before) - set(after))}'

    return check


# --- the option file itself -------------------------------------------------------------------------------------------
@case('option file', 'test.py', r'option file not found', check=nothing_written)
def opt_file_missing(ws):
    return ['-opt', 'nowhere.yml']


@case('option file', 'test.py', r'is a folder', check=nothing_written)
def opt_file_is_a_folder(ws):
    return ['-opt', ws.fx]


@case('option file', 'test.py', r'opt\.yml:\d+:\d+: invalid YAML \(did not find expected', check=nothing_written)
def invalid_yaml(ws):
    return ['-opt', ws.write('model_type: LANModel\nadapt:\n  steps: [1, 2\nname: x\n')]


@case('option file', 'test.py', r'top level must be a mapping', check=nothing_written)
def top_level_list(ws):
    return ['-opt', ws.write('- model_type\n- LANModel\n')]


@case('option file', 'test.py', r'opt\.yml:\d+: key "name" is set twice \(lines 1 and \d+\)', check=nothing_written)
def duplicate_top_level_key(ws):
    text = yaml.safe_dump(ws.lan_opt(), sort_keys=False)
    return ['-opt', ws.write(text + 'name: job2\n')]


@case('option file', 'test.py', r'key "adapt\.steps" is set twice \(lines \d+ and \d+\)', check=nothing_written)
def duplicate_nested_key(ws):
    text = yaml.safe_dump(ws.lan_opt(), sort_keys=False).replace('  steps: 1\n', '  steps: 1\n  steps: 20\n')
    return ['-opt', ws.write(text)]


@case('option file', 'test.py', r'base\.yml:\d+: key "adapt\.lr" is set twice', check=nothing_written)
def duplicate_key_in_base_file(ws):
    ws.write('adapt:\n  lr: !!float 5e-4\n  lr: !!float 5e-3\n', 'base.yml')
    opt = ws.lan_opt()
    opt = {'_base_': 'base.yml', **opt}
    return ['-opt', ws.write(opt)]


@case('option file', 'test.py', r'not a UTF-8 text file', check=nothing_written)
def non_utf8_file(ws):
    path = osp.join(ws.dir, 'latin1.yml')
    with open(path, 'wb') as f:
        f.write('name: caf\xe9\nmodel_type: LANModel\n'.encode('latin-1'))
    return ['-opt', path]


@case('option file', 'test.py', r'invalid YAML \(could not determine a constructor', check=nothing_written)
def python_object_tag(ws):
    return ['-opt', ws.write('model_type: !!python/object/apply:os.system ["echo ran"]\n')]


@case('option file', 'test.py', r'_base_ file "missing_base\.yml" not found', check=nothing_written)
def base_file_missing(ws):
    return ['-opt', ws.write({'_base_': 'missing_base.yml', **ws.lan_opt()})]


@case('option file', 'test.py', r'circular _base_ inheritance', check=nothing_written)
def base_circular(ws):
    ws.write({'_base_': 'opt.yml'}, 'other.yml')
    return ['-opt', ws.write({'_base_': 'other.yml', **ws.lan_opt()})]


@case('option file', 'test.py', r'model_type: missing', check=nothing_written)
def empty_option_file(ws):
    return ['-opt', ws.write('')]


# --- unknown keys -----------------------------------------------------------------------------------------------------
@case(
    'unknown key',
    'test.py',
    r'opt\.yml: adpat: unknown key in the top level \(did you mean "adapt"\?\)',
    check=nothing_written)
def top_level_typo(ws):
    opt = ws.lan_opt()
    opt['adpat'] = opt.pop('adapt')
    return ['-opt', ws.write(opt)]


@case(
    'unknown key',
    'test.py',
    r'adapt\.stpes: unknown key in section "adapt" \(did you mean "steps"\?\)',
    check=nothing_written)
def adapt_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__stpes=3))]


@case('unknown key', 'test.py', r'datasets\.test\.crpo: unknown key .*did you mean "crop"', check=nothing_written)
def dataset_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__crpo={'size': 16}))]


@case(
    'unknown key',
    'test.py',
    r'network_g\.nbb: unknown key: DnCNN .* no argument "nbb" \(did you mean "nb"\?\)',
    check=nothing_written)
def network_argument_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(network_g__nbb=3))]


@case(
    'unknown key',
    'test.py',
    r'adapt\.loss\.gama: unknown key: Nbr2NbrLoss .*did you mean "gamma"',
    check=nothing_written)
def loss_argument_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__loss={'type': 'Nbr2NbrLoss', 'gama': 0.1}))]


@case(
    'unknown key',
    'test.py',
    r'val\.metrics\.psnr\.crop_bordr: unknown key: calculate_psnr .*"crop_border"',
    check=nothing_written)
def metric_argument_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(val__metrics={'psnr': {'type': 'calculate_psnr', 'crop_bordr': 0}}))]


@case('unknown key', 'test.py', r'path\.pretrain_netwrk_g: unknown key in section "path"', check=nothing_written)
def path_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(path__pretrain_netwrk_g=osp.join(ws.fx, 'net.pth')))]


@case('unknown key', 'test.py', r'logger\.print_frq: unknown key .*"print_freq"', check=nothing_written)
def logger_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(logger={'print_frq': 10}))]


@case('unknown key', 'test.py', r'adapt\.optim\.beta: unknown key: torch\.optim\.Adam .*"betas"', check=nothing_written)
def optimiser_argument_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__optim={'type': 'Adam', 'beta': [0.9, 0.99]}))]


@case(
    'unknown key',
    'test.py',
    r'datasets\.test\.noise\.sigm: unknown key: GaussianNoise .*"sigma"',
    check=nothing_written)
def noise_argument_typo(ws):
    return ['-opt', ws.write(ws.synthetic_opt(datasets__test__noise={'type': 'GaussianNoise', 'sigm': 5}))]


@case('unknown key', 'test.py', r'datasets\.test\.crop\.sise: unknown key .*"size"', check=nothing_written)
def crop_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__crop={'sise': 16}))]


@case('unknown key', 'test.py', r'model_type: unknown type "LANModle".*did you mean "LANModel"', check=nothing_written)
def model_type_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(model_type='LANModle'))]


@case('unknown key', 'test.py', r'adapt\.type: unknown type "Lan".*did you mean "LAN"', check=nothing_written)
def adapter_type_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__type='Lan'))]


@case('unknown key', 'test.py', r'adapt\.layer: not used by adapt\.type LAN', check=nothing_written)
def argument_of_another_adapter(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__layer='model.0'))]


@case('unknown key', 'test.py', r'opt\.yml: rank: is set by the tool', check=nothing_written)
def tool_key_in_file(ws):
    return ['-opt', ws.write(ws.lan_opt(rank=1))]


@case(
    'unknown key',
    'test.py',
    r'datasets\.test\.batch_size_per_gpu: only read by training datasets',
    check=nothing_written)
def training_key_in_test_dataset(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__batch_size_per_gpu=4))]


@case('unknown key', 'test.py', r'datasets\.tset: unknown phase \(did you mean "test"\?\)', check=nothing_written)
def dataset_phase_typo(ws):
    opt = ws.lan_opt()
    opt['datasets'] = {'tset': opt['datasets']['test']}
    return ['-opt', ws.write(opt)]


@case(
    'unknown key',
    'test.py',
    r'datasets\.train: a test run would score this dataset in the training phase',
    check=nothing_written)
def train_phase_in_test_run(ws):
    opt = ws.lan_opt()
    opt['datasets'] = {'train': opt['datasets']['test']}
    return ['-opt', ws.write(opt)]


@case('unknown key', 'train.py', r'train\.optim_g\.lrr: unknown key: torch\.optim\.Adam .*"lr"', check=nothing_written)
def train_optimiser_typo(ws):
    return ['-opt', ws.write(ws.train_opt(train__optim_g={'type': 'Adam', 'lrr': 1e-3}))]


@case('unknown key', 'train.py', r'train\.totl_iter: unknown key .*"total_iter"', check=nothing_written)
def train_section_typo(ws):
    opt = ws.train_opt()
    opt['train']['totl_iter'] = opt['train'].pop('total_iter')
    return ['-opt', ws.write(opt)]


@case(
    'unknown key',
    'train.py',
    r'train\.scheduler\.eta_mn: unknown key: LinearWarmupCosineLR .*"eta_min"',
    check=nothing_written)
def scheduler_typo(ws):
    sched = {'type': 'LinearWarmupCosineLR', 'total_iter': 1, 'warmup_iter': 0, 'eta_mn': 1e-6}
    return ['-opt', ws.write(ws.train_opt(train__scheduler=sched))]


@case('unknown key', 'train.py', r'meta\.inner_stpes: unknown key .*"inner_steps"', check=nothing_written)
def meta_typo(ws):
    return ['-opt', ws.write(ws.train_opt(model_type='MetaDenoiseModel', meta={'inner_stpes': 2}))]


# --- values -----------------------------------------------------------------------------------------------------------
@case('value', 'test.py', r'adapt\.lr: inf is not a finite number', check=nothing_written)
def lr_infinite(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__lr=float('inf')))]


@case('value', 'test.py', r'adapt\.lr: expected a number > 0 \(or null\), got \'abc\'', check=nothing_written)
def lr_not_a_number(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__lr='abc'))]


@case('value', 'test.py', r'adapt\.lr: -0\.001 is out of range', check=nothing_written)
def lr_negative(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__lr=-1e-3))]


@case('value', 'test.py', r'adapt\.lr: nan is not a finite number', check=nothing_written)
def lr_nan(ws):
    return ['-opt', ws.write('adapt:\n  lr: .nan\n' + yaml.safe_dump(ws.lan_opt(adapt=DELETE)))]


@case(
    'value',
    'test.py',
    r'adapt\.optim: torch\.optim\.Adam rejects these arguments \(ValueError: Invalid beta',
    check=nothing_written)
def betas_out_of_range(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__optim={'type': 'Adam', 'betas': [2, 3]}))]


@case('value', 'test.py', r'adapt\.steps: -1 is out of range', check=nothing_written)
def steps_negative(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__steps=-1))]


@case('value', 'test.py', r'adapt\.steps: expected an integer >= 0, got 2\.5', check=nothing_written)
def steps_fractional(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__steps=2.5))]


@case('value', 'test.py', r'adapt\.seed: -1 is out of range', check=nothing_written)
def adapt_seed_negative(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__seed=-1))]


@case('value', 'test.py', r'manual_seed: -5 is out of range', check=nothing_written)
def manual_seed_negative(ws):
    return ['-opt', ws.write(ws.lan_opt(manual_seed=-5))]


@case('value', 'test.py', r'num_gpu: expected auto or an integer >= 0, got \'all\'', check=nothing_written)
def num_gpu_word(ws):
    return ['-opt', ws.write(ws.lan_opt(num_gpu='all'))]


@case('value', 'test.py', r'network_g: DnCNN rejects these options \(TypeError', check=nothing_written)
def network_argument_wrong_type(ws):
    return ['-opt', ws.write(ws.lan_opt(network_g__nb='abc'))]


@case(
    'value',
    'test.py',
    r'datasets\.test\.crop\.size: expected a positive int or \[H, W\], got 0',
    check=nothing_written)
def crop_size_zero(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__crop={'size': 0}))]


@case('value', 'test.py', r'datasets\.test\.noise: .*need 0 <= low <= high', check=nothing_written)
def noise_sigma_negative(ws):
    return ['-opt', ws.write(ws.synthetic_opt(datasets__test__noise={'type': 'GaussianNoise', 'sigma': -3}))]


@case('value', 'test.py', r'val\.metrics\.psnr\.crop_border: -1 is out of range', check=nothing_written)
def metric_value_out_of_range(ws):
    return ['-opt', ws.write(ws.lan_opt(val__metrics={'psnr': {'type': 'calculate_psnr', 'crop_border': -1}}))]


@case('value', 'test.py', r'val\.metrics\.PSNR: LANModel records psnr and ssim per step', check=nothing_written)
def metric_name_without_column(ws):
    return ['-opt', ws.write(ws.lan_opt(val__metrics={'PSNR': {'type': 'calculate_psnr'}}))]


@case('value', 'test.py', r'name: "a/b" cannot name a folder', check=nothing_written)
def name_with_slash(ws):
    return ['-opt', ws.write(ws.lan_opt(name='a/b'))]


@case(
    'value',
    'train.py',
    r'train\.optim_g: torch\.optim\.Adam rejects these arguments \(ValueError: Invalid beta',
    check=nothing_written)
def train_betas_out_of_range(ws):
    return ['-opt', ws.write(ws.train_opt(train__optim_g={'type': 'Adam', 'lr': 1e-3, 'betas': [2, 3]}))]


@case('value', 'train.py', r'logger\.print_freq: 0 is out of range', check=nothing_written)
def print_freq_zero(ws):
    return ['-opt', ws.write(ws.train_opt(logger__print_freq=0))]


@case('value', 'train.py', r'meta\.inner_optim: the inner Adam rejects these arguments', check=nothing_written)
def meta_inner_betas(ws):
    opt = ws.train_opt(model_type='MetaDenoiseModel', meta={'inner_optim': {'type': 'Adam', 'betas': [2, 3]}})
    return ['-opt', ws.write(opt)]


@case('value', 'train.py', r'train\.mixup\.prob: 2 is out of range', check=nothing_written)
def mixup_probability(ws):
    return ['-opt', ws.write(ws.train_opt(train__mixup={'prob': 2}))]


@case('value', 'train.py', r'model_type: LANModel adapts at test time', check=nothing_written)
def lan_model_in_training(ws):
    return ['-opt', ws.write(ws.lan_opt())]


# --- --cfg-options ----------------------------------------------------------------------------------------------------
@case(
    'cfg-options',
    'test.py', r'--cfg-options: "photos/x" is not KEY=VALUE; a value with spaces must be one shell '
    r'word',
    check=nothing_written)
def cfg_value_split_by_the_shell(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'datasets.test.dataroot_lq=/my', 'photos/x']


def _my_run_written(ws, result):
    assert osp.isfile(osp.join(ws.results('my run'), 'summary.csv')), 'results/my run/ not written'
    assert not osp.exists(ws.results('myrun')), 'the space was dropped (results/myrun/)'


@case('cfg-options', 'test.py', None, check=_my_run_written)
def cfg_value_with_space_kept(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'name=my run']


def _spaced_folder_used(ws, result):
    assert osp.isfile(osp.join(ws.results(), 'summary.csv'))
    with open(osp.join(ws.results(), 'adapt_run.json')) as f:
        assert '/my photos/lq' in f.read()


@case('cfg-options', 'test.py', None, check=_spaced_folder_used)
def cfg_path_with_space(ws):
    shutil.copytree(osp.join(ws.fx, 'pairs'), osp.join(ws.dir, 'my photos'))
    return [
        '-opt',
        ws.write(ws.lan_opt()), '--cfg-options', f'datasets.test.dataroot_lq={ws.dir}/my photos/lq',
        f'datasets.test.dataroot_gt={ws.dir}/my photos/gt'
    ]


@case('cfg-options', 'test.py', r'--cfg-options: adapt: expected a mapping', check=nothing_written)
def cfg_section_replaced_by_a_value(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'adapt=LAN']


@case('cfg-options', 'test.py', r'--cfg-options: "" is not an option key', check=nothing_written)
def cfg_empty_key(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', '=5']


@case('cfg-options', 'test.py', r'--cfg-options: cannot read "\[0\.9," as a list', check=nothing_written)
def cfg_broken_list(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'adapt.optim.betas=[0.9,']


@case('cfg-options', 'test.py', r'^error: --cfg-options: adapt\.stpes: unknown key .*"steps"', check=nothing_written)
def cfg_unknown_key_names_the_command_line(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'adapt.stpes=3']


@case(
    'cfg-options',
    'test.py', r'name: expected a string, got 7 \(on the command line, quote a string that looks like '
    r'a number',
    check=nothing_written)
def cfg_number_where_a_string_is_expected(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'name=007']


def _quoted_name(ws, result):
    assert osp.isfile(osp.join(ws.results('007'), 'summary.csv')), 'results/007/ not written'


@case('cfg-options', 'test.py', None, check=_quoted_name)
def cfg_quoted_string_stays_a_string(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--cfg-options', 'name="007"']


# --- paths and data ---------------------------------------------------------------------------------------------------
@case(
    'path',
    'test.py', r'datasets\.test\.dataroot_lq: path ".*datasets/PolyU/lq" does not exist; download it from '
    r'https://github\.com/csjunxu/PolyU',
    check=nothing_written)
def official_dataset_missing(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__dataroot_lq='datasets/PolyU/lq'))]


@case('path', 'test.py', r'datasets\.test\.dataroot_lq: ".*a_file\.txt" is a file, not a folder', check=nothing_written)
def dataroot_is_a_file(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__dataroot_lq=osp.join(ws.fx, 'a_file.txt')))]


@case(
    'path',
    'test.py', r'path\.pretrain_network_g: checkpoint ".*Uformer_B\.pth" not found; it is the official '
    r'Uformer-B, SIDD checkpoint: download .*ZhendongWang6/Uformer',
    check=nothing_written)
def official_checkpoint_missing(ws):
    return ['-opt', ws.write(ws.lan_opt(path__pretrain_network_g='experiments/pretrained_models/Uformer_B.pth'))]


@case('path', 'test.py', r'path\.pretrain_network_g: ".*" is a folder; give the checkpoint file', check=nothing_written)
def checkpoint_is_a_folder(ws):
    return ['-opt', ws.write(ws.lan_opt(path__pretrain_network_g=ws.fx))]


@case('path', 'test.py', r'adapt\.init_path: checkpoint ".*meta\.pth" not found', check=nothing_written)
def init_path_missing(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__type='FullTrainable', adapt__init_path=osp.join(ws.dir, 'meta.pth')))]


@case(
    'checkpoint',
    'test.py',
    r'garbage\.pth: cannot be read as a weights-only PyTorch checkpoint',
    only_line=False,
    check=nothing_written)
def checkpoint_garbage(ws):
    return ['-opt', ws.write(ws.lan_opt(path__pretrain_network_g=osp.join(ws.fx, 'garbage.pth')))]


def _no_unsafe_advice(ws, result):
    nothing_written(ws)
    assert 'weights_only=False' not in result[2] and 'weights_only` set to `False' not in result[2]
    assert 'this file ran code' not in result[1] + result[2]


@case(
    'checkpoint',
    'test.py',
    r'evil\.pth: .*holds Python objects besides tensors',
    only_line=False,
    check=_no_unsafe_advice)
def checkpoint_malicious(ws):
    return ['-opt', ws.write(ws.lan_opt(path__pretrain_network_g=osp.join(ws.fx, 'evil.pth')))]


@case('checkpoint', 'test.py', r'other_net\.pth does not match DnCNN', only_line=False, check=nothing_written)
def checkpoint_of_another_network(ws):
    return ['-opt', ws.write(ws.lan_opt(path__pretrain_network_g=osp.join(ws.fx, 'other_net.pth')))]


@case(
    'checkpoint',
    'train.py',
    r'evil\.state: cannot read the training state \(it holds Python objects',
    only_line=False,
    check=_no_unsafe_advice)
def training_state_malicious(ws):
    return ['-opt', ws.write(ws.train_opt(path={'resume_state': osp.join(ws.fx, 'evil.state')}))]


@case('checkpoint', 'train.py', r'garbage\.pth: cannot read the training state', only_line=False, check=nothing_written)
def training_state_garbage(ws):
    return ['-opt', ws.write(ws.train_opt(path={'resume_state': osp.join(ws.fx, 'garbage.pth')}))]


@case(
    'data',
    'test.py',
    r'img000\.png: image "img000" is 1x1 pixels; the self-supervised losses need at least 2x2',
    only_line=False)
def image_smaller_than_2x2(ws):
    tiny = osp.join(ws.fx, 'tiny')
    return [
        '-opt',
        ws.write(ws.lan_opt(datasets__test__dataroot_lq=f'{tiny}/lq', datasets__test__dataroot_gt=f'{tiny}/gt'))
    ]


@case('data', 'test.py', r'img001\.png: cannot decode the image', only_line=False)
def corrupt_image(ws):
    shutil.copytree(osp.join(ws.fx, 'pairs'), osp.join(ws.dir, 'pairs'))
    with open(osp.join(ws.dir, 'pairs', 'lq', 'img001.png'), 'wb') as f:
        f.write(b'\x89PNG broken')
    return ['-opt', ws.write(ws.lan_opt(datasets__test__dataroot_lq=f'{ws.dir}/pairs/lq'))]


@case('data', 'test.py', r'size mismatch: .*img000\.png is 24x32, .*img000\.png is 1x1', only_line=False)
def lq_gt_size_mismatch(ws):
    shutil.copytree(osp.join(ws.fx, 'pairs'), osp.join(ws.dir, 'pairs'))
    shutil.copy(osp.join(ws.fx, 'tiny', 'gt', 'img000.png'), osp.join(ws.dir, 'pairs', 'gt', 'img000.png'))
    return ['-opt', ws.write(ws.lan_opt(datasets__test__dataroot_gt=f'{ws.dir}/pairs/gt'))]


@case(
    'data',
    'test.py',
    r'dataroot_lq \(dataset "toy"\): no images found in .*empty',
    only_line=False,
    check=nothing_written)
def empty_data_folder(ws):
    return [
        '-opt',
        ws.write(
            ws.lan_opt(
                datasets__test__type='NoisyImageDataset',
                datasets__test__dataroot_gt=None,
                datasets__test__dataroot_lq=osp.join(ws.fx, 'empty')))
    ]


def _readonly_root(ws):
    os.makedirs(ws.root, exist_ok=True)
    os.chmod(ws.root, 0o555)


@case('path', 'test.py', r'cannot write there \(Permission denied\); .*LAN_BASICSR_ROOT')
def results_folder_not_writable(ws):
    if os.geteuid() == 0:  # root writes anywhere: make the results path a file instead
        os.makedirs(ws.root, exist_ok=True)
        with open(osp.join(ws.root, 'results'), 'w') as f:
            f.write('in the way\n')
        ws.expect_override = r'cannot write there \((File exists|Not a directory)\)'
    else:
        _readonly_root(ws)
    return ['-opt', ws.write(ws.lan_opt())]


# --- options that landed with later issues: grey images (color), third-party networks (SpandrelNet) -----------------
@case(
    'value',
    'test.py',
    r'datasets\.test\.color: \'grey\' is not one of gray, rgb \(did you mean "gray"\?\)',
    check=nothing_written)
def color_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(datasets__test__color='grey'))]


@case(
    'unknown key',
    'test.py',
    r'network_g\.paht: unknown key: SpandrelNet .*\(did you mean "path"\?\)',
    check=nothing_written)
def spandrel_argument_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(network_g={'type': 'SpandrelNet', 'paht': osp.join(ws.fx, 'net.pth')}))]


@case(
    'path', 'test.py', r'network_g\.path: checkpoint ".*scunet_color_real_psnr\.pth" not found', check=nothing_written)
def spandrel_checkpoint_missing(ws):
    path = osp.join(ws.dir, 'scunet_color_real_psnr.pth')
    return [
        '-opt',
        ws.write(ws.lan_opt(network_g={
            'type': 'SpandrelNet',
            'path': path
        }, path__pretrain_network_g=None))
    ]


@case('value', 'test.py', r'network_g\.noise_level: -5 is out of range', check=nothing_written)
def spandrel_noise_level_negative(ws):
    net = {'type': 'SpandrelNet', 'path': osp.join(ws.fx, 'net.pth'), 'noise_level': -5}
    return ['-opt', ws.write(ws.lan_opt(network_g=net, path__pretrain_network_g=None))]


def _spandrel_net(ws):
    path = osp.join(ws.dir, 'kair_layout_dncnn.pth')
    if not osp.exists(path):
        shutil.copy(osp.join(ws.fx, 'kair_layout_dncnn.pth'), path)
    return ws.lan_opt(network_g={'type': 'SpandrelNet', 'path': path}, path__pretrain_network_g=None)


def _spandrel_net_changed(ws):
    import torch
    opt = _spandrel_net(ws)
    state = torch.load(opt['network_g']['path'], weights_only=True)
    torch.save({k: v * 0.5 for k, v in state.items()}, opt['network_g']['path'])  # same path, other weights
    return opt


# --- tools/report.py (issue 17) and the report section -----------------------------------------------------------
@case(
    'unknown key',
    'test.py',
    r'report\.labl: unknown key in section "report" \(did you mean "label"\?\)',
    check=nothing_written)
def report_section_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(report={'labl': 'LAN'}))]


@case(
    'unknown key',
    'test.py',
    r'report\.train_noise\.type: unknown type "Gaussian".*did you mean "GaussianNoise"',
    check=nothing_written)
def report_noise_type_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(report={'train_noise': {'type': 'Gaussian', 'sigma': 25}}))]


def _finished_run(ws, name='job', **changes):
    ws.run_ok('test.py', '-opt', ws.write(ws.synthetic_opt(name=name, **changes), f'{name}.yml'))
    return ws.results(name)


@case('results folder', 'report.py', r'results/job is being written by a running job: pid \d+ on ')
def report_of_a_running_job(ws):
    folder = _finished_run(ws)
    _lock_held(ws)  # as if the job were still running
    return [folder, '-o', osp.join(ws.dir, 'report')]


@case('results folder', 'report.py', r'report is in use by another job: pid \d+')
def report_output_folder_in_use(ws):
    folder = _finished_run(ws)
    from lan_basicsr.utils.job_lock import JobLock
    ws.lock = JobLock(osp.join(ws.dir, 'report')).acquire()
    return [folder, '-o', osp.join(ws.dir, 'report')]


@case('path', 'report.py', r'nowhere: not a folder; give LANModel results folders')
def report_folder_missing(ws):
    return [osp.join(ws.dir, 'nowhere'), '-o', osp.join(ws.dir, 'report')]


@case('command line', 'report.py', r'--label \'x\': expected NAME=LABEL')
def report_label_malformed(ws):
    return [_finished_run(ws), '-o', osp.join(ws.dir, 'report'), '--label', 'x']


@case('command line', 'report.py', r'argument --steps: invalid int value: \'five\'')
def report_steps_not_numbers(ws):
    return [ws.dir, '-o', osp.join(ws.dir, 'report'), '--steps', 'five']


@case('rerun', 'report.py', r'toy: .* were made with other dataset settings', only_line=False)
def report_of_runs_with_other_noise(ws):
    first = _finished_run(ws, 'sigma25')
    second = _finished_run(ws, 'sigma50', datasets__test__noise__sigma=50)
    return [first, second, '-o', osp.join(ws.dir, 'report')]


# --- the results folder: one writer, settings recorded ----------------------------------------------------------------
def _lock_held(ws):
    from lan_basicsr.utils.job_lock import JobLock
    ws.lock = JobLock(ws.results()).acquire()


@case(
    'results folder',
    'test.py',
    r'results/job is in use by another job: pid \d+ on .*, started ',
    check=nothing_written)
def second_job_on_the_same_folder(ws):
    _lock_held(ws)  # this process holds it, as a running job would
    return ['-opt', ws.write(ws.lan_opt())]


def _ran(ws, result):
    assert osp.isfile(osp.join(ws.results(), 'summary.csv'))


@case('results folder', 'test.py', None, check=_ran)
def stale_lock_of_a_killed_job(ws):
    os.makedirs(osp.join(ws.root, 'results'), exist_ok=True)
    with open(osp.join(ws.root, 'results', '.job.lock'), 'w') as f:  # left by a job that was killed
        json.dump({'pid': 999999, 'host': 'gone', 'started': '2020-01-01T00:00:00', 'command': 'test.py'}, f)
    return ['-opt', ws.write(ws.lan_opt())]


def _rerun(make_first, make_second):
    """A case that first runs a good job, then reruns it with a change: the rerun must be refused, nothing changed."""

    def make(ws):
        ws.run_ok('test.py', '-opt', ws.write(make_first(ws), 'first.yml'))
        ws.before = files_under(ws.results())
        return ['-opt', ws.write(make_second(ws), 'first.yml')]

    return make


def _register_rerun(name, expect, first, second):
    fn = _rerun(first, second)
    fn.__name__ = name
    CASES.append(Case(name, 'rerun', 'test.py', fn, expect, False, unchanged()))


_register_rerun('rerun_other_noise_level', r'other settings \(datasets\.toy\.noise\.sigma: 25 there, 50 now\)',
                lambda ws: ws.synthetic_opt(), lambda ws: ws.synthetic_opt(datasets__test__noise__sigma=50))
_register_rerun('rerun_other_noise_seed', r'datasets\.toy\.seed: 0 there, 1 now', lambda ws: ws.synthetic_opt(),
                lambda ws: ws.synthetic_opt(datasets__test__seed=1))
_register_rerun('rerun_other_image_list', r'datasets\.toy\.split: .*|datasets\.toy\.heldout',
                lambda ws: ws.synthetic_opt(),
                lambda ws: ws.synthetic_opt(datasets__test__split='heldout', datasets__test__heldout=1))
_register_rerun('rerun_other_metric', r'metrics\.psnr\.crop_border: 0 there, 2 now', lambda ws: ws.lan_opt(),
                lambda ws: ws.lan_opt(val__metrics={'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 2
                }}))
_register_rerun('rerun_other_adapter', r'adapt\.type: \'LAN\' there, \'FullTrainable\' now', lambda ws: ws.lan_opt(),
                lambda ws: ws.lan_opt(adapt__type='FullTrainable'))
_register_rerun('rerun_other_manual_seed', r'manual_seed: 0 there, 3 now', lambda ws: ws.lan_opt(),
                lambda ws: ws.lan_opt(manual_seed=3))


def _checkpoint_copy(ws):
    path = osp.join(ws.dir, 'net_copy.pth')
    if not osp.exists(path):
        shutil.copy(osp.join(ws.fx, 'net.pth'), path)
    return path


def _first_with_copy(ws):
    return ws.lan_opt(path__pretrain_network_g=_checkpoint_copy(ws))


def _second_with_changed_content(ws):
    import torch
    state = torch.load(_checkpoint_copy(ws), weights_only=True)
    for v in state['params'].values():
        v.mul_(0.5)
    torch.save(state, _checkpoint_copy(ws))  # same path, other weights
    return ws.lan_opt(path__pretrain_network_g=_checkpoint_copy(ws))


_register_rerun('rerun_spandrel_checkpoint_changed', r'network_g\.path: \'sha256:[0-9a-f]{64}\' there', _spandrel_net,
                _spandrel_net_changed)
_register_rerun('rerun_checkpoint_content_changed', r'path\.pretrain_network_g: \'sha256:[0-9a-f]{64}\' there',
                _first_with_copy, _second_with_changed_content)


def _data_copy(ws):
    folder = osp.join(ws.dir, 'data')
    if not osp.exists(folder):
        shutil.copytree(osp.join(ws.fx, 'pairs'), folder)
    return ws.lan_opt(datasets__test__dataroot_lq=f'{folder}/lq', datasets__test__dataroot_gt=f'{folder}/gt')


def _data_replaced(ws):
    folder = osp.join(ws.dir, 'data')
    shutil.copy(osp.join(ws.fx, 'tiny', 'lq', 'img000.png'), osp.join(folder, 'lq', 'img001.png'))
    shutil.copy(osp.join(ws.fx, 'tiny', 'gt', 'img000.png'), osp.join(folder, 'gt', 'img001.png'))
    return _data_copy(ws)


def _data_removed(ws):
    folder = osp.join(ws.dir, 'data')
    for side in ('lq', 'gt'):
        os.remove(osp.join(folder, side, 'img001.png'))
    return _data_copy(ws)


_register_rerun('rerun_image_file_replaced', r'datasets\.toy\.images: 1 changed in size \(e\.g\. img001\)', _data_copy,
                _data_replaced)
_register_rerun('rerun_image_removed', r'datasets\.toy\.images: 1 missing now \(e\.g\. img001\)', _data_copy,
                _data_removed)


def _same_rerun(ws, result):
    after = files_under(ws.results())
    for key in ('per_step.csv', 'summary.csv', 'inputs.csv', 'adapt_run.json'):
        assert after[key] == ws.before[key], f'{key} changed'


def _identical_rerun(ws):
    ws.run_ok('test.py', '-opt', ws.write(ws.lan_opt(), 'first.yml'))
    ws.before = files_under(ws.results())
    return ['-opt', ws.write(ws.lan_opt(), 'first.yml')]


CASES.append(Case('rerun_identical_resumes', 'rerun', 'test.py', _identical_rerun, None, False, _same_rerun))


# --- command lines and help -------------------------------------------------------------------------------------------
@case('command line', 'test.py', r'tools/test\.py: unrecognized arguments: --auto_resume', check=nothing_written)
def test_tool_has_no_auto_resume(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--auto_resume']


def _test_help(ws, result):
    out = result[1]
    assert '--auto_resume' not in out and 'adapt.type=' in out and '--debug' in out, out


@case('command line', 'test.py', None, check=_test_help)
def test_tool_help(ws):
    return ['-h']


def _train_help(ws, result):
    out = result[1]
    assert '--auto_resume' in out and 'adapt.' not in out and 'train.total_iter' in out, out


@case('command line', 'train.py', None, check=_train_help)
def train_tool_help(ws):
    return ['-h']


@case('command line', 'test.py', r'the following arguments are required: -opt', check=nothing_written)
def option_file_not_given(ws):
    return []


@case('command line', 'test.py', r'--launcher pytorch needs torchrun', check=nothing_written)
def launcher_without_torchrun(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--launcher', 'pytorch']


@case('command line', 'test.py', r'argument --launcher: invalid choice: \'slurm\'', check=nothing_written)
def launcher_unknown(ws):
    return ['-opt', ws.write(ws.lan_opt()), '--launcher', 'slurm']


@case('command line', 'demo.py', r'--methods: unknown key\(s\) nope', check=nothing_written)
def demo_unknown_method(ws):
    return ['--methods', 'nope']


@case('command line', 'demo.py', r'nowhere\.yml: option file not found', check=nothing_written)
def demo_option_file_missing(ws):
    return ['-opt', 'nowhere.yml']


@case('command line', 'demo.py', r'demo\.methods\[0\]\.cfg_option: unknown key .*"cfg_options"', check=nothing_written)
def demo_method_typo(ws):
    opt = ws.lan_opt(demo={'methods': [{'key': 'lan', 'cfg_option': {'adapt.steps': 1}}]})
    return ['-opt', ws.write(opt)]


@case('command line', 'prepare_polyu.py', r'nowhere: not a folder')
def prepare_source_missing(ws):
    return ['--src', osp.join(ws.dir, 'nowhere'), '--dst', osp.join(ws.dir, 'out')]


@case('command line', 'prepare_polyu.py', r'the following arguments are required: --dst')
def prepare_destination_not_given(ws):
    return ['--src', ws.fx]


@case('command line', 'prepare_nam.py', r'a_file\.txt: not a folder')
def prepare_source_is_a_file(ws):
    return ['--src', osp.join(ws.fx, 'a_file.txt'), '--dst', osp.join(ws.dir, 'out')]


@case('command line', 'prepare_nam.py', r'no \{scene\}_real / \{scene\}_mean image pairs found')
def prepare_source_without_pairs(ws):
    return ['--src', osp.join(ws.fx, 'empty'), '--dst', osp.join(ws.dir, 'out')]


@case('command line', 'prepare_sidd.py', r'nothing to do: give --src and/or the validation files')
def prepare_sidd_nothing_to_do(ws):
    return ['--dst', osp.join(ws.dir, 'out')]


@case('command line', 'prepare_sidd.py', r'argument --crop-size: invalid int value: \'big\'')
def prepare_bad_number(ws):
    return ['--dst', osp.join(ws.dir, 'out'), '--crop-size', 'big']


@case('command line', 'test.py', r'adapt\.stpes: unknown key', only_line=False, debug=True, check=nothing_written)
def debug_shows_the_traceback(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__stpes=3)), '--debug']


# --- tiled adaptation (adapt.tile) and the own-photos command tools/denoise.py (issue 14) -----------------------------
@case(
    'value',
    'test.py',
    r'adapt\.batch_size: not available with adapt\.tile .* set adapt\.batch_size: 1',
    check=nothing_written)
def tile_with_batches(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__tile={'size': 8}, adapt__batch_size=2))]


@case('value', 'test.py', r'adapt\.tile\.size: 0 is out of range', check=nothing_written)
def tile_size_zero(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__tile={'size': 0}))]


@case('unknown key', 'test.py', r'adapt\.tile\.padd: unknown key .*did you mean "pad"', check=nothing_written)
def tile_key_typo(ws):
    return ['-opt', ws.write(ws.lan_opt(adapt__tile={'size': 8, 'padd': 4}))]


def _photo(ws):
    return osp.join(ws.fx, 'pairs', 'lq', 'img000.png')


@case('command line', 'denoise.py', r"--tile: expected auto or an integer >= 0, got 'big'")
def denoise_tile_not_a_number(ws):
    return ['-i', _photo(ws), '-o', osp.join(ws.dir, 'out'), '--tile', 'big']


@case('command line', 'denoise.py', r'embedded model "nope" does not exist \(shipped: dncnn_camera, ')
def denoise_unknown_model(ws):
    return ['-i', _photo(ws), '-o', osp.join(ws.dir, 'out'), '--model', 'nope']


@case('command line', 'denoise.py', r'--weights: give --arch \(or --opt\)')
def denoise_weights_without_arch(ws):
    return ['-i', _photo(ws), '-o', osp.join(ws.dir, 'out'), '--weights', osp.join(ws.fx, 'net.pth')]


@case('path', 'denoise.py', r'-i .*empty: no image files there')
def denoise_folder_without_images(ws):
    return ['-i', osp.join(ws.fx, 'empty'), '-o', osp.join(ws.dir, 'out')]


# ----------------------------------------------------------------------------------------------------------------------
# classification


def classify(c, rc, out, err, expect=None):
    """``(outcome, detail)``: outcome in clean, traceback, silent, unclear."""
    expect = expect or c.expect
    lines = [ln for ln in err.splitlines() if ln.strip()]
    has_traceback = 'Traceback (most recent call last)' in err
    if expect is None:  # must succeed
        if rc != 0:
            return ('traceback' if has_traceback else 'unclear'), f'exit {rc}: {lines[-1] if lines else ""}'
        return 'clean', ''
    if rc == 0:
        return 'silent', 'exit 0 although the input is wrong'
    if has_traceback and not c.debug:
        return 'traceback', lines[-1] if lines else ''
    last = lines[-1] if lines else ''
    if rc != c.status or not last.startswith('error: '):
        return 'unclear', f'exit {rc}: {last[:300]}'
    if not re.search(expect, last):
        return 'unclear', f'message does not match /{expect}/: {last[:400]}'
    if c.debug and not has_traceback:
        return 'unclear', '--debug showed no traceback'
    if c.only_line and len(lines) != 1:
        return 'unclear', f'{len(lines)} stderr lines, expected only the error: {lines[0][:200]}'
    return 'clean', last


@dataclass
class Outcome:
    case: Case
    outcome: str
    detail: str
    rc: int
    seconds: float
    stderr: str = field(repr=False, default='')


def run_case(c, runner, fx, workdir):
    ws = Workspace(tempfile.mkdtemp(prefix=f'{c.name}_', dir=workdir), fx, runner)
    start = time.time()
    try:
        argv = c.make(ws)
        rc, out, err = runner(c.tool, argv, ws.dir, ws.root)
        outcome, detail = classify(c, rc, out, err, getattr(ws, 'expect_override', None))
        if c.check is not None and outcome in ('clean', 'silent'):
            try:
                c.check(ws, (rc, out, err))
            except AssertionError as e:
                outcome, detail = 'silent', f'wrong result: {e}'
        return Outcome(c, outcome, detail, rc, time.time() - start, err)
    finally:
        if getattr(ws, 'lock', None) is not None:
            ws.lock.release()
        if osp.isdir(ws.root):
            os.chmod(ws.root, 0o755)
        shutil.rmtree(ws.dir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Run the bad-input catalogue through the real tools.')
    parser.add_argument('--subprocess', action='store_true', help='python tools/X.py per run (slow) instead of fork')
    parser.add_argument('-k', help='only cases whose name contains this (several: comma-separated)')
    parser.add_argument('--json', help='write the outcomes here')
    args = parser.parse_args(argv)
    runner = Runner('subprocess' if args.subprocess else 'fork')
    wanted = args.k.split(',') if args.k else None
    cases = [c for c in CASES if not wanted or any(w in c.name for w in wanted)]
    with tempfile.TemporaryDirectory(prefix='bad_inputs_') as tmp:
        fx = make_fixtures(osp.join(tmp, 'fixtures'))
        outcomes = []
        for c in cases:
            o = run_case(c, runner, fx, tmp)
            outcomes.append(o)
            print(f'{o.outcome:9} {c.kind:15} {c.tool:17} {c.name:42} {o.seconds:5.1f}s  {o.detail[:150]}', flush=True)
    counts = {k: sum(o.outcome == k for o in outcomes) for k in ('clean', 'traceback', 'silent', 'unclear')}
    errors = [o for o in outcomes if o.case.expect is not None]
    print(f'\n{len(outcomes)} cases ({len(errors)} bad inputs that must be refused, {len(outcomes) - len(errors)} that '
          f'must work): ' + ', '.join(f'{v} {k}' for k, v in counts.items()))
    if args.json:
        rows = [
            dict(name=o.case.name, kind=o.case.kind, tool=o.case.tool, outcome=o.outcome, detail=o.detail)
            for o in outcomes
        ]
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0 if counts['clean'] == len(outcomes) else 1


if __name__ == '__main__':
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
