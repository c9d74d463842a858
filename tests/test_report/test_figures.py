"""Figures from tiny runs made here: one Fig. 5 line per method at the CSV means, sorted gain bars, noise residuals."""
import csv
import shutil
from os import path as osp

import cv2
import numpy as np
import pytest
from conftest import REPORT_STEPS

from lan_basicsr.data.noise_models import GaussianNoise
from lan_basicsr.report import load_runs
from lan_basicsr.report.figures import METHOD_GID, fig5, gains_figure, noise_residuals, noise_stats
from lan_basicsr.utils.errors import DataError


@pytest.fixture(scope='module')
def runs(report_runs):
    return load_runs([report_runs['pre'], report_runs['lan'], report_runs['full']])


def _means(folder, steps=REPORT_STEPS):
    with open(osp.join(folder, 'per_step.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    return np.array([np.mean([float(r['psnr']) for r in rows if int(r['step']) == s]) for s in range(steps + 1)])


def test_fig5_one_line_per_method_at_the_means(runs):
    fig = fig5(runs, 'toy')
    psnr_axes = fig.axes[0]
    lines = [line for line in psnr_axes.get_lines() if line.get_gid() == METHOD_GID]
    assert [line.get_label() for line in lines] == ['Pretrained', 'LAN', 'Full-trainable']
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ['Pretrained', 'LAN', 'Full-trainable']
    assert psnr_axes.get_ylabel() == 'mean PSNR (dB)'
    assert fig.axes[2].get_xlabel() == 'adaptation step k (optimiser updates)'
    pre, lan, full = lines
    assert np.allclose(pre.get_ydata(), _means(runs[0].folder, 0)[0])  # the pretrained run: a horizontal line
    np.testing.assert_allclose(lan.get_ydata(), _means(runs[1].folder), atol=1e-12)
    np.testing.assert_allclose(full.get_ydata(), _means(runs[2].folder), atol=1e-12)
    np.testing.assert_array_equal(lan.get_xdata(), np.arange(REPORT_STEPS + 1))
    assert fig5(runs, 'other') is None


def test_gains_figure_sorted_bars_and_below_noisy_marks(runs):
    fig = gains_figure(runs, 'toy')
    assert len(fig.axes) == 2  # the adapted runs; the pretrained one has no gain
    for ax, run in zip(fig.axes, runs[1:]):
        curves = run.curves('toy')
        gains = np.sort(curves[:, -1, 0] - curves[:, 0, 0])
        np.testing.assert_allclose([p.get_height() for p in ax.patches], gains, atol=1e-12)
        below = sum(curves[i, -1, 0] < run.noisy('toy', im)[0] for i, im in enumerate(run.images('toy')))
        marks = [line for line in ax.get_lines() if line.get_marker() == 'v']
        assert len(marks[0].get_xdata()) == below
        assert ax.get_title().startswith(f'{run.method}\nhelps {int((gains > 0).sum())} of 4 images')


def test_noise_residuals_from_saved_offsets_and_pictures(runs, tmp_path):
    lan = runs[1]
    res = noise_residuals(lan, 'toy', 'img001', seed=3)
    folder = lan.folder
    phi = np.load(osp.join(folder, 'offsets', 'toy', 'img001_phi.npy')).transpose(1, 2, 0)
    adapted = np.load(osp.join(folder, 'offsets', 'toy', 'img001_input.npy')).transpose(1, 2, 0)

    def png(*parts):
        return cv2.cvtColor(cv2.imread(osp.join(folder, *parts)), cv2.COLOR_BGR2RGB).astype(np.float32)

    y = adapted - np.tanh(phi)
    np.testing.assert_allclose(res['before'], y * 255 - png('compare', 'toy', 'img001_step0.png'), atol=1e-3)
    np.testing.assert_allclose(res['after'], adapted * 255 - png('visualization', 'toy', 'img001.png'), atol=1e-3)
    np.testing.assert_allclose(res['offset'], np.tanh(phi) * 255, atol=1e-4)
    assert np.abs(res['noisy'] - png('compare', 'toy', 'img001_noisy.png')).max() <= 0.5 + 1e-3  # y saved as 8 bit
    clean = png('compare', 'toy', 'img001_gt.png') / 255
    expected = (np.clip(GaussianNoise(20)(clean, np.random.default_rng(3)), 0, 1) - clean) * 255
    np.testing.assert_allclose(res['train'], expected, atol=1e-3)  # report.train_noise: GaussianNoise sigma 20
    stats = noise_stats(res)
    assert stats['std_before'] == pytest.approx(float(res['before'].std()))
    assert 0 < stats['max_abs_offset'] == pytest.approx(float(np.abs(np.tanh(phi)).max() * 255), rel=1e-5)
    assert stats['w1_after'] > 0 and stats['w1_before'] > 0
    with pytest.raises(DataError, match='adapt.save_offset'):
        noise_residuals(runs[2], 'toy', 'img001')  # FullTrainable has no offset
    copy = shutil.copytree(folder, tmp_path / 'lan')
    (copy / 'report.json').unlink()
    res = noise_residuals(load_runs([str(copy)])[0], 'toy', 'img001')
    assert res['train'] is None and np.isnan(noise_stats(res)['w1_after'])


def test_grey_runs_give_one_channel_residuals_and_a_report(tmp_path):
    from conftest import make_report_runs

    from lan_basicsr.report import build_report
    folder = make_report_runs(str(tmp_path), gray=True)['lan']
    run = load_runs([folder])[0]
    res = noise_residuals(run, 'toy', 'img000')
    assert res['before'].shape == res['train'].shape == res['offset'].shape == (24, 32, 1)
    paths = build_report([folder], str(tmp_path / 'out'), images=1)
    assert osp.isfile(paths['index.html']) and osp.isfile(tmp_path / 'out' / 'fig4_toy_lan_toy_img000.png')
