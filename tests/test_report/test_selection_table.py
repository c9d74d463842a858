"""The selection comparison table from results folders: rows, counts, the choice across runs, subsets, goals."""
import csv
import os
from os import path as osp

import numpy as np
import pytest
from conftest import import_tool, write_toy_options

from lan_basicsr.report.selection_table import goals, selection_markdown, selection_rows, subset_images
from lan_basicsr.utils.errors import DataError

SELECT = ['adapt.select.type=SubImageScore', 'adapt.select.cell=[2,3]']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from lan_basicsr.test import test_pipeline
    root = str(tmp_path_factory.mktemp('selection_runs'))
    opt_path = write_toy_options(root, {'steps': 3, 'lr': 0.05}, num=6)
    cfgs = {
        'lan': ['adapt.type=LAN', *SELECT],
        'full': ['adapt.type=FullTrainable', 'adapt.lr=0.001', *SELECT],
        'plain': ['adapt.type=LAN']
    }
    for key, start in (('sub', 0), ('odd', 1)):  # every 2nd pair, as tools/subset_folder.py makes it: links
        subset = osp.join(root, f'pairs_{key}')
        for side in ('lq', 'gt'):
            os.makedirs(osp.join(subset, side))
            for name in sorted(os.listdir(osp.join(root, 'pairs', side)))[start::2]:
                os.symlink(osp.join(root, 'pairs', side, name), osp.join(subset, side, name))
        cfgs[key] = [
            'adapt.type=FullTrainable', 'adapt.lr=0.001', f'datasets.test.dataroot_lq={subset}/lq',
            f'datasets.test.dataroot_gt={subset}/gt'
        ]
    for key, cfg in cfgs.items():
        test_pipeline(root, argv=['-opt', opt_path, '--cfg-options', f'name=toy_{key}', *cfg])
    return {key: osp.join(root, 'results', f'toy_{key}') for key in cfgs}


def _csv(folder, name):
    with open(osp.join(folder, name), newline='') as f:
        return list(csv.DictReader(f))


def test_rows_counts_and_the_choice_across_runs(runs):
    tables = selection_rows([runs['lan'], runs['full']])
    images, rows, reference = tables['toy']
    assert reference == 'toy_lan'  # both hold all six images: the first
    assert images == [f'img{i:03d}' for i in range(6)]
    kinds = [r.kind for r in rows]
    assert kinds == ['noisy', 'step0', 'last', 'last', 'best', 'selected', 'selected', 'across']
    steps = {(r['image'], r['step']): float(r['psnr']) for r in _csv(runs['full'], 'per_step.csv')}
    assert np.allclose(rows[1].psnr, [steps[(i, '0')] for i in images], atol=1e-6)
    assert np.allclose(rows[3].psnr, [steps[(i, '3')] for i in images], atol=1e-6)
    best = max(rows[2:4], key=lambda r: r.psnr.mean())
    assert np.array_equal(rows[4].psnr, best.psnr)
    lan_sel, full_sel = _csv(runs['lan'], 'selected.csv'), _csv(runs['full'], 'selected.csv')
    assert np.allclose(rows[5].psnr, [float(r['psnr']) for r in lan_sel], atol=1e-6)
    for k, (a, b) in enumerate(zip(lan_sel, full_sel)):  # the lower rule score wins, per image
        winner = a if float(a['score']) <= float(b['score']) else b
        assert rows[7].psnr[k] == pytest.approx(float(winner['psnr']), abs=1e-6)
        assert rows[7].runs[k] == ('toy_lan' if winner is a else 'toy_full')
    step0, noisy = rows[1].psnr, rows[0].psnr
    s = rows[3].stats(step0, noisy, 0.05)
    drop = rows[3].psnr - step0
    assert s['below0'] == int(np.sum(drop < 0)) and s['below0_tol'] == int(np.sum(drop < -0.05))
    assert s['worst'] == pytest.approx(rows[3].psnr.min()) and s['below_noisy'] == int(np.sum(rows[3].psnr < noisy))
    text = selection_markdown(tables)
    assert 'rule across 2 methods' in text and 'best single in hindsight' in text and '| < noisy |' in text
    g = goals(tables, 'across', lan='LAN + ZS-N2N, k = 3')['toy']
    assert g['vs_lan'] == pytest.approx(rows[7].psnr.mean() - rows[2].psnr.mean())
    assert g['vs_best_single'] == pytest.approx(rows[7].psnr.mean() - best.psnr.mean())


def test_every_kth_image_and_a_run_without_selection(runs):
    assert subset_images(['c', 'a', 'b', 'd'], 2) == ['a', 'c']
    images, rows, _ = selection_rows([runs['plain'], runs['lan']], every=2)['toy']
    assert images == ['img000', 'img002', 'img004']
    assert [r.kind for r in rows] == ['noisy', 'step0', 'last', 'last', 'best', 'selected']  # one rule: no across row


def test_a_run_over_all_images_is_compared_on_a_subset_runs_images(runs):
    images, rows, reference = selection_rows([runs['full'], runs['sub']])['toy']
    assert reference == 'toy_sub' and images == ['img000', 'img002', 'img004']
    full = {r['image']: r for r in _csv(runs['full'], 'per_step.csv') if r['step'] == '3'}
    assert rows[2].label.startswith('Full-trainable') and np.allclose(
        rows[2].psnr, [float(full[i]['psnr']) for i in images], atol=1e-6)
    assert np.allclose(rows[2].psnr, rows[3].psnr, atol=1e-6)  # the same adaptation, run over fewer images
    with pytest.raises(DataError, match='lacks image img000'):  # the odd images hold none of the even ones
        selection_rows([runs['sub'], runs['odd']])


def test_runs_of_different_networks_are_refused(runs, tmp_path):
    import shutil
    other = str(tmp_path / 'toy_other')
    shutil.copytree(runs['plain'], other)
    rows = _csv(other, 'per_step.csv')
    for r in rows:
        r['psnr'] = str(float(r['psnr']) + 1)
    with open(osp.join(other, 'per_step.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match='step 0 differently'):
        selection_rows([runs['lan'], other])


def test_cli(runs, tmp_path, capsys):
    tool = import_tool('selection_table')
    out = tmp_path / 'table.md'
    tool.main([runs['lan'], runs['full'], '--ours', 'across', '--out', str(out)])
    assert 'rule across 2 methods' in out.read_text() and '"mean_vs_step0"' in capsys.readouterr().out


def test_split_tables_hold_each_group_of_images(runs):
    from lan_basicsr.report.selection_table import polyu_camera
    assert polyu_camera('Nikon_800_carbi_0003') == 'Nikon800' and polyu_camera('Canon5D2_bag_0012') == 'Canon5D2'
    parity = lambda image: 'even' if int(image[-1]) % 2 == 0 else 'odd'  # noqa: E731
    tables = selection_rows([runs['lan'], runs['full']], split=parity)
    assert list(tables) == ['toy', 'toy / even', 'toy / odd']
    images, rows, _ = tables['toy']
    for group, start in (('even', 0), ('odd', 1)):
        part_images, part, _ = tables[f'toy / {group}']
        assert part_images == images[start::2]
        assert [r.kind for r in part] == [r.kind for r in rows]
        for whole, sub in zip(rows, part):
            assert np.array_equal(sub.psnr, whole.psnr[start::2]) and sub.label == whole.label
            assert sub.runs is None or sub.runs == whole.runs[start::2]
    # a dataset of one group (e.g. one PolyU camera) is not repeated as its own split table
    assert list(selection_rows([runs['lan'], runs['full']], split=lambda image: 'all')) == ['toy']
