"""GT-free step selection: the rules on constructed steps, and adapt.select through the real test pipeline."""
import csv
import os
import shutil
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from test_lan_model import setup  # noqa: F401 (a fixture)
from test_lan_model import NUM, STEPS, interrupt_at_third_image, read, results, run
from torch import nn

from lan_basicsr.losses.zsn2n_loss import pair_downsample
from lan_basicsr.models.selection import (PixelBankScore, ResidualSURE, SubImageScore, WindowedVariance, block_signs,
                                          build_selector, diagonal_pairs)
from lan_basicsr.utils.errors import DataError, OptionError


class Constant(nn.Module):
    """A 'denoiser' that outputs a constant image."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x, self.value)


def test_build_selector():
    assert build_selector(None) is None and build_selector('last') is None and build_selector({'type': 'Last'}) is None
    assert isinstance(build_selector('SubImageScore'), SubImageScore)
    rule = build_selector({'type': 'SubImageScore', 'cell': 3, 'blend': False})
    assert rule.cells == [3] and not rule.blend
    with pytest.raises(OptionError, match='unknown type "Oracle"'):
        build_selector('Oracle')
    with pytest.raises(OptionError, match='cell'):
        build_selector({'type': 'SubImageScore', 'cell': 1})
    with pytest.raises(OptionError, match='adapt.select'):
        build_selector(3)


def test_diagonal_pairs():
    img = torch.rand(2, 3, 11, 9)
    d1, d2 = diagonal_pairs(img, 2, 0)
    e1, e2 = pair_downsample(img[..., :10, :8])
    assert torch.allclose(d1, e1) and torch.allclose(d2, e2)  # cell 2 at offset 0: ZS-N2N's downsampler
    d1, d2 = diagonal_pairs(img, 3, 1)  # cells of rows/columns 1..9 / 1..6: corners (1,3)/(3,1) and (1,1)/(3,3)
    assert d1.shape == (2, 3, 3, 2)
    assert torch.equal(d1[..., 0, 0], 0.5 * (img[..., 1, 3] + img[..., 3, 1]))
    assert torch.equal(d2[..., 2, 1], 0.5 * (img[..., 7, 4] + img[..., 9, 6]))


def _observe(rule, lq, nets_outputs):
    """Feed the rule one image's steps: (network bound at that step, output)."""
    rule.start(lq)
    for step, (net, output) in enumerate(nets_outputs):
        rule.bind(net)
        rule(step, lq, output, None if step == len(nets_outputs) - 1 else torch.tensor([0.0]))
    return rule.finish()[0]


def test_sub_image_score_picks_the_step_and_the_blend_in_closed_form():
    torch.manual_seed(0)
    lq = torch.rand(1, 3, 16, 16)
    d1, d2 = [d.double() for d in diagonal_pairs(lq, 2, 1)]
    # step 0: identity (score = mean (d1 - d2)^2); step 1: constant 0.5 (blend in closed form); step 2: constant 0.9
    rule = SubImageScore(cell=2, blend=False)
    picked = _observe(rule, lq, [(nn.Identity(), lq), (Constant(0.5), lq * 0 + 0.5), (Constant(0.9), lq * 0 + 0.9)])
    scores = [((d1 - d2)**2).mean(), (((0.5 - d2)**2).mean() + ((0.5 - d1)**2).mean()) / 2,
              (((0.9 - d2)**2).mean() + ((0.9 - d1)**2).mean()) / 2]
    best = int(torch.stack(scores).argmin())
    assert picked.step == best == 1 and picked.alpha == 1.0
    assert picked.score == pytest.approx(float(scores[1]), rel=1e-12)
    assert torch.allclose(picked.output, torch.full_like(lq, 0.5))
    blended = _observe(SubImageScore(cell=2), lq, [(nn.Identity(), lq), (Constant(0.7), lq * 0 + 0.7)])
    change = torch.cat([(0.7 - d1).flatten(), (0.7 - d2).flatten()])
    gap = torch.cat([(d2 - d1).flatten(), (d1 - d2).flatten()])
    alpha = float((change * gap).sum() / (change**2).sum())
    assert 0 < alpha < 1 and blended.step == 1 and blended.alpha == pytest.approx(alpha, rel=1e-6)  # the net is float32
    assert torch.allclose(blended.output, (alpha * 0.7 + (1 - alpha) * lq).float(), atol=1e-6)
    assert blended.score == pytest.approx(float(((alpha * change - gap)**2).mean()), rel=1e-6)


