"""Table 1 from two tiny LANModel runs made here: cells equal the CSV means, best marked, mixed runs refused."""
import csv
import io
import shutil
from os import path as osp

import numpy as np
import pytest
from conftest import REPORT_STEPS

from lan_basicsr.report import gains_table, load_runs, method_label, table1
from lan_basicsr.utils.errors import DataError, OptionError


def per_step_means(folder):
    """``{step: (mean psnr, mean ssim)}`` straight from per_step.csv (the reference for every cell)."""
    with open(osp.join(folder, 'per_step.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    out = {}
    for step in range(REPORT_STEPS + 1):
        sel = [r for r in rows if int(r['step']) == step]
        out[step] = (np.mean([float(r['psnr']) for r in sel]), np.mean([float(r['ssim']) for r in sel]))
    return out


def summary(folder):
    with open(osp.join(folder, 'summary.csv'), newline='') as f:
        return {int(r['step']): (float(r['psnr']), float(r['ssim'])) for r in csv.DictReader(f)}


def test_cells_equal_csv_means_and_summary(report_runs):
    t = table1([report_runs['lan'], report_runs['full']], steps=[0, 1, 2, 3])
    assert t.datasets == ['toy'] and t.losses == ['ZS-N2N'] and t.steps == [0, 1, 2, 3]
    assert t.rows['toy'] == [('DnCNN', 'LAN'), ('DnCNN', 'Full-trainable')]
    for key, method in (('lan', 'LAN'), ('full', 'Full-trainable')):
        means, summ = per_step_means(report_runs[key]), summary(report_runs[key])
        for step in range(REPORT_STEPS + 1):
            c = t.cell('toy', method, step, 'ZS-N2N')
            assert c['images'] == 4
            assert c['psnr'] == pytest.approx(means[step][0], abs=1e-12)
            assert c['ssim'] == pytest.approx(means[step][1], abs=1e-12)
            if step in summ:  # summary.csv rounds to 6 decimals
                assert c['psnr'] == pytest.approx(summ[step][0], abs=1e-6)
                assert c['ssim'] == pytest.approx(summ[step][1], abs=1e-6)
    # default steps: the union of the runs' summary.csv steps (report_steps [0, 2] + the last)
    assert table1([report_runs['lan'], report_runs['full']]).steps == [0, 2, 3]


def test_markdown_and_csv_layout_mark_the_best(report_runs):
    t = table1([report_runs['lan'], report_runs['full']])
    lines = t.markdown().splitlines()
    noisy = t.noisy['toy']
    assert noisy[2] == 4 and 21 < noisy[0] < 23  # inputs.csv means, shown in the heading
    assert lines[0] == (f'**toy** (4 images; noisy input {noisy[0]:.2f} / {noisy[1]:.4f}). PSNR (dB) / SSIM after k '
                        'adaptation steps; best of each column in bold.')
    assert lines[2] == '| method | k = 0 | ZS-N2N k = 2 | ZS-N2N k = 3 |'
    assert [line.split(' | ')[0] for line in lines[4:6]] == ['| LAN', '| Full-trainable']
    for col, (loss, step) in enumerate(t.columns()):
        for key, digits in (('psnr', 2), ('ssim', 4)):
            values = [t.cell('toy', m, step, loss)[key] for m in ('LAN', 'Full-trainable')]
            shown = [round(v, digits) for v in values]
            for row, method in enumerate(('LAN', 'Full-trainable')):
                c = t.cell('toy', method, step, loss)
                expect = shown[row] == max(shown) and len(set(shown)) > 1
                assert c[f'best_{key}'] == expect
                cell_text = lines[4 + row].split(' | ')[1 + col].strip(' |')
                part = cell_text.split(' / ')[0 if key == 'psnr' else 1]
                assert part == (f'**{values[row]:.{digits}f}**' if expect else f'{values[row]:.{digits}f}')
    assert not t.cell('toy', 'LAN', 0)['best_psnr']  # step 0 ties: nothing marked
    wide = list(csv.DictReader(io.StringIO(t.csv())))
    assert [r['method'] for r in wide] == ['LAN', 'Full-trainable']
    assert float(wide[0]['ZS-N2N k = 3 PSNR']) == pytest.approx(t.cell('toy', 'LAN', 3, 'ZS-N2N')['psnr'], abs=1e-6)
    long = list(csv.DictReader(io.StringIO(t.long_csv())))
    assert long[0]['method'] == 'Noisy input' and float(long[0]['psnr']) == pytest.approx(noisy[0], abs=1e-6)
    assert len(long) == 1 + 2 * 3


def test_labels_and_method_names(report_runs, tmp_path):
    t = table1([report_runs['lan'], report_runs['full']], labels={'toy_full': 'FT (ours)'})
    assert t.rows['toy'] == [('DnCNN', 'LAN'), ('DnCNN', 'FT (ours)')]
    with pytest.raises(OptionError, match='no such results folder'):
        table1([report_runs['lan']], labels={'toy_nope': 'x'})
    base = {'adapt': {'type': 'FullTrainable', 'steps': 20}, 'pretrain_network_g': 'a/net.pth'}
    assert method_label(base) == 'Full-trainable'
    assert method_label({**base, 'pretrain_network_g': 'weights/dncnn_gaussian_meta.pth'}) == 'Meta-learning'
    assert method_label({'adapt': {'type': 'LAN', 'steps': 0}}) == 'Pretrained'
    assert method_label({'adapt': {'type': 'FirstLayer', 'steps': 5}}) == 'First layer'
    combined = {'type': 'OffsetAndWeights', 'steps': 5}  # which weights train beside the offset
    assert method_label({'adapt': {**combined, 'combined': None}}) == 'OffsetAndWeights (last layer)'
    assert method_label({'adapt': {**combined, 'combined': {'weights': 'FullTrainable'}}}) == \
        'OffsetAndWeights (all weights)'
    # report.json's label (the option file's report.label) is used when no label is given
    copy = shutil.copytree(report_runs['lan'], tmp_path / 'toy_lan_b')
    (copy / 'report.json').write_text('{"label": "LAN, lr 0.05"}')
    assert load_runs([str(copy)])[0].method == 'LAN, lr 0.05'


def test_mixed_or_duplicate_runs_are_refused(report_runs, tmp_path):
    copy = shutil.copytree(report_runs['lan'], tmp_path / 'toy_lan_copy')
    with pytest.raises(DataError, match='both give LAN with ZS-N2N on toy'):
        table1([report_runs['lan'], str(copy)])
    assert table1([report_runs['lan'], str(copy)], labels={
        'toy_lan_copy': 'LAN again'
    }).rows['toy'][1][1] == 'LAN again'
    lines = (copy / 'per_step.csv').read_text().splitlines()
    (copy / 'per_step.csv').write_text('\n'.join(lines[:-(REPORT_STEPS + 1)]) + '\n')  # one image fewer
    with pytest.raises(DataError, match='4 images, .* 3 .*not comparable'):
        table1([report_runs['full'], str(copy)])
    shutil.copy(osp.join(report_runs['lan'], 'per_step.csv'), copy / 'per_step.csv')
    text = (copy / 'inputs.csv').read_text().replace('toy,img001,22.', 'toy,img001,23.')
    (copy / 'inputs.csv').write_text(text)
    with pytest.raises(DataError, match='img001: the noisy input scores'):
        table1([report_runs['full'], str(copy)])
    shutil.copy(osp.join(report_runs['lan'], 'inputs.csv'), copy / 'inputs.csv')
    rows = (copy / 'per_step.csv').read_text().splitlines()
    fields = rows[1].split(',')
    fields[3] = f'{float(fields[3]) + 1:.6f}'  # img000 step 0 one dB higher: other weights or inputs
    (copy / 'per_step.csv').write_text('\n'.join([rows[0], ','.join(fields)] + rows[2:]) + '\n')
    with pytest.raises(DataError, match='img000: step 0 .* same network'):
        table1([report_runs['full'], str(copy)])
    with pytest.raises(DataError, match='no per_step.csv'):
        table1([str(tmp_path)])
    with pytest.raises(OptionError, match='beyond every run'):
        table1([report_runs['lan']], steps=[0, 30])


def test_gains_count_helped_hurt_and_below_noisy(report_runs):
    runs = load_runs([report_runs['lan'], report_runs['full']])
    rows = gains_table(runs)
    assert [(r['method'], r['images']) for r in rows] == [('LAN', 4), ('Full-trainable', 4)]
    for run, row in zip(runs, rows):
        with open(osp.join(run.folder, 'per_step.csv'), newline='') as f:
            per = list(csv.DictReader(f))
        with open(osp.join(run.folder, 'inputs.csv'), newline='') as f:
            noisy = {r['image']: float(r['psnr']) for r in csv.DictReader(f)}
        first = {r['image']: float(r['psnr']) for r in per if r['step'] == '0'}
        last = {r['image']: float(r['psnr']) for r in per if r['step'] == str(REPORT_STEPS)}
        gains = [last[i] - first[i] for i in first]
        assert row['helps'] == sum(g > 0 for g in gains) and row['hurts'] == sum(g < 0 for g in gains)
        assert row['mean_gain'] == pytest.approx(np.mean(gains), abs=1e-12)
        assert row['below_noisy_last'] == sum(last[i] < noisy[i] for i in last)
        assert row['below_noisy_step0'] == sum(first[i] < noisy[i] for i in first)
