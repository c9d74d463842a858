"""Real noisy/clean pairs: tools/demo.py --real-pairs, benchmarks/bm3d_real_pairs.py and real_pairs_report.py."""
import csv
import importlib
import os
import shutil
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.options import load_config, merge_cfg_options, validate_options

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _import(folder, name):
    sys.path.insert(0, osp.join(ROOT, folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(osp.join(ROOT, folder))


@pytest.fixture(scope='module')
def demo():
    return _import('tools', 'demo')


@pytest.fixture(scope='module')
def report():
    return _import('benchmarks', 'real_pairs_report')


def write_rgb(path, rgb):
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]))


def test_shipped_option_files_share_the_camera_network(demo, tmp_path):
    train = load_config(osp.join(ROOT, 'options', 'train_dncnn_camera.yml'))
    os.makedirs(tmp_path / 'P' / 'lq')
    os.makedirs(tmp_path / 'P' / 'gt')
    for name in ('demo_lan_dncnn_real.yml', 'demo_lan_dncnn_heldout.yml'):
        opt = load_config(osp.join(ROOT, 'options', name))
        assert opt['network_g'] == train['network_g']
        if 'real' in name:
            opt = merge_cfg_options(opt, demo.real_pairs_options(str(tmp_path / 'P'))[1])
        validate_options(opt, name)  # types registered, the embedded weights and the data paths exist
        keys = [m['key'] for m in opt['demo']['methods']]
        assert {'camera_pretrained', 'camera_lan', 'gaussian_pretrained', 'gaussian_lan'} <= set(keys)
    from lan_basicsr.embedded import DEFAULT_REAL_PHOTO_MODEL, embedded_model
    assert DEFAULT_REAL_PHOTO_MODEL == 'dncnn_camera' and embedded_model()[1] == train['network_g']
    held = load_config(osp.join(ROOT, 'options', 'demo_lan_dncnn_heldout.yml'))['datasets']
    val = {k: v for k, v in train['datasets'].items() if k.startswith('val')}
    assert sorted(d['name'] for d in held.values()) == sorted(d['name'] for d in val.values())
    assert {d['name']: d['noise'] for d in held.values()} == {d['name']: d['noise'] for d in val.values()}


def test_real_pairs_options(demo, tmp_path):
    with pytest.raises(OptionError, match='no lq or gt/ folder inside'):
        demo.real_pairs_options(str(tmp_path))
    os.makedirs(tmp_path / 'Cam' / 'lq')
    os.makedirs(tmp_path / 'Cam' / 'gt')
    name, opts = demo.real_pairs_options(str(tmp_path / 'Cam') + os.sep)
    assert name == 'demo_real_Cam'
    assert opts == {
        'name': 'demo_real_Cam',
        'datasets.test.name': 'Cam',
        'datasets.test.dataroot_lq': str(tmp_path / 'Cam' / 'lq'),
        'datasets.test.dataroot_gt': str(tmp_path / 'Cam' / 'gt')
    }


