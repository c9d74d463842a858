"""tools/selection_study.py: its offline rule evaluation picks what adapt.select picks on the same adaptations."""
import csv
from os import path as osp

import pytest
from conftest import import_tool, write_toy_options

RULES = [
    {
        'cell': [2, 4]
    },
    {
        'cell': [2, 8],
        'blend': False
    },
    {
        'cell': [2, 4, 8],
        'blend_cell': 8
    },
    {
        'sure': None
    },
    {
        'sure': None,
        'guard': [4]
    },
    {
        'sure': 8,
        'blend': False
    },
    {
        'ends': ['c2', 'c4'],
        'margin': 0.02
    },
    {
        'ends': ['sure', 'c3'],
        'margin': 0
    },
    {
        'ends': ['sure8'],
        'margin': 0.05
    },
    {
        'ends': ['c4'],
        'margin': 1.0  # more than any step gains on the toy images: step 0
    }
]


@pytest.fixture(scope='module')
def tool():
    return import_tool('selection_study')


def test_offline_choice_equals_the_rule_in_the_loop(tool, tmp_path):
    from lan_basicsr.test import test_pipeline
    root = str(tmp_path)
    # a rule in the option file: record replaces it by its recorder (the loop's only observer)
    opt = write_toy_options(root, {'steps': 3, 'lr': 0.05, 'select': {'type': 'SubImageScore', 'cell': [2, 4]}}, num=3)
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
    import yaml
    with open(opt) as f:
        plain = yaml.safe_load(f)
    del plain['adapt']['select']  # the runs below each name their rule
    opt = osp.join(root, 'plain.yml')
    with open(opt, 'w') as f:
        yaml.safe_dump(plain, f)
    blended, ends = 0, set()
    for k, rule in enumerate(RULES):
        cfg = tool.rule_cfg_options(rule)
        test_pipeline(
            root,
            argv=['-opt', opt, '--cfg-options', f'name=sel{k}', 'adapt.type=FullTrainable', 'adapt.lr=0.001', *cfg])
        with open(osp.join(root, 'results', f'sel{k}', 'selected.csv'), newline='') as f:
            selected = {r['image']: r for r in csv.DictReader(f)}
        for image, steps in by_image.items():
            step, alpha, score = tool._rule_choice(steps, rule)
            assert step == int(selected[image]['step']), (rule, image)
            assert alpha == pytest.approx(float(selected[image]['alpha']), abs=1e-6), (rule, image)
            assert score == pytest.approx(float(selected[image]['score']), rel=1e-4, abs=1e-9), (rule, image)
            blended += alpha < 1
            if 'ends' in rule:
                assert step in (0, 3) and alpha == 1.0
                ends.add(step)
            r = steps[step]
            psnr = tool._psnr(r['mse_noisy'] + 2 * alpha * r['cross'] + alpha * alpha * r['power'])
            assert psnr == pytest.approx(float(selected[image]['psnr']), abs=1e-3)  # the blend's exact MSE
    assert blended  # the blend path was exercised
    assert ends == {0, 3}  # both outcomes of step 0 or the last step were exercised
    table = tmp_path / 'table.md'
    tool.main(['analyse', out, '--rules', '{cell: [2, 4]}', '--out', str(table)])
    assert '| full | toy | 3 |' in table.read_text()


def test_table_rows_and_the_choice_across_variants(tool, tmp_path, capsys):
    import numpy as np
    root = str(tmp_path)
    opt = write_toy_options(root, {'steps': 3, 'lr': 0.05}, num=3)
    out = osp.join(root, 'steps.csv')
    tool.main([
        'record', '-opt', opt, '--out', out, '--variants', 'slow:adapt.type=FullTrainable,adapt.lr=0.0005',
        'fast:adapt.type=FullTrainable,adapt.lr=0.005'
    ])
    data = tool._load([out])
    rule = {'sure': None, 'guard': [3]}
    names, rows, _ = tool.study_tables(data, rule, {'fast': 'Fast'})['toy']
    assert [r.kind for r in rows] == ['noisy', 'step0', 'last', 'last', 'best', 'selected', 'selected', 'across']
    assert [r.label for r in rows[2:4]] == ['slow, k = 3', 'Fast, k = 3']
    slow, fast = data[('slow', 'toy')], data[('fast', 'toy')]
    assert np.allclose(rows[3].psnr, [fast[i][-1]['psnr'] for i in names])
    assert rows[4].psnr.mean() == max(rows[2].psnr.mean(), rows[3].psnr.mean())
    for j, image in enumerate(names):  # across: per image, the variant whose choice scores lower
        (_, _, s_slow), (_, _, s_fast) = tool._rule_choice(slow[image], rule), tool._rule_choice(fast[image], rule)
        expected = rows[5].psnr[j] if s_slow <= s_fast else rows[6].psnr[j]
        assert rows[7].psnr[j] == expected and rows[7].runs[j] == ('slow' if s_slow <= s_fast else 'fast')
    tool.main(['table', out, '--rule', '{sure: null, guard: [3]}', '--lan', 'slow'])
    text = capsys.readouterr().out
    assert '| rule across 2 methods |' in text and '| toy | across | ' in text.split('vs LAN |')[1]
    tool.main(['table', out, '--rule', '{sure: null, guard: [3]}', '--lan', 'slow', '--ours', 'fast', 'fast:selected'])
    goals = capsys.readouterr().out.split('vs LAN |')[1].splitlines()[2:]
    fast_gain = rows[3].psnr.mean() - rows[1].psnr.mean()
    assert goals[0].startswith(f'| toy | fast | {fast_gain:+.2f} |') and goals[0].endswith(
        f'| {rows[3].psnr.mean() - rows[2].psnr.mean():+.2f} |')
    assert goals[1].startswith(f'| toy | fast:selected | {rows[6].psnr.mean() - rows[1].psnr.mean():+.2f} |')
    from lan_basicsr.utils.errors import OptionError
    with pytest.raises(OptionError, match=r'--ours nope: expected across, a recorded variant \(fast, slow\)'):
        tool.main(['table', out, '--rule', '{sure: null, guard: [3]}', '--ours', 'nope'])
    import shutil
    other = shutil.copy(out, osp.join(root, 'other.csv'))
    both = tool._load([out, other])  # two files with the same variant names stay apart
    assert len(both[('steps/slow', 'toy')][names[0]]) == len(both[('other/slow', 'toy')][names[0]]) == 4
    from lan_basicsr.utils.errors import DataError
    with pytest.raises(DataError, match='two recorded files are named steps.csv'):
        tool._load([out, out])


