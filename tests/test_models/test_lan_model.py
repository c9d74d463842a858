"""LANModel through the real test pipeline on a tiny DnCNN and generated 16x24 images (3 adaptation steps)."""
import csv
import inspect
import json
import logging
import os
from os import path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, make_paired_folder, paired_datasets, tiny_dncnn

from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
from lan_basicsr.models.lan_model import LANModel
from lan_basicsr.test import test_pipeline as pipeline
from lan_basicsr.utils.errors import OptionError

STEPS = 3
NUM = 4
NET = tiny_dncnn()


@pytest.fixture
def setup(tmp_path):
    """A paired folder, a 'pretrained' tiny DnCNN checkpoint and an option file inheriting options/_base_."""
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=NUM, size=(16, 24))
    torch.manual_seed(0)
    net = DnCNN(**{k: v for k, v in NET.items() if k != 'type'})
    ckpt = str(tmp_path / 'net.pth')
    torch.save({'params': net.state_dict()}, ckpt)
    opt = {
        '_base_': osp.join(ROOT, 'options', '_base_', 'lan_base.yml'),
        'num_gpu': 0,
        'network_g': NET,
        'path': {
            'pretrain_network_g': ckpt
        },
        'adapt': {
            'steps': STEPS
        },
        'datasets': paired_datasets(pairs),
    }
    opt_path = tmp_path / 'lan_toy.yml'
    opt_path.write_text(yaml.safe_dump(opt))
    return SimpleNamespace(
        root=str(tmp_path), opt=str(opt_path), ckpt=ckpt, pairs=pairs, state=torch.load(ckpt)['params'])


def run(setup, *cfg, name='lan_toy'):
    argv = ['-opt', setup.opt, '--cfg-options', f'name={name}', *cfg]
    return pipeline(setup.root, argv=argv)


def results(setup, name='lan_toy', file='per_step.csv'):
    path = osp.join(setup.root, 'results', name, file)
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def read(setup, name='lan_toy', file='per_step.csv'):
    with open(osp.join(setup.root, 'results', name, file)) as f:
        return f.read()


def test_lan_run_writes_csvs_images_and_keeps_weights(setup):
    model = run(setup)
    rows = results(setup)
    assert list(rows[0]) == ['dataset', 'image', 'step', 'psnr', 'ssim', 'loss']
    assert len(rows) == NUM * (STEPS + 1)
    expected = [(f'img{i:03d}', s) for i in range(NUM) for s in range(STEPS + 1)]
    assert [(r['image'], int(r['step'])) for r in rows] == expected
    assert all(r['loss'] for r in rows if int(r['step']) < STEPS)
    assert all(r['loss'] == '' for r in rows if int(r['step']) == STEPS)
    assert all(float(r['psnr']) > 0 and 0 < float(r['ssim']) <= 1 for r in rows)
    summary = results(setup, file='summary.csv')
    assert [(r['dataset'], int(r['step']), int(r['images'])) for r in summary] == [('toy', 0, NUM), ('toy', STEPS, NUM)]
    last = [float(r['psnr']) for r in rows if int(r['step']) == STEPS]
    assert float(summary[1]['psnr']) == pytest.approx(sum(last) / NUM, abs=1e-6)
    assert model.metric_results['psnr'] == pytest.approx(sum(last) / NUM, abs=1e-6)
    for i in range(NUM):
        assert osp.isfile(osp.join(setup.root, 'results', 'lan_toy', 'visualization', 'toy', f'img{i:03d}.png'))
    # LAN: the network is bitwise the pretrained one and no weight gradient was ever computed
    net = model.get_bare_model(model.net_g)
    assert not net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, setup.state[key]), key
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())


