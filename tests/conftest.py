"""Shared fixtures: tiny generated images and option files; nothing is downloaded or read from outside tmp_path."""
import os
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import lan_basicsr  # noqa: E402,F401  (registers everything before tests build from registries)


def import_tool(name):
    """The module of ``tools/<name>.py`` (tools/ on sys.path only while it is imported)."""
    import importlib
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))


def tiny_dncnn(act_mode='R'):
    """``network_g`` options of the tiny DnCNN the tests train and adapt (a fresh dict: tests may modify it)."""
    return {'type': 'DnCNN', 'in_nc': 3, 'out_nc': 3, 'nc': 4, 'nb': 3, 'act_mode': act_mode}


def make_paired_folder(root, num=6, size=(24, 32), sigma=20, seed=0):
    """Write ``num`` clean/noisy PNG pairs under ``root/gt`` and ``root/lq`` (same file names); return root."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'gt'), exist_ok=True)
    os.makedirs(osp.join(root, 'lq'), exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(num):
        base = 128 + 80 * np.sin(xx / (3 + i) + i)[..., None] * np.cos(yy / 5.)[..., None] * np.array([1, .7, .4])
        gt = np.clip(base, 0, 255)
        lq = np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255)
        cv2.imwrite(osp.join(root, 'gt', f'img{i:03d}.png'), gt.round().astype(np.uint8))
        cv2.imwrite(osp.join(root, 'lq', f'img{i:03d}.png'), lq.round().astype(np.uint8))
    return root


def paired_datasets(pairs, name='toy'):
    """The ``datasets`` section of a test-time run on a folder made by :func:`make_paired_folder`."""
    return {
        'test': {
            'name': name,
            'type': 'PairedNoisyDataset',
            'dataroot_lq': f'{pairs}/lq',
            'dataroot_gt': f'{pairs}/gt'
        }
    }


@pytest.fixture
def paired_folder(tmp_path):
    return make_paired_folder(str(tmp_path / 'pairs'))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where no CUDA device is visible (CI); ``benchmarks/gpu_check.sh`` runs them."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device (run by benchmarks/gpu_check.sh)')
    for item in items:
        if item.get_closest_marker('cuda') is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is several times faster than two on a shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_tiny_dncnn(path, seed=0, **changes):
    """Save a :func:`tiny_dncnn` (``changes`` applied, weights from ``torch.manual_seed(seed)``) as a BasicSR
    checkpoint at ``path``; returns its ``network_g`` dict."""
    from lan_basicsr.archs.dncnn_arch import DnCNN
    net = dict(tiny_dncnn(), **changes)
    torch.manual_seed(seed)
    torch.save({'params': DnCNN(**{k: v for k, v in net.items() if k != 'type'}).state_dict()}, path)
    return net


REPORT_STEPS = 3


def write_toy_options(root, adapt, num=4, size=(24, 32), net=None, **sections):
    """A paired folder of ``num`` generated images, a random tiny DnCNN checkpoint (seed 0) and a LANModel option file
    inheriting options/_base_ (``adapt`` and any other top-level ``sections``) under ``root``; returns its path."""
    import yaml

    pairs = make_paired_folder(osp.join(root, 'pairs'), num=num, size=size)
    ckpt = osp.join(root, 'net.pth')
    net = save_tiny_dncnn(ckpt, **(net or {}))  # the tiny DnCNN with net's changes, weights of seed 0
    opt = {
        '_base_': osp.join(ROOT, 'options', '_base_', 'lan_base.yml'),
        'num_gpu': 0,
        'network_g': net,
        'path': {
            'pretrain_network_g': ckpt
        },
        'adapt': adapt,
        **sections,
        'datasets': paired_datasets(pairs),
    }
    opt_path = osp.join(root, 'toy.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)  # keeps the order of mappings (e.g. a table's rows)
    return opt_path


def make_report_runs(root, gray=False):
    """Tiny LANModel runs on one paired folder (4 images): LAN and FullTrainable (3 steps) and the pretrained network
    (0 steps), with every picture a report uses (save_offset, save_compare) and a declared training noise; returns
    ``{key: results folder}`` (keys lan, full, pre). ``gray``: a grey network and data, LAN only."""
    from lan_basicsr.test import test_pipeline
    net = tiny_dncnn()
    if gray:
        net.update(in_nc=1, out_nc=1)
    adapt = {'steps': REPORT_STEPS, 'report_steps': [0, 2], 'save_offset': True, 'save_compare': True, 'lr': 0.05}
    report = {'train_noise': {'type': 'GaussianNoise', 'sigma': 20}}
    opt_path = write_toy_options(root, adapt, net=net, report=report)
    runs = {'lan': ['adapt.type=LAN'], 'full': ['adapt.type=FullTrainable', 'adapt.lr=0.001'], 'pre': ['adapt.steps=0']}
    if gray:
        runs = {'lan': runs['lan']}
    for key, cfg in runs.items():
        test_pipeline(root, argv=['-opt', opt_path, '--cfg-options', f'name=toy_{key}', *cfg])
    return {key: osp.join(root, 'results', f'toy_{key}') for key in runs}


@pytest.fixture(scope='session')
def report_runs(tmp_path_factory):
    return make_report_runs(str(tmp_path_factory.mktemp('report_runs')))