def test_pick_applies_the_declared_criterion(tool, capsys, monkeypatch):
    # two images, two steps each: step 1 is better on image a, much worse on image b
    def at(psnr):  # the MSE decomposition of an output with this PSNR (power 0.009, noisy input at 20 dB)
        return {'psnr': psnr, 'power': 0.009, 'cross': (10**(-psnr / 10) - 0.01 - 0.009) / 2}

    def steps(image, psnr1, cg1):
        base = {'variant': 'v', 'dataset': 'd', 'image': image, 'mse_noisy': 0.01}
        cells = {f'c{c}_{k}': 0.0 for c in tool.CELLS for k in ('cc', 'cg', 'gg')}
        zero = dict(base, **cells)
        zero.update(step=0, c2_gg=1.0, c4_gg=1.0, **at(30.0))  # score(step 0) = gg = 1 in both cells
        one = dict(zero)
        one.update(step=1, c2_cc=1.0, c2_cg=cg1, c4_cc=1.0, c4_cg=0.6, **at(psnr1))  # score 2 - 2 cg
        return [zero, one]

    data = {('v', 'd'): {'a': steps('a', 31.0, 0.8), 'b': steps('b', 20.0, 0.8)}}
    assert tool._rule_choice(data[('v', 'd')]['a'], {'step': 1})[:2] == (1, 1.0)  # a fixed step
    assert tool._rule_choice(data[('v', 'd')]['a'], {'step': 15})[0] == 1  # (a run of fewer steps stops at its last)
    assert tool.rule_cfg_options({'step': 10}) == ['adapt.steps=10', 'adapt.select=last']
    monkeypatch.setattr(tool, '_load', lambda paths: data)
    rules = ['{cell: [2], blend: false}', '{cell: [4], blend: false}']
    tool.main(['pick', 'x.csv', '--rules', *rules])
    captured = capsys.readouterr()
    # both cells score step 1 below step 0 (0.4 and 0.8 < 1) on both images: image b falls 10 dB, the mean falls, both
    # are disqualified, and the fewest images below step 0 decides: a tie, the first rule
    assert captured.out.strip().startswith('adapt.select.type=SubImageScore adapt.select.cell=[2]')
    data[('v', 'd')]['b'][1]['c4_cg'] = -1.0  # cell 4 now rejects step 1 on image b: only it qualifies
    tool.main(['pick', 'x.csv', '--rules', *rules])
    assert capsys.readouterr().out.strip() == ('adapt.select.type=SubImageScore adapt.select.cell=[4] '
                                               'adapt.select.blend=False')


def test_the_aligned_reference_is_the_clean_image_moved_to_the_noisy_mean(tool):
    import torch
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 3, 24, 24, generator=gen)
    lq = (gt + 0.1 * torch.randn(1, 3, 24, 24, generator=gen) + torch.tensor([0.03, -0.02, 0.01]).view(1, 3, 1, 1))
    out = 0.5 * lq + 0.5 * gt + torch.tensor([0.0, 0.01, -0.02]).view(1, 3, 1, 1)
    recorder = tool.StepRecorder(gt)
    recorder.bind(lambda x: 0.9 * x)
    recorder.start(lq)
    recorder(0, lq, out)
    row = recorder.rows[0]
    shifted = gt.double() + (lq - gt).double().mean((0, 2, 3), keepdim=True)
    for a in (0.0, 0.4, 1.0):
        blend = lq.double() + a * (out.clamp(0, 1).double() - lq.double())
        direct = tool._psnr(float(((blend - shifted)**2).mean()))
        assert tool._blend_psnr(row, a, aligned=True) == pytest.approx(direct, abs=1e-9)
        assert tool._blend_psnr(row, a) == pytest.approx(tool._psnr(float(((blend - gt.double())**2).mean())), abs=1e-9)
    assert tool._blend_psnr(row, 0.0, aligned=True) > tool._blend_psnr(row, 0.0) + 0.1  # the offset no longer counts
    from lan_basicsr.utils.errors import DataError
    old = {k: v for k, v in row.items() if not k.startswith('dc_')}
    with pytest.raises(DataError, match='recorded without the dc_ columns'):
        tool._blend_psnr(old, 1.0, aligned=True)
