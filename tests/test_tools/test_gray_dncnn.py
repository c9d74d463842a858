"""KAIR's grey DnCNN through tools/test.py with options/lan_dncnn_gray_polyu.yml on tiny colour pairs made grey.

tools/test.py runs in this process (runpy) with its repository root pointed at tmp_path, so results land there. The
network has KAIR's released layout and size (dncnn_15.pth: nb 17, 555,137 parameters) with random weights.
"""
import csv
import importlib.util
import math
import runpy
import sys
import types
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_ssim
from conftest import ROOT, make_paired_folder

from lan_basicsr.archs.dncnn_arch import DnCNN

OPT = osp.join(ROOT, 'options', 'lan_dncnn_gray_polyu.yml')
NUM, CROP, STEPS = 3, 16, 2


def run_test_tool(root, *argv):
    """``python tools/test.py *argv`` with results under ``root`` (the tool's own code, its exit status)."""
    spec = importlib.util.spec_from_file_location('_entry_under_test', osp.join(ROOT, 'tools', '_entry.py'))
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    fake = types.ModuleType('_entry')
    fake.ROOT, fake.run = root, entry.run
    saved = sys.modules.get('_entry'), sys.argv
    sys.modules['_entry'], sys.argv = fake, [osp.join(ROOT, 'tools', 'test.py'), *argv]
    try:
        runpy.run_path(osp.join(ROOT, 'tools', 'test.py'), run_name='__main__')
    finally:
        sys.argv = saved[1]
        if saved[0] is None:
            del sys.modules['_entry']
        else:
            sys.modules['_entry'] = saved[0]


@pytest.fixture
def kair_gray(tmp_path):
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=NUM, size=(20, 24), sigma=12)
    torch.manual_seed(0)
    net = DnCNN(in_nc=1, out_nc=1, nc=64, nb=17, act_mode='R')
    assert sum(p.numel() for p in net.parameters()) == 555137  # dncnn_15/25/50.pth
    with torch.no_grad():  # small residual: a plausible denoiser rather than a random image
        net.model[-1].weight.mul_(0.05)
    ckpt = str(tmp_path / 'dncnn_15.pth')
    torch.save(net.state_dict(), ckpt)  # KAIR's releases are bare state dicts
    args = ('-opt', OPT, '--cfg-options', f'path.pretrain_network_g={ckpt}', f'datasets.test.dataroot_lq={pairs}/lq',
            f'datasets.test.dataroot_gt={pairs}/gt', f'datasets.test.crop.size={CROP}', f'adapt.steps={STEPS}',
            'adapt.save_offset=true', 'num_gpu=0')
    return types.SimpleNamespace(root=str(tmp_path), pairs=pairs, ckpt=ckpt, args=args, net=net.eval())


def _grey(path):
    """By hand: OpenCV's BGR->grey of the stored image, top-left crop, [0, 1] float32."""
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY)[:CROP, :CROP].astype(np.float32) / 255.


def _score(pred, gt):
    """By hand: clip, x255, float64 H x W x 1; PSNR from its formula, SSIM of the one channel (BasicSR)."""
    pred = np.clip(pred.astype(np.float64), 0, 1)[..., None] * 255.
    gt = gt.astype(np.float64)[..., None] * 255.
    psnr = 10 * math.log10(255.**2 / np.mean((pred - gt)**2))
    return psnr, calculate_ssim(pred[..., 0], gt[..., 0], crop_border=0)


def _rows(root, file):
    with open(osp.join(root, 'results', 'lan_dncnn_gray_polyu', file), newline='') as f:
        return list(csv.DictReader(f))


def test_grey_dncnn_adapts_and_scores_one_channel(kair_gray):
    run_test_tool(kair_gray.root, *kair_gray.args)
    rows = _rows(kair_gray.root, 'per_step.csv')
    assert [(r['image'], int(r['step'])) for r in rows] == [(f'img{i:03d}', s) for i in range(NUM)
                                                            for s in range(STEPS + 1)]
    inputs = {r['image']: r for r in _rows(kair_gray.root, 'inputs.csv')}
    results = osp.join(kair_gray.root, 'results', 'lan_dncnn_gray_polyu')
    for i in range(NUM):
        name = f'img{i:03d}'
        lq, gt = _grey(f'{kair_gray.pairs}/lq/{name}.png'), _grey(f'{kair_gray.pairs}/gt/{name}.png')
        steps = [r for r in rows if r['image'] == name]
        with torch.no_grad():
            step0 = kair_gray.net(torch.from_numpy(lq)[None, None])[0, 0].numpy()
            adapted = np.load(osp.join(results, 'offsets', 'PolyU_gray', f'{name}_input.npy'))
            assert adapted.shape == (1, CROP, CROP)  # LAN's adapted input: one channel
            last = kair_gray.net(torch.from_numpy(adapted)[None])[0, 0].numpy()
        for row, pred in ((steps[0], step0), (steps[-1], last)):
            psnr, ssim = _score(pred, gt)
            assert float(row['psnr']) == pytest.approx(psnr, abs=1e-6)
            assert float(row['ssim']) == pytest.approx(ssim, abs=5e-7)
        noisy = _score(lq, gt)
        assert float(inputs[name]['psnr']) == pytest.approx(noisy[0], abs=1e-6)
        assert float(inputs[name]['ssim']) == pytest.approx(noisy[1], abs=5e-7)
        assert float(steps[-1]['psnr']) != float(steps[0]['psnr'])  # it adapted
        saved = cv2.imread(osp.join(results, 'visualization', 'PolyU_gray', f'{name}.png'), cv2.IMREAD_UNCHANGED)
        assert saved.shape == (CROP, CROP) and saved.dtype == np.uint8  # a grey PNG
        np.testing.assert_array_equal(saved, (np.clip(last, 0, 1) * 255.).round().astype(np.uint8))


def test_colour_mode_on_a_grey_network_is_refused_before_any_image(kair_gray, capsys):
    with pytest.raises(SystemExit) as info:
        run_test_tool(kair_gray.root, *kair_gray.args, 'datasets.test.color=rgb')
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        'error: datasets.test.color (dataset "PolyU_gray"): rgb gives 3-channel images but network_g '
        '(DnCNN) takes 1; set color: gray, or leave it unset to follow the network'
    ]
    assert not osp.exists(osp.join(kair_gray.root, 'results', 'lan_dncnn_gray_polyu', 'per_step.csv'))


def test_unset_color_is_taken_from_the_network(kair_gray):
    run_test_tool(kair_gray.root, *kair_gray.args, 'datasets.test.color=None', 'adapt.steps=0', 'name=auto')
    with open(osp.join(kair_gray.root, 'results', 'auto', 'per_step.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    lq, gt = _grey(f'{kair_gray.pairs}/lq/img000.png'), _grey(f'{kair_gray.pairs}/gt/img000.png')
    with torch.no_grad():
        pred = kair_gray.net(torch.from_numpy(lq)[None, None])[0, 0].numpy()
    assert float(rows[0]['psnr']) == pytest.approx(_score(pred, gt)[0], abs=1e-6)