def test_the_coarse_cell_guards_against_what_the_fine_cell_likes():
    # bright pixels on the corners of the 4x4 cells (offset 1): the coarse sub-images see 0.8, the fine ones ~0.35
    lq = torch.full((1, 3, 25, 25), 0.2)
    corner = torch.tensor([(i - 1) % 4 in (0, 3) and i >= 1 for i in range(25)])
    lq[..., corner[:, None] & corner[None, :]] = 0.8
    steps = [(Constant(0.5), lq * 0 + 0.5), (Constant(0.4), lq * 0 + 0.4)]  # the fine cell prefers 0.4, the coarse 0.5
    assert _observe(SubImageScore(cell=2, blend=False), lq, steps).step == 1
    assert _observe(SubImageScore(cell=4, blend=False), lq, steps).step == 0
    assert _observe(SubImageScore(cell=[2, 4], blend=False), lq, steps).step == 0
    steps = [(Constant(0.2), lq * 0 + 0.2), (Constant(0.3), lq * 0 + 0.3)]  # both prefer 0.3 to 0.2: allowed
    assert _observe(SubImageScore(cell=[2, 4], blend=False), lq, steps).step == 1


def test_ends_weighs_step_0_against_the_last_step_only_and_the_margin_handicaps_it():
    torch.manual_seed(0)
    lq = torch.rand(1, 3, 16, 16)
    d1, d2 = [d.double() for d in diagonal_pairs(lq, 2, 1)]
    score = lambda v: float((((v - d2)**2).mean() + ((v - d1)**2).mean()) / 2)  # noqa: E731 (a constant output v)
    # step 0: constant 0.9, the middle step: 0.5 (the best), the last: 0.6 (better than step 0, worse than the middle);
    # the outputs are float32
    steps = [(Constant(v), lq * 0 + v) for v in (0.9, 0.5, 0.6)]
    assert _observe(SubImageScore(cell=2, blend=False), lq, steps).step == 1
    ends = _observe(SubImageScore(cell=2, blend=False, candidates='ends'), lq, steps)
    assert ends.step == 2 and ends.score == pytest.approx(score(0.6), rel=1e-6)
    assert torch.allclose(ends.output, torch.full_like(lq, 0.6))
    noise = float(((d2 - d1)**2).mean())  # the cell's noise scale
    gain = (score(0.9) - score(0.6)) / noise  # what the last step gains, in that scale
    kept = _observe(SubImageScore(cell=2, blend=False, candidates='ends', margin=0.9 * gain), lq, steps)
    assert kept.step == 2 and kept.score == pytest.approx(score(0.6) + 0.9 * gain * noise, rel=1e-6)
    assert _observe(SubImageScore(cell=2, blend=False, candidates='ends', margin=1.1 * gain), lq, steps).step == 0
    # ResidualSURE: the margin is in units of the step-0 residual's power, and guard cells get theirs
    sure = ResidualSURE(blend=False, candidates='ends', margin=0.0, guard=[2])
    assert _observe(sure, lq, steps).step == 2
    assert _observe(ResidualSURE(blend=False, candidates='ends', margin=1.1 * gain, guard=[2]), lq, steps).step == 0
    for bad, match in [({'candidates': 'some'}, 'candidates must be "all"'), ({'margin': -1}, 'margin must be')]:
        with pytest.raises(ValueError, match=match):
            SubImageScore(**bad)
        with pytest.raises(ValueError, match=match):
            ResidualSURE(**bad)


def test_windowed_variance_picks_the_middle_of_the_calmest_window():
    lq = torch.zeros(1, 1, 4, 4)
    values = [0.0, 0.5, 0.6, 0.62, 0.63, 0.9, 0.1]  # the window 2..4 moves least
    rule = WindowedVariance(window=3)
    rule.start(lq)
    for step, v in enumerate(values):
        rule(step, lq, torch.full_like(lq, v), None)
    chosen = rule.finish()[0]
    assert chosen.step == 3 and torch.equal(chosen.output, torch.full_like(lq, 0.62))


