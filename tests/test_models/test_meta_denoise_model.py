"""MetaDenoiseModel: meta-training speeds up self-supervised adaptation, meta-gradients are right, DDP averages them."""
import os
import re
import subprocess
import sys
from os import path as osp

import pytest
import torch
import yaml
from basicsr.models import build_model
from torch.func import functional_call

from lan_basicsr.adapters.weight_adapter import FullTrainable
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
from lan_basicsr.models.meta_denoise_model import adapt_parameters, build_inner_optimizer
from lan_basicsr.utils.errors import OptionError
from tests.conftest import make_paired_folder

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _opt(meta, nc=8, act_mode='R', lr=2e-3):
    return dict(
        name='meta_test',
        model_type='MetaDenoiseModel',
        num_gpu=0,
        is_train=True,
        dist=False,
        rank=0,
        world_size=1,
        path={},
        network_g=dict(type='DnCNN', in_nc=3, out_nc=3, nc=nc, nb=3, act_mode=act_mode),
        train=dict(optim_g=dict(type='Adam', lr=lr)),
        meta=meta)


def _pairs(num, size, seed, sigma=0.1):
    """Smooth random colour images (upsampled 4x4 noise) and their Gaussian-noisy versions."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(num, 3, 4, 4, generator=g) * 0.8 + 0.1
    clean = torch.nn.functional.interpolate(clean, size=size, mode='bilinear', align_corners=False)
    return clean + sigma * torch.randn(clean.shape, generator=g), clean


def _adapted_error(net, lq, gt, steps, lr):
    """Supervised MSE after ``steps`` test-time steps of ZS-N2N (the FullTrainable adapter, Adam), mean over images."""
    net.eval()
    adapter, loss_fn, errors = FullTrainable(net, lr=lr), ZSN2NLoss(), []
    for i in range(lq.shape[0]):
        optimizer = adapter.reset(lq[i:i + 1])
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(net, adapter.adapted_input(lq[i:i + 1])).loss.backward()
            optimizer.step()
        with torch.no_grad():
            errors.append(torch.mean((net(lq[i:i + 1]) - gt[i:i + 1])**2).item())
    return sum(errors) / len(errors)


def test_meta_training_improves_adaptation():
    torch.manual_seed(0)
    steps, lr = 3, 2e-3
    model = build_model(_opt({'inner_steps': steps, 'inner_lr': lr}, lr=5e-3))
    net = model.get_bare_model(model.net_g)
    init = DnCNN(3, 3, 8, 3, 'R')
    init.load_state_dict(net.state_dict())
    train_lq, train_gt = _pairs(32, (16, 16), seed=1)
    for it in range(40):
        batch = slice(4 * (it % 8), 4 * (it % 8) + 4)
        model.feed_data({'lq': train_lq[batch], 'gt': train_gt[batch]})
        model.optimize_parameters(it + 1)
    test_lq, test_gt = _pairs(4, (16, 16), seed=2)
    before = _adapted_error(init, test_lq, test_gt, steps, lr)
    after = _adapted_error(net, test_lq, test_gt, steps, lr)
    assert after < 0.7 * before, (before, after)  # 0.0065 vs 0.0128 when written


def test_inner_loop_is_the_test_time_adaptation():
    torch.manual_seed(0)
    net = DnCNN(3, 3, 4, 3, 'R')
    lq = torch.rand(1, 3, 8, 8)
    adapted, _ = adapt_parameters(net, dict(net.named_parameters()), lq, ZSN2NLoss(), 4, build_inner_optimizer(1e-3))
    adapter = FullTrainable(net, lr=1e-3)
    optimizer = adapter.reset(lq)
    for _ in range(4):
        optimizer.zero_grad()
        ZSN2NLoss()(net, adapter.adapted_input(lq)).loss.backward()
        optimizer.step()
    for name, p in net.named_parameters():
        torch.testing.assert_close(adapted[name], p.detach(), rtol=0, atol=1e-7)


@pytest.mark.parametrize('inner_optim,inner_lr', [({'type': 'SGD'}, 0.05), ({'type': 'Adam'}, 1e-3)])
def test_meta_gradients_first_vs_second_order_and_finite_differences(inner_optim, inner_lr):
    torch.manual_seed(0)
    meta = {'inner_steps': 2, 'inner_lr': inner_lr, 'inner_optim': inner_optim}
    model = build_model(_opt(meta, nc=4, act_mode='L'))
    net = model.get_bare_model(model.net_g).double().eval()
    lq, gt = (t.double() for t in _pairs(2, (8, 8), seed=3, sigma=0.2))
    model.first_order = True
    first, _ = model.meta_gradients(lq, gt)
    model.first_order = False
    second, _ = model.meta_gradients(lq, gt)
    first, second_flat = torch.cat([g.flatten() for g in first]), torch.cat([g.flatten() for g in second])
    assert torch.nn.functional.cosine_similarity(first, second_flat, dim=0) > 0.5
    assert not torch.allclose(first, second_flat)  # second order is not silently first order

    def outer_loss():
        total = 0.
        for i in range(2):
            adapted, _ = adapt_parameters(net, dict(net.named_parameters()), lq[i:i + 1], model.inner_loss, 2,
                                          model.inner_opt)
            with torch.no_grad():
                total += model.cri_pix(functional_call(net, adapted, (lq[i:i + 1], )), gt[i:i + 1]).item() / 2
        return total

    params = dict(net.named_parameters())
    names = list(params)
    eps = 1e-6
    for name, index in (('model.0.weight', (1, 2, 0, 1)), ('model.2.bias', (3, )), ('model.4.weight', (0, 1, 2, 2))):
        param, value = params[name], params[name][index].item()
        values = []
        for shifted in (value + eps, value - eps):
            with torch.no_grad():
                param[index] = shifted
            values.append(outer_loss())
        with torch.no_grad():
            param[index] = value
        plus, minus = values
        numeric = (plus - minus) / (2 * eps)
        analytic = second[names.index(name)][index].item()
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9), name


def test_torchrun_averages_meta_gradients(tmp_path):
    """Two processes with 2 patches each end with the weights of one process with the same 4 patches per step."""
    from lan_basicsr.train import train_pipeline
    data = make_paired_folder(str(tmp_path / 'pairs'), num=8, size=(16, 16))
    opt = _opt({'inner_steps': 2, 'inner_lr': 1e-3}, nc=4)
    for key in ('name', 'is_train', 'dist', 'rank', 'world_size', 'path'):
        opt.pop(key)
    torch.manual_seed(0)
    init = DnCNN(3, 3, 4, 3, 'R').state_dict()
    torch.save({'params': init}, tmp_path / 'init.pth')
    opt.update(
        manual_seed=0,
        logger=dict(print_freq=1, save_checkpoint_freq=100),
        path=dict(pretrain_network_g=str(tmp_path / 'init.pth')))
    opt['train']['total_iter'] = 2
    opt['datasets'] = dict(
        train=dict(
            type='PairedNoisyDataset',
            dataroot_lq=f'{data}/lq',
            dataroot_gt=f'{data}/gt',
            gt_size=16,
            use_hflip=False,
            use_rot=False,
            num_worker_per_gpu=0,
            batch_size_per_gpu=4))
    single_opt, dist_opt = tmp_path / 'single.yml', tmp_path / 'dist.yml'
    single_opt.write_text(yaml.safe_dump(opt))
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    dist_opt.write_text(yaml.safe_dump(opt))

    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': ROOT}
    worker = osp.join(ROOT, 'tests', 'helpers', 'ddp_worker.py')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', worker, 'train']
    cmd += [str(tmp_path / 'dist'), str(tmp_path), '-opt', str(dist_opt), '--launcher', 'pytorch']
    os.makedirs(tmp_path / 'dist')
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    model = train_pipeline(str(tmp_path / 'single'), argv=['-opt', str(single_opt)])
    single = model.get_bare_model(model.net_g).state_dict()
    for rank in range(2):
        weights = torch.load(tmp_path / f'weights_rank{rank}.pth', weights_only=True)
        for key, value in single.items():
            torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-5)
    assert all(not torch.equal(init[k], v) for k, v in single.items())  # the meta-gradients moved every weight


_TINY_RESTORMER = dict(type='Restormer', dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1])


@pytest.mark.parametrize('change,message', [
    (dict(meta=dict(inner_step=3)), 'meta: unknown key(s) inner_step'),
    (dict(meta=dict(inner_optim=dict(type='RMSprop'))), 'meta.inner_optim.type: "RMSprop"'),
    (dict(meta=dict(inner_loss=dict(type='ZSN2N'))), 'meta.inner_loss: unknown type "ZSN2N"'),
    (dict(train=dict(optim_g=dict(type='Adam', lr=1e-3), mixup=dict(beta=1.2))), 'train.mixup'),
    (dict(network_g=dict(_TINY_RESTORMER, use_checkpoint=True)), 'network_g.use_checkpoint'),
])
def test_option_errors(change, message):
    opt = {**_opt({}), **change}
    with pytest.raises(OptionError, match=re.escape(message)):
        build_model(opt)
