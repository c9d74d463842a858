"""tools/selection_study.py: its offline rule evaluation picks what adapt.select picks on the same adaptations."""
import csv
import importlib
import sys
from os import path as osp

import pytest
from conftest import ROOT, write_toy_options

RULES = [{'cell': [2, 4]}, {'cell': [2, 8], 'blend': False}, {'cell': [2, 4, 8], 'blend_cell': 8}]


@pytest.fixture(scope='module')
def tool():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        return importlib.import_module('selection_study')
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))


def test_offline_choice_equals_the_rule_in_the_loop(tool, tmp_path):
    from lan_basicsr.test import test_pipeline
    root = str(tmp_path)
    opt = write_toy_options(root, {'steps': 3, 'lr': 0.05}, num=3)
    out = osp.join(root, 'steps.csv')
    tool.main(['record', '-opt', opt, '--out', out, '--variants', 'full:adapt.type=FullTrainable,adapt.lr=0.001'])
    with open(out, newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 4 and list(rows[0])[:5] == ['variant', 'dataset', 'image', 'step', 'psnr']
    by_image = {}
    for r in rows:
        by_image.setdefault(r['image'], []).append({
            k: (v if k in ('variant', 'dataset', 'image') else float(v))
            for k, v in r.items()
        })
    for r in (x for steps in by_image.values() for x in steps):
        r['step'] = int(r['step'])
    blended = 0
    for k, rule in enumerate(RULES):
        cfg = ['adapt.select.type=SubImageScore', f'adapt.select.cell={rule["cell"]}'.replace(' ', '')]
        cfg += [f'adapt.select.{key}={value}' for key, value in rule.items() if key != 'cell']
        test_pipeline(
            root,
            argv=['-opt', opt, '--cfg-options', f'name=sel{k}', 'adapt.type=FullTrainable', 'adapt.lr=0.001', *cfg])
        with open(osp.join(root, 'results', f'sel{k}', 'selected.csv'), newline='') as f:
            selected = {r['image']: r for r in csv.DictReader(f)}
        for image, steps in by_image.items():
            step, alpha = tool.choose(steps, rule['cell'], rule.get('blend', True), rule.get('blend_cell'))
            assert step == int(selected[image]['step']), (rule, image)
            assert alpha == pytest.approx(float(selected[image]['alpha']), abs=1e-6), (rule, image)
            blended += alpha < 1
            r = steps[step]
            psnr = tool._psnr(r['mse_noisy'] + 2 * alpha * r['cross'] + alpha * alpha * r['power'])
            assert psnr == pytest.approx(float(selected[image]['psnr']), abs=1e-3)  # the blend's exact MSE
    assert blended  # the blend path was exercised
    table = tmp_path / 'table.md'
    tool.main(['analyse', out, '--rules', '{cell: [2, 4]}', '--out', str(table)])
    assert '| full | toy | 3 |' in table.read_text()