def test_a_replayed_image_replaces_its_first_pass():
    lq = torch.rand(2, 3, 12, 12)
    rule = SubImageScore(cell=2, blend=False)
    rule.start(lq)
    rule.bind(nn.Identity())
    for step in range(3):  # the batch: identity at every step
        rule(step, lq, lq, None)
    rule.bind(Constant(0.5))
    for step in range(2):  # image 1 adapted again alone, stopped after step 1
        rule(step, lq[1:], torch.full_like(lq[1:], 0.5), None)
    first, second = rule.finish()  # the replay starts from image 1's noisy input: it is image 1's
    assert first.step == 0 and torch.equal(first.output, lq[:1])
    assert torch.equal(second.output, torch.full_like(lq[1:], 0.5))
    with pytest.raises(RuntimeError, match='replayed'):
        rule.finish(replayed=[])


def test_pixel_bank_score_ranks_the_noisy_input_like_its_mse():
    torch.manual_seed(0)
    clean = torch.full((1, 3, 24, 24), 0.5)
    lq = clean + 0.1 * torch.randn_like(clean)
    rule = PixelBankScore(bank_size=4, window=9, patch=3, exclude=1)
    rule.start(lq)
    rule(0, lq, clean, None)  # the clean image beats the noisy one
    rule(1, lq, lq, None)
    assert rule.finish()[0].step == 0