@pytest.mark.parametrize('adapter,loss', [('LAN', 'ZSN2NLoss'), ('LAN', 'Nbr2NbrLoss'), ('FullTrainable', 'ZSN2NLoss')])
def test_step0_equals_plain_inference(setup, adapter, loss):
    plain = run(setup, 'model_type=DenoiseModel', name='plain')
    dataset = SimpleNamespace(dataset=_dataset(plain))
    plain_rows = plain.validation(dataset, current_iter='plain', tb_logger=None, save_img=False)
    # channels_last off: the network computes exactly as the plain forward does
    model = run(
        setup,
        f'adapt.type={adapter}',
        f'adapt.loss.type={loss}',
        'adapt.channels_last=False',
        name=f'{adapter}_{loss}')
    step0 = [r for r in results(setup, name=f'{adapter}_{loss}') if r['step'] == '0']
    assert [r['image'] for r in step0] == [r['image'] for r in plain_rows]
    for lan_row, plain_row in zip(step0, plain_rows):
        assert lan_row['psnr'] == format(plain_row['psnr'], '.6f')
        assert lan_row['ssim'] == format(plain_row['ssim'], '.6f')
    # in memory, unrounded: the output the loss computed scores as the no-grad plain forward (up to the float64
    # summation order of the on-device scoring)
    from torch.utils.data import default_collate
    result = model.adapt_one(default_collate([dataset.dataset[1]]), 1)
    assert result.psnr[0] == pytest.approx(plain_rows[1]['psnr'], abs=1e-9)
    assert result.ssim[0] == pytest.approx(plain_rows[1]['ssim'], abs=1e-12)


def _dataset(model):
    from basicsr.data import build_dataset
    opt = dict(model.opt['datasets']['test'])
    return build_dataset(opt)


def test_same_seed_gives_identical_csv(setup):
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', name='a')
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', name='b')
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', 'adapt.seed=7', name='c')
    assert read(setup, 'a') == read(setup, 'b')
    assert read(setup, 'a', file='summary.csv') == read(setup, 'b', file='summary.csv')
    losses = lambda name: [r['loss'] for r in results(setup, name) if r['step'] == '1']  # noqa: E731
    assert losses('a') != losses('c')  # the seed drives the Nbr2Nbr masks


def interrupt_at_third_image(monkeypatch):
    """Make LANModel.adapt_images raise KeyboardInterrupt at the third image; return the list of images it was called
    with (clear it to count again)."""
    calls = []
    original = LANModel.adapt_images

    def interrupted(self, items):
        calls.extend(image for _, _, image in items)
        if len(calls) == 3:
            raise KeyboardInterrupt('simulated interruption')
        return original(self, items)

    monkeypatch.setattr(LANModel, 'adapt_images', interrupted)
    return calls