def test_demo_real_pairs_end_to_end(tmp_path):
    """One real-pairs method through tools/demo.py (two processes) with a tiny checkpoint: run and table in results/."""
    from lan_basicsr.archs.dncnn_arch import DnCNN
    folder = tmp_path / f'pairs_{os.getpid()}'
    rng = np.random.default_rng(0)
    for i in range(2):
        gt = rng.integers(60, 200, (20, 24, 3), dtype=np.uint8)
        write_rgb(str(folder / 'gt' / f'CamA_s_{i:04d}.png'), gt)
        write_rgb(str(folder / 'lq' / f'CamA_s_{i:04d}.png'), np.clip(gt + rng.integers(-9, 9, gt.shape), 0, 255))
    torch.manual_seed(0)
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'params': DnCNN(in_nc=3, out_nc=3, nc=4, nb=3, act_mode='R').state_dict()}, ckpt)
    name = f'demo_real_{folder.name}'
    try:
        cmd = [
            sys.executable, 'tools/demo.py', '--real-pairs',
            str(folder), '--methods', 'camera_pretrained', '--nproc', '2', '--cfg-options', 'num_gpu=0',
            'network_g.nc=4', 'network_g.nb=3', f'path.pretrain_network_g={ckpt}', 'datasets.test.crop=None'
        ]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        run = osp.join(ROOT, 'results', f'{name}_camera_pretrained')
        with open(osp.join(run, 'per_step.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        assert [(r['dataset'], r['image'], r['step']) for r in rows] == [(folder.name, 'CamA_s_0000', '0'),
                                                                         (folder.name, 'CamA_s_0001', '0')]
        assert osp.isfile(osp.join(run, 'visualization', folder.name, 'CamA_s_0001.png'))
        table = open(osp.join(ROOT, 'results', f'{name}_table.md')).read()
        assert f'**{folder.name}** (2 images; noisy input ' in table
        assert '| camera-noise default, no adaptation | ' in table
        assert not osp.exists(osp.join(ROOT, 'results', f'{name}_inputs', folder.name))  # inputs not copied
    finally:
        for path in (f'{name}_camera_pretrained', f'{name}_table.md', f'{name}_inputs', f'{name}_report', name):
            target = osp.join(ROOT, 'results', path)
            if osp.isdir(target):
                shutil.rmtree(target)
            elif osp.isfile(target):
                os.remove(target)


def test_bm3d_on_real_pairs_resumes(tmp_path):
    pytest.importorskip('bm3d')
    bm3d_script = _import('benchmarks', 'bm3d_real_pairs')
    rng = np.random.default_rng(1)
    for i in range(2):
        gt = np.full((24, 24, 3), 120, np.uint8)
        write_rgb(str(tmp_path / 'P' / 'gt' / f'C_s_{i:04d}.png'), gt)
        write_rgb(
            str(tmp_path / 'P' / 'lq' / f'C_s_{i:04d}.png'),
            np.clip(gt + rng.normal(0, 10, gt.shape), 0, 255).round().astype(np.uint8))
    argv = ['--real-pairs', str(tmp_path / 'P'), '--crop', '0', '--results', str(tmp_path / 'res')]
    bm3d_script.main(argv + ['--limit', '1'])
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))  # the worker process unpickles the script's work function
    try:
        bm3d_script.main(argv + ['--workers', '2'])  # continues with the second image only, in a worker process
    finally:
        sys.path.remove(osp.join(ROOT, 'benchmarks'))
    with open(tmp_path / 'res' / 'bm3d_P' / 'per_step.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['image'] for r in rows] == ['C_s_0000', 'C_s_0001'] and {r['step'] for r in rows} == {'0'}
    with open(tmp_path / 'res' / 'bm3d_P' / 'sigma.csv', newline='') as f:
        sigmas = [float(r['sigma']) for r in csv.DictReader(f)]
    assert all(7 < s < 13 for s in sigmas)  # estimated from the noisy image alone: about the true 10
    assert float(rows[0]['psnr']) > 35  # a flat grey image: BM3D removes nearly all the noise (noisy: 28 dB)


def test_report_counts_from_results_folders(report, tmp_path):
    """Exact counts from constructed results: PSNRs in the CSVs, channel means in the saved images."""
    names = ['CamA_x_0000', 'CamA_x_0001', 'CamB_y_0000', 'Cam_B_z_0000']
    gt = np.full((8, 8, 3), 100, np.uint8)
    noisy_values = [104, 102, 101, 110]  # PSNR of a constant offset d: 20 log10(255 / d)
    for name, v in zip(names, noisy_values):
        write_rgb(str(tmp_path / 'D' / 'gt' / f'{name}.png'), gt)
        write_rgb(str(tmp_path / 'D' / 'lq' / f'{name}.png'), np.full((8, 8, 3), v, np.uint8))
    noisy_psnr = [20 * np.log10(255 / (v - 100)) for v in noisy_values]

    def fake_run(run, psnr_by_step, out_values):
        folder = tmp_path / 'res' / run
        os.makedirs(folder / 'visualization' / 'D')
        with open(folder / 'per_step.csv', 'w', newline='') as f:
            w = csv.writer(f)
            w.writerow(['dataset', 'image', 'step', 'psnr', 'ssim', 'loss'])
            for i, name in enumerate(names):
                for step, values in psnr_by_step.items():
                    w.writerow(['D', name, step, values[i], 0.9, ''])
        for name, v in zip(names, out_values):
            out = np.full((8, 8, 3), v, np.uint8)
            out[..., 1] = v + (1 if name == 'CamB_y_0000' else 0)  # within 1/255 of the noisy mean: passes
            write_rgb(str(folder / 'visualization' / 'D' / f'{name}.png'), out)

    better = [p + 2 for p in noisy_psnr]
    fake_run('demo_real_D_camera_pretrained', {0: better}, noisy_values[:3] + [113])  # the last one fails by 3/255
    worse_one = better[:3] + [noisy_psnr[3] - 1]
    fake_run('demo_real_D_camera_lan', {0: better, 20: worse_one}, noisy_values)
    fake_run('bm3d_D', {0: [p + 1 for p in noisy_psnr]}, noisy_values)
    report.main(['--real-pairs', str(tmp_path / 'D'), '--crop', '0', '--results', str(tmp_path / 'res')])
    text = open(tmp_path / 'res' / 'demo_real_D_report.md').read()
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith('| camera-noise default, step 0 |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] == '0' and cells[4] == '+2.00' and cells[5] == '0 (0.0%)' and cells[7] == '3 (75.0%)'
    assert f'{np.mean(better):.2f}' == cells[2]
    assert cells[8] == '0.50 / 2.70'  # channel-mean shifts 0, 0, 1, 3: median and 95th percentile
    assert '| camera-noise default, step 0 | 2 | 1 | 0 |' in lines  # per camera, passing the colour check
    lan = [
        c.strip()
        for c in next(line for line in lines if line.startswith('| camera-noise default + LAN |')).strip('|').split('|')
    ]
    assert lan[1] == '20' and lan[5] == '1 (25.0%)' and lan[6] == '-1.00' and lan[7] == '4 (100.0%)'
    header = next(line for line in lines if line.startswith('| method | CamA'))
    assert header == '| method | CamA (2) | CamB (1) | Cam_B (1) |'
    assert 'MISSED: at least 98% pass the colour check (3 (75.0%))' in text
    assert 'met: step 0 at least +1.5 dB over the noisy input (+2.00 dB)' in text
    assert 'met: ahead of BM3D (+1.00 dB)' in text
    assert 'MISSED: LAN at the last step not below step 0' in text
    assert 'Warning' not in text