def _box(size=3):
    """A linear 'denoiser': the size x size box filter (replicate padding), a known Jacobian."""
    conv = nn.Conv2d(3, 3, size, padding=size // 2, padding_mode='replicate', bias=False, groups=3)
    conv.weight.data.fill_(1 / size**2)
    return conv.requires_grad_(False)


def _correlated_noise(shape, sigma, seed):
    """Gaussian noise correlated over neighbouring pixels (white noise through a 3x3 box filter), rescaled to sigma."""
    g = torch.Generator().manual_seed(seed)
    white = torch.randn(shape, generator=g)
    noise = _box(3)(white)
    return noise * sigma / noise.std()


def test_block_signs_are_constant_on_blocks_and_channels_and_seeded():
    field = block_signs((2, 3, 10, 13), 4, seed=5)
    assert field.shape == (2, 1, 10, 13) and set(field.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(field[0], field[1])  # every image of a size: the same field, whatever the batch
    blocks = field[0, 0].reshape(-1)  # the 4x4 block at rows 4..7, columns 8..11 has one sign
    assert field[0, 0, 4:8, 8:12].unique().numel() == 1 and blocks.numel() == 130
    assert torch.equal(field, block_signs((2, 3, 10, 13), 4, seed=5))
    assert not torch.equal(field, block_signs((2, 3, 10, 13), 4, seed=6))


def test_residual_sure_estimates_the_mse_of_a_linear_denoiser_in_closed_form():
    clean = torch.full((1, 3, 64, 64), 0.5)
    noise = _correlated_noise(clean.shape, 0.05, seed=0)
    lq = clean + noise
    box = _box(3)
    out = box(lq)
    # step 0: the perfect denoiser (the residual is the noise itself); step 1: the box filter
    rule = ResidualSURE(blend=False)
    picked = _observe(rule, lq, [(Constant(0.5), clean), (box, out)])
    z = noise.double()
    probe = float((z * (box(lq + 0.1 * z.float()).double() - out.double())).mean() / 0.1)  # linear: z^T J z / N
    power = float((out - lq).double().square().mean())
    expected = power + 2 * (probe - float(noise.double().square().mean()))
    box_score = expected  # the rule's score of step 1, by hand
    perfect = -float(noise.double().square().mean())  # step 0: P = T, d = 0 (a constant has no Jacobian)
    assert picked.step == 0 and picked.score == pytest.approx(perfect, rel=1e-6)
    rule.start(lq)
    rule.bind(box)
    rule(0, lq, clean, None)  # the same residual; then the box filter's score
    score, alpha = rule.score(rule.passes[0]['state'], 1, lq, out.clamp(0, 1), None)
    assert float(score) == pytest.approx(box_score, rel=1e-4) and float(alpha) == 1.0
    # SURE's MSE estimate (score + T) against the true MSE of the box output: exact for a linear denoiser when the
    # residual is the noise
    true_mse = float((out - clean).double().square().mean())
    assert box_score + float(noise.double().square().mean()) == pytest.approx(true_mse, rel=1e-4)


def test_blocks_keep_the_correlation_that_white_noise_sure_misses():
    clean = torch.full((1, 3, 96, 96), 0.5)
    noise = _correlated_noise(clean.shape, 0.05, seed=1)
    lq, box = clean + noise, _box(3)
    true_cross = float(((box(lq) - lq) * noise).double().mean())
    errors = {}
    for block in (1, 8, 32, None):
        rule = ResidualSURE(block=block, blend=False)
        rule.start(lq)
        rule.bind(box)
        rule(0, lq, clean, None)  # the residual is the noise
        state = rule.passes[0]['state']
        score, _ = rule.score(state, 1, lq, box(lq).clamp(0, 1), None)
        power = float((box(lq) - lq).double().square().mean())
        errors[block] = abs((float(score) - power) / 2 - true_cross) / abs(true_cross)
    # white-noise SURE (independent signs per pixel) misses the covariance between neighbours entirely; sign-flipped
    # blocks lose the covariance across their edges (measured: 120%, 22%, 3% of the term); the residual itself: none
    assert errors[1] > 1 and 0.1 < errors[8] < 0.3 and errors[32] < 0.05 and errors[None] < 1e-4


def test_residual_sure_blends_towards_the_noisy_input_only_when_it_pays():
    torch.manual_seed(0)
    clean = torch.linspace(0.2, 0.8, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    lq = clean + _correlated_noise(clean.shape, 0.04, seed=2)
    # step 0 the box filter (a good denoiser here); step 1 a constant (oversmooths the ramp away)
    picked = _observe(ResidualSURE(), lq, [(_box(5), _box(5)(lq)), (Constant(0.5), lq * 0 + 0.5)])
    assert picked.step == 0 and picked.alpha > 0.8
    rule = ResidualSURE(guard=[4])
    picked = _observe(rule, lq, [(_box(5), _box(5)(lq)), (Constant(0.5), lq * 0 + 0.5)])
    assert picked.step == 0
    with pytest.raises(OptionError, match='adapt.select: ResidualSURE: block must be null or an integer >= 1'):
        build_selector({'type': 'ResidualSURE', 'block': 0})
    with pytest.raises(OptionError, match='ResidualSURE: guard must be a list of integers >= 2'):
        build_selector({'type': 'ResidualSURE', 'guard': [1]})


# ---------------------------------------------------------------------------------------------------------------------
# Through the test pipeline (tiny DnCNN, 16x24 images; see test_lan_model)
SELECT = ('adapt.select.type=SubImageScore', 'adapt.select.cell=[2,3]')
SURE = ('adapt.select.type=ResidualSURE', 'adapt.select.guard=[3]')
ENDS = ('adapt.select.type=ResidualSURE', 'adapt.select.blend=False', 'adapt.select.guard=[3]',
        'adapt.select.candidates=ends', 'adapt.select.margin=0.02')


def test_selection_writes_selected_csv_and_changes_no_step(setup):  # noqa: F811
    run(setup, name='plain')
    model = run(setup, *SELECT, name='sel')
    assert read(setup, 'sel') == read(setup, 'plain')  # the rule draws nothing: the adaptation is the same
    rows = results(setup, 'sel', file='selected.csv')
    assert list(rows[0]) == ['dataset', 'image', 'step', 'alpha', 'score', 'psnr', 'ssim']
    assert [r['image'] for r in rows] == [f'img{i:03d}' for i in range(NUM)]
    assert all(0 <= int(r['step']) <= STEPS and 0 <= float(r['alpha']) <= 1 and float(r['score']) > 0 for r in rows)
    summary = results(setup, 'sel', file='summary.csv')
    assert [r['step'] for r in summary] == ['0', str(STEPS), 'selected']
    assert float(summary[-1]['psnr']) == pytest.approx(np.mean([float(r['psnr']) for r in rows]), abs=1e-6)
    assert not osp.isfile(osp.join(setup.root, 'results', 'plain', 'selected.csv'))
    assert model.metric_results['psnr'] == pytest.approx(float(summary[1]['psnr']), abs=1e-6)
    # the saved image is the selected one: its PSNR is the selected row's
    from lan_basicsr.metrics import score_images
    saved = cv2.imread(osp.join(setup.root, 'results', 'sel', 'visualization', 'toy', 'img002.png'))[..., ::-1]
    gt = cv2.imread(osp.join(setup.pairs, 'gt', 'img002.png'))[..., ::-1]
    to = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    assert score_images(to(saved), to(gt), model.metrics_opt)['psnr'] == pytest.approx(float(rows[2]['psnr']), abs=0.3)
    with pytest.raises(OptionError, match='select'):  # a folder made without selection is not continued with one
        run(setup, *SELECT, name='plain')


@pytest.mark.parametrize('rule', [SELECT, SURE, ENDS], ids=['SubImageScore', 'ResidualSURE', 'ends'])
def test_the_rule_never_reads_gt(setup, tmp_path, rule):  # noqa: F811
    run(setup, *rule, name='real_gt')
    garbage = str(tmp_path / 'garbage')
    shutil.copytree(setup.pairs, garbage)
    rng = np.random.default_rng(1)
    for name in os.listdir(osp.join(garbage, 'gt')):
        cv2.imwrite(osp.join(garbage, 'gt', name), rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    run(setup, *rule, f'datasets.test.dataroot_gt={garbage}/gt', name='garbage_gt')
    real, fake = results(setup, 'real_gt', file='selected.csv'), results(setup, 'garbage_gt', file='selected.csv')
    assert [(r['step'], r['alpha'], r['score']) for r in real] == [(r['step'], r['alpha'], r['score']) for r in fake]
    assert [r['psnr'] for r in real] != [r['psnr'] for r in fake]  # GT did change: it only scores
    run(setup, *rule, 'datasets.test.type=NoisyImageDataset', 'datasets.test.dataroot_gt=None', name='no_gt')
    none = results(setup, 'no_gt', file='selected.csv')
    assert [(r['step'], r['alpha'], r['score']) for r in none] == [(r['step'], r['alpha'], r['score']) for r in real]
    assert all(r['psnr'] == '' for r in none)


def test_selected_csv_resumes_exactly(setup, monkeypatch):  # noqa: F811
    run(setup, *SELECT, name='whole')
    interrupt_at_third_image(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(setup, *SELECT, name='cut')
    with open(osp.join(setup.root, 'results', 'cut', 'selected.csv'), 'a') as f:
        f.write('toy,img002,1,0.5,0.1,20.0,0.5\n')  # written, but its per-step rows never were: redone
    run(setup, *SELECT, name='cut')
    for file in ('per_step.csv', 'selected.csv', 'summary.csv', 'inputs.csv'):
        assert read(setup, 'cut', file=file) == read(setup, 'whole', file=file), file


def test_combined_adapter_and_pixel_bank_loss_run_with_selection(setup):  # noqa: F811
    loss = ('adapt.loss.type=PixelBankLoss', 'adapt.loss.window=9', 'adapt.loss.patch=3', 'adapt.loss.exclude=1',
            'adapt.loss.bank_size=4')
    model = run(setup, 'adapt.type=OffsetAndWeights', *loss, *SELECT, name='combined')
    assert type(model.adapter).__name__ == 'OffsetAndWeights'
    with open(osp.join(setup.root, 'results', 'combined', 'per_step.csv')) as f:
        assert len(list(csv.DictReader(f))) == NUM * (STEPS + 1)
    assert len(results(setup, 'combined', file='selected.csv')) == NUM


@pytest.mark.parametrize('cfg,match', [
    (['adapt.select.type=Oracle'], r'adapt\.select\.type: unknown type "Oracle"'),
    (['adapt.select.type=SubImageScore', 'adapt.select.cell=1'], r'adapt\.select: SubImageScore rejects'),
    (['adapt.select.type=SubImageScore', 'adapt.select.cells=[2]'], r'adapt\.select\.cells: unknown key'),
    (['adapt.type=OffsetAndWeights', 'adapt.combined.weights=LAN'], r'adapt\.combined\.weights'),
    (['adapt.type=OffsetAndWeights', 'adapt.combined.lr=0.1'], r'adapt\.combined\.lr: unknown key'),
])
def test_bad_options_stop_before_anything_runs(setup, cfg, match):  # noqa: F811
    with pytest.raises(OptionError, match=match):
        run(setup, *cfg, name='bad')
    assert not osp.isdir(osp.join(setup.root, 'results', 'bad', 'visualization', 'toy'))


def test_an_image_too_small_for_the_cells_is_a_data_error():
    rule = SubImageScore(cell=[2, 4])
    rule.start(torch.rand(1, 3, 4, 4))
    rule.bind(nn.Identity())
    with pytest.raises(DataError, match='4x4 pixels is too small for SubImageScore cell 4'):
        rule(0, torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), None)


@pytest.mark.parametrize('rule', [SELECT, SURE, ENDS], ids=['SubImageScore', 'ResidualSURE', 'ends'])
def test_a_batch_selects_as_one_image_at_a_time(setup, rule):  # noqa: F811
    for adapter in ('LAN', 'OffsetAndWeights'):
        run(setup, f'adapt.type={adapter}', *rule, name=f'{adapter}_one')
        run(setup, f'adapt.type={adapter}', *rule, 'adapt.batch_size=3', name=f'{adapter}_three')
        one, three = (results(setup, f'{adapter}_{n}', file='selected.csv') for n in ('one', 'three'))
        assert [(r['image'], r['step']) for r in one] == [(r['image'], r['step']) for r in three]
        for a, b in zip(one, three):
            assert float(a['alpha']) == pytest.approx(float(b['alpha']), abs=1e-5)
            # (ResidualSURE's score is an MSE minus the noise power, ~6e-3 here: abs 1e-9 is float32 summation order)
            assert float(a['score']) == pytest.approx(float(b['score']), rel=1e-5, abs=1e-9)
            assert float(a['psnr']) == pytest.approx(float(b['psnr']), abs=1e-3)


def test_a_non_finite_step_in_a_batch_is_selected_from_its_replay(setup, monkeypatch):  # noqa: F811
    from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
    original = ZSN2NLoss.forward
    lq1 = None

    def nan_for_img001_from_step_1(self, net, noisy, step=0, total_steps=20, generators=None):
        out = original(self, net, noisy, step, total_steps, generators)
        if step < 1:
            return out
        hit = torch.tensor([torch.allclose(y, lq1, atol=0.01) for y in noisy])
        per_image = torch.where(hit, torch.nan, out.per_image)
        return out._replace(loss=per_image.mean(), per_image=per_image)

    from basicsr.data import build_dataset
    model = run(setup, 'adapt.steps=0', name='data')
    lq1 = build_dataset(dict(model.opt['datasets']['test']))[1]['lq']
    monkeypatch.setattr(ZSN2NLoss, 'forward', nan_for_img001_from_step_1)
    model = run(setup, *SELECT, 'adapt.batch_size=4', name='nan_run')
    passes = model.selector.passes
    assert [p['rows'] for p in passes] == [4, 1]  # the batch, then img001 again alone (stopping at step 1)
    rows = {r['image']: r for r in results(setup, 'nan_run', file='selected.csv')}
    assert sorted(rows) == [f'img{i:03d}' for i in range(NUM)]
    assert int(rows['img001']['step']) <= 1  # stopped at step 1: nothing later exists to choose
    steps = {(r['image'], r['step']): r for r in results(setup, 'nan_run')}
    chosen = steps[('img001', rows['img001']['step'])]
    if float(rows['img001']['alpha']) == 1.0:
        assert float(rows['img001']['psnr']) == pytest.approx(float(chosen['psnr']), abs=1e-4)


def test_the_blend_weight_can_come_from_another_cell():
    torch.manual_seed(0)
    lq = torch.rand(1, 3, 24, 24)
    steps = [(nn.Identity(), lq), (Constant(0.7), lq * 0 + 0.7)]
    c1, c2 = [d.double() for d in diagonal_pairs(lq, 4, 1)]
    change = torch.cat([(0.7 - c1).flatten(), (0.7 - c2).flatten()])
    gap = torch.cat([(c2 - c1).flatten(), (c1 - c2).flatten()])
    expected = min(1.0, max(0.0, float((change * gap).sum() / (change**2).sum())))
    picked = _observe(SubImageScore(cell=[2, 4], blend_cell=4), lq, steps)
    assert picked.step == 1 and 0 < expected < 1 and picked.alpha == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match='blend_cell'):
        SubImageScore(cell=[2, 4], blend_cell=3)


def test_a_replaced_observer_with_a_rule_is_a_one_line_error(setup):  # noqa: F811
    from basicsr.data import build_dataset
    from torch.utils.data import default_collate
    model = run(setup, *SELECT, 'adapt.steps=1', name='observed')
    data = default_collate([build_dataset(dict(model.opt['datasets']['test']))[0]])
    model.observer = lambda *args: None
    with pytest.raises(OptionError, match='observer was replaced by function.*adapt.select=last'):
        model.adapt_one(data, 0, 'img000')
    model.observer = model.selector
    assert model.adapt_one(data, 0, 'img000').selected.step in (0, 1)