def test_interrupted_run_resumes_to_the_same_csv(setup, monkeypatch):
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', name='full')
    calls = interrupt_at_third_image(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(setup, 'adapt.loss.type=Nbr2NbrLoss', name='cut')
    partial = read(setup, 'cut')
    assert partial.count('\n') == 1 + 2 * (STEPS + 1)  # header + two finished images
    with open(osp.join(setup.root, 'results', 'cut', 'per_step.csv'), 'a') as f:
        f.write('toy,img002,0,1.000000,0.100000,0.5\ntoy,img002,1,1.0')  # an image cut mid-write
    calls.clear()
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', name='cut')
    assert calls == ['img002', 'img003']  # done images are skipped, the cut one is redone
    assert read(setup, 'cut') == read(setup, 'full')
    assert read(setup, 'cut', file='summary.csv') == read(setup, 'full', file='summary.csv')
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', name='cut')  # nothing left: no image adapted, nothing duplicated
    assert calls == ['img002', 'img003'] and read(setup, 'cut') == read(setup, 'full')
    assert read(setup, 'cut', file='inputs.csv') == read(setup, 'full', file='inputs.csv')


def test_inputs_csv_scores_the_noisy_inputs(setup):
    """inputs.csv: one row per image, the noisy input scored against GT as the steps are (official scoring)."""
    from lan_basicsr.metrics import score_images
    model = run(setup)
    rows = results(setup, file='inputs.csv')
    assert list(rows[0]) == ['dataset', 'image', 'psnr', 'ssim']
    assert [r['image'] for r in rows] == [f'img{i:03d}' for i in range(NUM)]
    dataset = _dataset(model)
    for i, row in enumerate(rows):
        item = dataset[i]
        expected = score_images(item['lq'][None], item['gt'][None], model.metrics_opt)
        assert row['psnr'] == format(expected['psnr'], '.6f') and row['ssim'] == format(expected['ssim'], '.6f')
    assert {r['image'] for r in results(setup)} == {r['image'] for r in rows}


def test_ranks_write_separate_files_merged_like_one_process(setup, monkeypatch):
    """The torchrun file protocol, ranks run one after the other: rank 1 writes its part, rank 0 merges."""
    run(setup, name='single')
    monkeypatch.setattr('lan_basicsr.utils.options.get_dist_info', lambda: (1, 2))
    run(setup, name='two')
    folder = osp.join(setup.root, 'results', 'two')
    part = osp.join(folder, 'per_step.rank1.csv')
    assert not osp.isfile(osp.join(folder, 'per_step.csv'))
    with open(part) as f:
        assert sorted({r['image'] for r in csv.DictReader(f)}) == ['img001', 'img003']
    monkeypatch.setattr('lan_basicsr.utils.options.get_dist_info', lambda: (0, 2))
    run(setup, name='two')
    assert not osp.isfile(part)
    assert read(setup, 'two') == read(setup, 'single')
    assert read(setup, 'two', file='summary.csv') == read(setup, 'single', file='summary.csv')
    assert read(setup, 'two', file='inputs.csv') == read(setup, 'single', file='inputs.csv')
    assert not osp.isfile(osp.join(folder, 'inputs.rank1.csv'))


@pytest.mark.parametrize('batch', [1, 4])
def test_non_finite_loss_stops_that_image_only(setup, monkeypatch, caplog, batch):
    original = ZSN2NLoss.forward
    img001 = _dataset(run(setup, 'adapt.steps=0', name='data'))[1]['lq']

    def nan_for_img001_at_step_1(self, net, noisy, step=0, total_steps=20, generators=None):
        out = original(self, net, noisy, step, total_steps, generators)
        if step != 1:
            return out
        hit = torch.tensor([torch.allclose(y, img001, atol=0.01) for y in noisy])  # that image, alone or in a batch
        per_image = torch.where(hit, torch.nan, out.per_image)
        return out._replace(loss=per_image.mean(), per_image=per_image)

    monkeypatch.setattr(ZSN2NLoss, 'forward', nan_for_img001_at_step_1)
    logger = logging.getLogger('basicsr')
    logger.addHandler(caplog.handler)
    try:
        run(setup, f'adapt.batch_size={batch}')
    finally:
        logger.removeHandler(caplog.handler)
    assert any('img001: non-finite loss at step 1' in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    rows = [r for r in results(setup) if r['image'] == 'img001']
    assert [r['loss'] for r in rows][1:] == ['nan', '', '']
    assert rows[0]['loss'] not in ('', 'nan')
    assert rows[2]['psnr'] == rows[3]['psnr'] == rows[1]['psnr'] and rows[3]['ssim'] == rows[1]['ssim']
    others = [r for r in results(setup) if r['image'] != 'img001']
    assert len(others) == (NUM - 1) * (STEPS + 1) and all(r['loss'] != 'nan' for r in others)
    assert results(setup, file='summary.csv')[-1]['images'] == str(NUM)


def test_no_gt_adapts_and_saves(setup):
    run(setup, 'datasets.test.type=NoisyImageDataset', 'datasets.test.dataroot_gt=None', name='nogt')
    rows = results(setup, 'nogt')
    assert len(rows) == NUM * (STEPS + 1)
    assert all(r['psnr'] == '' and r['ssim'] == '' for r in rows)
    assert all(r['loss'] for r in rows if r['step'] != str(STEPS))
    summary = results(setup, 'nogt', file='summary.csv')
    assert summary[-1]['psnr'] == '' and summary[-1]['images'] == str(NUM)
    assert len(os.listdir(osp.join(setup.root, 'results', 'nogt', 'visualization', 'toy'))) == NUM
    assert not osp.isfile(osp.join(setup.root, 'results', 'nogt', 'inputs.csv'))  # nothing to score against


def test_cfg_options_switch_method_and_loss(setup):
    model = run(setup, 'adapt.type=FullTrainable', 'adapt.loss.type=Nbr2NbrLoss', name='full')
    assert type(model.adapter).__name__ == 'FullTrainable' and model.adapter.lr == 5e-6
    assert type(model.loss_fn).__name__ == 'Nbr2NbrLoss'
    net = model.get_bare_model(model.net_g)
    assert all(not torch.equal(v, setup.state[k]) for k, v in net.state_dict().items())  # every tensor moved
    model = run(setup, 'adapt.type=LastLayer', 'adapt.lr=0.001', name='last')
    assert model.adapter.layer == 'model.4' and model.adapter.lr == 1e-3
    net = model.get_bare_model(model.net_g)
    assert [k for k, v in net.state_dict().items()
            if not torch.equal(v, setup.state[k])] == ['model.4.weight', 'model.4.bias']
    model = run(setup, 'adapt.type=FirstLayer', 'adapt.layer=model.2', name='named')
    net = model.get_bare_model(model.net_g)
    assert [k for k, v in net.state_dict().items()
            if not torch.equal(v, setup.state[k])] == ['model.2.weight', 'model.2.bias']
    # the same name with other settings is refused, naming what differs
    with pytest.raises(OptionError, match='adapt.type'):
        run(setup, 'adapt.type=LAN', name='full')


@pytest.mark.parametrize('adapter,loss', [('LAN', 'ZSN2NLoss'), ('FullTrainable', 'Nbr2NbrLoss')])
def test_tiled_run_equals_whole_image_run(setup, adapter, loss):
    """adapt.tile through tools/test.py: tiles of 8 px on 16x24 images, pad from the receptive field (3 -> 8)."""
    cfg = (f'adapt.type={adapter}', f'adapt.loss.type={loss}', 'adapt.lr=0.001')
    run(setup, *cfg, name='whole')
    model = run(setup, *cfg, 'adapt.tile.size=8', name='tiled')
    assert type(model.net).__name__ == 'TiledNetwork' and (model.net.size, model.net.pad) == (8, 8)
    whole, tiled = results(setup, 'whole'), results(setup, 'tiled')
    assert [(r['image'], r['step']) for r in whole] == [(r['image'], r['step']) for r in tiled]
    assert max(abs(float(a['psnr']) - float(b['psnr'])) for a, b in zip(whole, tiled)) < 1e-4
    assert max(abs(float(a['psnr']) - float(b['psnr'])) for a, b in zip(whole, whole[1:])) > 1e-3  # it adapted
    with open(osp.join(setup.root, 'results', 'tiled', 'adapt_run.json')) as f:
        # as given (checked before the network is built): no pad = the automatic one, a function of the network
        assert json.load(f)['adapt']['tile'] == {'size': 8}
    with pytest.raises(OptionError, match='adapt.tile'):  # a tiled run never continues an untiled one's results
        run(setup, *cfg, 'adapt.tile.size=8', name='whole')
    with pytest.raises(OptionError, match='adapt.tile'):  # nor one with other tiles
        run(setup, *cfg, 'adapt.tile.size=8', 'adapt.tile.pad=16', name='tiled')


def test_two_datasets_in_one_run_and_its_rerun(setup):
    """Each dataset records its image list when it starts; the second one is not refused for having none before."""
    datasets = [
        'datasets._delete_=true', 'datasets.test_1.name=first', 'datasets.test_1.type=PairedNoisyDataset',
        f'datasets.test_1.dataroot_lq={setup.pairs}/lq', f'datasets.test_1.dataroot_gt={setup.pairs}/gt',
        'datasets.test_2.name=second', 'datasets.test_2.type=PairedNoisyDataset',
        f'datasets.test_2.dataroot_lq={setup.pairs}/lq', f'datasets.test_2.dataroot_gt={setup.pairs}/gt'
    ]
    run(setup, *datasets, name='two')
    first = read(setup, name='two')
    rows = results(setup, name='two', file='summary.csv')
    assert [(r['dataset'], r['images']) for r in rows if r['step'] == str(STEPS)] == [('first', '4'), ('second', '4')]
    run(setup, *datasets, name='two')  # nothing left to do, nothing refused
    assert read(setup, name='two') == first


def test_save_offset(setup):
    model = run(setup, 'adapt.save_offset=True', name='offsets')
    folder = osp.join(setup.root, 'results', 'offsets', 'offsets', 'toy')
    phi = np.load(osp.join(folder, 'img003_phi.npy'))
    adapted = np.load(osp.join(folder, 'img003_input.npy'))
    lq = _dataset(model)[3]['lq'].numpy()
    assert phi.shape == adapted.shape == lq.shape and np.abs(phi).max() > 0
    np.testing.assert_allclose(adapted, lq + np.tanh(phi), atol=1e-6)


def test_save_compare_and_report_section(setup):
    """save_compare: noisy, GT and the step-0 output of the reset network (= a steps-0 run's output) as PNG."""
    import cv2
    report = {'label': 'FT', 'train_noise': {'type': 'GaussianNoise', 'sigma': 25}}
    run(setup,
        'adapt.type=FullTrainable',
        'adapt.lr=0.01',
        'adapt.save_compare=True',
        'report.label=FT',
        'report.train_noise.type=GaussianNoise',
        'report.train_noise.sigma=25',
        name='cmp')
    run(setup, 'adapt.steps=0', name='cmp0')
    folder = osp.join(setup.root, 'results', 'cmp')
    for i in range(NUM):
        saved = {
            k: cv2.imread(osp.join(folder, 'compare', 'toy', f'img{i:03d}_{k}.png'))
            for k in ('noisy', 'gt', 'step0')
        }
        np.testing.assert_array_equal(saved['noisy'], cv2.imread(osp.join(setup.pairs, 'lq', f'img{i:03d}.png')))
        np.testing.assert_array_equal(saved['gt'], cv2.imread(osp.join(setup.pairs, 'gt', f'img{i:03d}.png')))
        pretrained = cv2.imread(osp.join(setup.root, 'results', 'cmp0', 'visualization', 'toy', f'img{i:03d}.png'))
        adapted = cv2.imread(osp.join(folder, 'visualization', 'toy', f'img{i:03d}.png'))
        np.testing.assert_array_equal(saved['step0'], pretrained)  # the weights were reset, not left adapted
        assert np.abs(adapted.astype(int) - pretrained).max() > 0
    with open(osp.join(folder, 'report.json')) as f:
        assert yaml.safe_load(f) == report
    assert not osp.exists(osp.join(setup.root, 'results', 'cmp0', 'compare'))
    with pytest.raises(OptionError, match='report.train_noise.type: unknown type "Gauss"'):
        run(setup, 'report.train_noise.type=Gauss', name='bad')
    with pytest.raises(OptionError, match='report.train_noise: .*photons'):
        run(setup, 'report.train_noise.type=PoissonGaussianNoise', name='bad')
    with pytest.raises(OptionError, match='report.colour: unknown key'):
        run(setup, 'report.colour=red', name='bad')


@pytest.mark.parametrize('arch', ['dncnn', 'uformer', 'restormer'])
@pytest.mark.parametrize('dataset', ['polyu', 'nam'])
def test_option_files(arch, dataset):
    """Every options/lan_*.yml inherits the base, names its arch and data, and switches method/loss by overrides."""
    from lan_basicsr.models.lan_model import build_adapter
    from lan_basicsr.utils.options import load_config, merge_cfg_options
    path = osp.join(ROOT, 'options', f'lan_{arch}_{dataset}.yml')
    with open(path) as f:
        assert f.readline().strip() == f'# python tools/test.py -opt options/lan_{arch}_{dataset}.yml'
    opt = load_config(path)
    assert opt['model_type'] == 'LANModel' and 'name' not in opt  # name: the file stem
    assert opt['network_g']['type'].lower() == arch
    assert opt['datasets']['test']['crop'] == {'size': 256, 'position': 'top_left'}
    assert opt['datasets']['test']['dataroot_lq'] == f'datasets/{"PolyU" if dataset == "polyu" else "Nam"}/lq'
    assert opt['adapt']['type'] == 'LAN' and opt['adapt']['lr'] is None and opt['adapt']['steps'] == 20
    assert opt['val']['metrics']['psnr']['crop_border'] == 0
    switched = merge_cfg_options(opt, {'adapt.type': 'FullTrainable', 'adapt.loss.type': 'Nbr2NbrLoss'})
    assert switched['adapt']['loss'] == {'type': 'Nbr2NbrLoss'} and switched['adapt']['type'] == 'FullTrainable'
    net = DnCNN(3, 3, 4, 3, 'R')
    for adapter, lr in (('LAN', 5e-4), ('FullTrainable', 5e-6), ('FirstLayer', 5e-6), ('LastLayer', 5e-6)):
        assert build_adapter(net, {**switched['adapt'], 'type': adapter}).lr == lr  # lr null = adapter default


def test_two_datasets_in_one_run(setup, tmp_path):
    """The second dataset of a run is checked against its own image list, not against the first dataset's entry."""
    other = make_paired_folder(str(tmp_path / 'other'), num=2, size=(16, 24), seed=3)
    run(setup,
        'datasets.test_2.name=toy2',
        'datasets.test_2.type=PairedNoisyDataset',
        f'datasets.test_2.dataroot_lq={other}/lq',
        f'datasets.test_2.dataroot_gt={other}/gt',
        name='two')
    rows = results(setup, 'two')
    assert [(d, len([r for r in rows if r['dataset'] == d])) for d in ('toy', 'toy2')] == [('toy', NUM * (STEPS + 1)),
                                                                                           ('toy2', 2 * (STEPS + 1))]
    run(setup,
        'datasets.test_2.name=toy2',
        'datasets.test_2.type=PairedNoisyDataset',
        f'datasets.test_2.dataroot_lq={other}/lq',
        f'datasets.test_2.dataroot_gt={other}/gt',
        name='two')  # resumes
    assert results(setup, 'two') == rows


def _per_step(setup, name):
    return {(r['image'], r['step']): r for r in results(setup, name)}


def _assert_close_rows(setup, a, b):
    """Same images and steps; every score within 1e-4 dB / 1e-6 SSIM (plus the CSV's 6-decimal rounding)."""
    rows_a, rows_b = _per_step(setup, a), _per_step(setup, b)
    assert list(rows_a) == list(rows_b)
    for key, row in rows_a.items():
        other = rows_b[key]
        assert abs(float(row['psnr']) - float(other['psnr'])) <= 1e-4 + 1e-6, key
        assert abs(float(row['ssim']) - float(other['ssim'])) <= 1e-6 + 1e-6, key
        assert (row['loss'] == '') == (other['loss'] == '')
        if row['loss']:
            assert float(row['loss']) == pytest.approx(float(other['loss']), rel=1e-5), key


@pytest.mark.parametrize('adapter', ['LAN', 'FullTrainable'])
@pytest.mark.parametrize('loss', ['ZSN2NLoss', 'Nbr2NbrLoss'])
def test_batch_of_four_gives_the_per_step_csv_of_one_at_a_time(setup, monkeypatch, adapter, loss):
    batches = []
    original = LANModel.adapt_images
    monkeypatch.setattr(LANModel, 'adapt_images',
                        lambda self, items: batches.append(len(items)) or original(self, items))
    run(setup, f'adapt.type={adapter}', f'adapt.loss.type={loss}', name='one')
    run(setup, f'adapt.type={adapter}', f'adapt.loss.type={loss}', 'adapt.batch_size=4', name='four')
    assert batches == [1, 1, 1, 1, 4]
    _assert_close_rows(setup, 'one', 'four')
    assert read(setup, 'one', file='inputs.csv') == read(setup, 'four', file='inputs.csv')
    summary = [results(setup, n, file='summary.csv') for n in ('one', 'four')]
    assert [float(r['psnr']) for r in summary[0]] == pytest.approx([float(r['psnr']) for r in summary[1]], abs=1e-4)


def test_interrupted_batched_run_resumes_to_the_same_file(setup, monkeypatch):
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', 'adapt.batch_size=3', name='whole')
    from lan_basicsr.models.step_store import StepStore
    appended, batches = [], []
    append, adapt = StepStore.append, LANModel.adapt_images

    def cut_after_one(self, text, input_text=None):
        if len(appended) == 1:
            raise KeyboardInterrupt('simulated interruption')
        appended.append(text)
        return append(self, text, input_text)

    monkeypatch.setattr(StepStore, 'append', cut_after_one)
    monkeypatch.setattr(LANModel, 'adapt_images',
                        lambda self, items: batches.append([i for _, _, i in items]) or adapt(self, items))
    with pytest.raises(KeyboardInterrupt):
        run(setup, 'adapt.loss.type=Nbr2NbrLoss', 'adapt.batch_size=3', name='cut')
    assert read(setup, 'cut').count('\n') == 1 + (STEPS + 1)  # header + img000: the first batch is partly written
    monkeypatch.setattr(StepStore, 'append', append)
    batches.clear()
    run(setup, 'adapt.loss.type=Nbr2NbrLoss', 'adapt.batch_size=3', name='cut')
    assert batches == [['img000', 'img001', 'img002'], ['img003']]  # the same batches again, img000 not rewritten
    assert read(setup, 'cut') == read(setup, 'whole')
    assert read(setup, 'cut', file='inputs.csv') == read(setup, 'whole', file='inputs.csv')
    assert read(setup, 'cut', file='summary.csv') == read(setup, 'whole', file='summary.csv')


def test_batches_split_where_the_image_size_changes(setup, monkeypatch, tmp_path):
    import shutil
    other = make_paired_folder(str(tmp_path / 'other'), num=3, size=(12, 20), seed=1)
    for side in ('lq', 'gt'):
        for i in range(3):
            shutil.copy(osp.join(other, side, f'img{i:03d}.png'), osp.join(setup.pairs, side, f'img{i:03d}b.png'))
    batches = []
    original = LANModel.adapt_images
    monkeypatch.setattr(LANModel, 'adapt_images',
                        lambda self, items: batches.append([i for _, _, i in items]) or original(self, items))
    run(setup, 'adapt.batch_size=2', name='mixed2')
    # sorted names: img000 img000b img001 img001b img002 img002b img003 (16x24 and 12x20 alternate)
    assert all(len(b) == 1 for b in batches)
    batches.clear()
    crop = ('datasets.test.crop.size=12', 'datasets.test.crop.position=top_left')
    run(setup, 'adapt.batch_size=2', *crop, name='cropped')
    assert batches == [['img000', 'img000b'], ['img001', 'img001b'], ['img002', 'img002b'], ['img003']]
    run(setup, *crop, name='cropped_one')
    _assert_close_rows(setup, 'cropped', 'cropped_one')


def test_no_host_sync_inside_a_step(setup, monkeypatch):
    """The unchecked steps never read a tensor back (CPU stand-in for CUDA's sync debug mode: calls are spied)."""
    from torch.overrides import TorchFunctionMode

    import lan_basicsr.models.lan_model as lan_model
    from lan_basicsr.metrics.tensor_metrics import TensorScorer
    reads = {'item', '__float__', '__int__', '__bool__', '__index__', 'tolist', 'numpy', 'cpu'}
    seen = []

    class Spy(TorchFunctionMode):

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, '__name__', '')
            if name in reads and not any('torch/optim' in f.filename for f in inspect.stack()[1:6]):
                seen.append(name)  # the optimisers read their CPU step counter (no device sync on CUDA)
            return func(*args, **(kwargs or {}))

    original = lan_model._run_steps

    def spied(*args, **kwargs):
        checked = args[8] if len(args) > 8 else kwargs['checked']
        if checked:
            return original(*args, **kwargs)
        with Spy():
            return original(*args, **kwargs)

    monkeypatch.setattr(lan_model, '_run_steps', spied)
    monkeypatch.setattr(TensorScorer, 'opencv_on_cpu', False)  # the device code path (OpenCV reads numpy)
    for adapter, loss, batch in (('LAN', 'Nbr2NbrLoss', 1), ('FullTrainable', 'ZSN2NLoss', 2)):
        run(setup,
            f'adapt.type={adapter}',
            f'adapt.loss.type={loss}',
            f'adapt.batch_size={batch}',
            name=f'sync_{adapter}')
    assert seen == []
    assert len(results(setup, 'sync_LAN')) == NUM * (STEPS + 1)


@pytest.mark.parametrize('cfg,match', [
    (['adapt.batch_size=0'], 'adapt.batch_size: 0 is out of range; expected an integer >= 1'),
    (['adapt.amp=fp16'], "adapt.amp: 'fp16' is not one of bf16"),
    (['adapt.compile=yes'], 'adapt.compile: expected true or false'),
    (['adapt.channels_last=1'], 'adapt.channels_last: expected true or false'),
    (['adapt.batch_size=2', 'adapt.optim.type=Adafactor'], 'Adafactor may couple the elements'),
    (['adapt.batch_size=2', 'adapt.type=FullTrainable', 'adapt.compile=True'], 'per-image weights'),
    (['adapt.tile.size=8', 'adapt.batch_size=2'], r'adapt.batch_size: not available with adapt.tile .* set '
     r'adapt.batch_size: 1 or remove adapt.tile'),
    (['adapt.tile.size=8', 'adapt.amp=bf16'], 'adapt.amp: not available with adapt.tile'),
    (['adapt.tile.size=8', 'adapt.compile=True'], 'adapt.compile: not available with adapt.tile'),
    (['adapt.tile.size=0'], 'adapt.tile.size: 0 is out of range'),
    (['adapt.tile.size=8', 'adapt.tile.overlap=2'], 'adapt.tile.overlap: unknown key .* it takes: size, pad'),
])
def test_batch_and_speed_options_are_checked(setup, cfg, match):
    with pytest.raises(OptionError, match=match):
        run(setup, *cfg, name='bad')


def test_bf16_mode_autocasts_the_network_only(setup):
    from lan_basicsr.models.lan_model import SpeedModes, adapt_image, build_adapter
    torch.manual_seed(0)
    net = DnCNN(**{k: v for k, v in NET.items() if k != 'type'}).eval()
    lq = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    seen = []
    net.model[0].register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    default = adapt_image(net, build_adapter(net, {'type': 'LAN'}), ZSN2NLoss(), lq, lq, 3)
    seen.clear()
    bf16 = adapt_image(net, build_adapter(net, {'type': 'LAN'}), ZSN2NLoss(), lq, lq, 3, speed=SpeedModes(amp='bf16'))
    assert {out for _, out in seen} == {torch.bfloat16}  # the network's convolutions ran in bfloat16 ...
    assert bf16.output.dtype == bf16.offset.dtype == torch.float32  # ... phi and what leaves the network: float32
    assert bf16.psnr != default.psnr and bf16.psnr == pytest.approx(default.psnr, abs=0.1)


def test_compile_mode_compiles_the_network_once(setup, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, 'compile', lambda module, **kwargs: calls.append(kwargs) or module)
    run(setup, 'adapt.compile=True', name='compiled')
    assert calls == [{'dynamic': False}]
    assert len(results(setup, 'compiled')) == NUM * (STEPS + 1)


def test_other_metrics_are_scored_by_basicsr_off_the_device():
    """val.metrics that the on-device scorer does not compute (here PSNR on Y) go to BasicSR's numpy metrics."""
    import math

    from lan_basicsr.metrics import score_images
    from lan_basicsr.models.lan_model import adapt_batch, build_adapter
    torch.manual_seed(0)
    net = DnCNN(**{k: v for k, v in NET.items() if k != 'type'}).eval()
    lq = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    gt = lq.clamp(0.1, 0.9)
    metrics = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': True}}
    results = adapt_batch(net, build_adapter(net, {'type': 'LAN'}), ZSN2NLoss(), lq, gt, 2, metrics_opt=metrics)
    with torch.no_grad():
        step0 = net(lq)  # phi = 0: y + tanh(0) = y
    for i, result in enumerate(results):
        assert result.psnr[0] == score_images(step0[i:i + 1], gt[i:i + 1], metrics)['psnr']
        assert result.psnr[2] == score_images(result.output, gt[i:i + 1], metrics)['psnr']
        assert all(math.isnan(v) for v in result.ssim) and len(result.psnr) == 3
