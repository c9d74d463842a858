"""The adaptation loop on a CUDA device: the same numbers as on the CPU, and no host synchronisation inside a step.

Every test here is marked ``cuda``: skipped without a GPU (CI), run by ``benchmarks/gpu_check.sh``. TF32 is turned
off where GPU and CPU numbers are compared (it is on by default for cuDNN convolutions and changes the last digits:
``benchmarks/device_agreement.py`` measures by how much).
"""
import pytest
import torch
from conftest import tiny_dncnn

import lan_basicsr.models.lan_model as lan_model
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.losses import Nbr2NbrLoss, ZSN2NLoss
from lan_basicsr.models.lan_model import SpeedModes, adapt_batch, build_adapter

pytestmark = pytest.mark.cuda
LOSSES = {'ZSN2NLoss': ZSN2NLoss, 'Nbr2NbrLoss': Nbr2NbrLoss}


@pytest.fixture
def no_tf32():
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _net(device):
    torch.manual_seed(0)
    opt = tiny_dncnn()
    opt.pop('type')
    return DnCNN(**opt).to(device).eval()


def _images(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 3, 24, 32, generator=g)
    return (gt + 0.1 * torch.randn(gt.shape, generator=g)), gt


def _adapt(device, adapter_type, loss, batch, speed=None):
    net = _net(device)
    speed = speed or SpeedModes()
    speed.prepare(net)
    adapter = build_adapter(net, {'type': adapter_type, 'lr': 1e-3 if adapter_type == 'LAN' else 1e-4})
    lq, gt = (t.to(device) for t in _images(batch))
    generators = [torch.Generator().manual_seed(7 + i) for i in range(batch)]  # CPU draws: the same masks on both
    return adapt_batch(net, adapter, LOSSES[loss](), lq, gt, 5, generators, speed=speed)


@pytest.mark.parametrize('adapter_type', ['LAN', 'FullTrainable'])
@pytest.mark.parametrize('loss', ['ZSN2NLoss', 'Nbr2NbrLoss'])
@pytest.mark.parametrize('batch', [1, 2])
def test_gpu_steps_equal_cpu_steps(no_tf32, adapter_type, loss, batch):
    cpu = _adapt('cpu', adapter_type, loss, batch)
    gpu = _adapt('cuda', adapter_type, loss, batch)
    for c, g in zip(cpu, gpu):
        assert g.output.device.type == 'cuda'
        assert g.psnr == pytest.approx(c.psnr, abs=1e-4) and g.ssim == pytest.approx(c.ssim, abs=1e-6)
        assert g.loss == pytest.approx(c.loss, rel=1e-4)


@pytest.mark.parametrize('adapter_type,loss,batch', [('LAN', 'Nbr2NbrLoss', 2), ('FullTrainable', 'ZSN2NLoss', 1),
                                                     ('FullTrainable', 'Nbr2NbrLoss', 2), ('LAN', 'ZSN2NLoss', 1)])
def test_no_host_sync_inside_a_step(monkeypatch, adapter_type, loss, batch):
    """CUDA's sync debug mode turns every synchronising call during the unchecked steps into an error."""
    original = lan_model._run_steps

    def strict(*args, **kwargs):
        checked = args[8] if len(args) > 8 else kwargs['checked']
        if checked:
            return original(*args, **kwargs)
        torch.cuda.set_sync_debug_mode('error')
        try:
            return original(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode('default')

    _adapt('cuda', adapter_type, loss, batch)  # warm-up: lazy CUDA initialisation may synchronise once
    monkeypatch.setattr(lan_model, '_run_steps', strict)
    results = _adapt('cuda', adapter_type, loss, batch)
    assert len(results) == batch and all(r.stopped_at is None and len(r.psnr) == 6 for r in results)


def test_non_finite_image_is_replayed_on_gpu(monkeypatch):
    original = ZSN2NLoss.forward

    def nan_for_the_second_image(self, net, noisy, step=0, total_steps=20, generators=None):
        out = original(self, net, noisy, step, total_steps, generators)
        if step != 2:
            return out
        per_image = out.per_image.clone()
        per_image[-1] = torch.nan  # the batch's last image (alone when replayed: then the only one)
        return out._replace(loss=per_image.mean(), per_image=per_image)

    monkeypatch.setattr(ZSN2NLoss, 'forward', nan_for_the_second_image)
    first, second = _adapt('cuda', 'LAN', 'ZSN2NLoss', 2)
    assert first.stopped_at is None and second.stopped_at == 2
    assert second.psnr[3:] == [second.psnr[2]] * 3


@pytest.mark.parametrize('mode', [{'amp': 'bf16'}, {'amp': 'bf16', 'compile': True}])
def test_speed_modes_run_on_gpu_close_to_the_default_mode(mode):
    default = _adapt('cuda', 'LAN', 'Nbr2NbrLoss', 2)
    fast = _adapt('cuda', 'LAN', 'Nbr2NbrLoss', 2, SpeedModes(**mode))
    for d, f in zip(default, fast):
        assert f.output.dtype == torch.float32
        assert f.psnr == pytest.approx(d.psnr, abs=0.05)


def test_lan_model_pipeline_on_gpu_matches_cpu(tmp_path, no_tf32):
    """tools/test.py's pipeline with num_gpu 1 (batches of 2) gives the CPU run's per-step CSV."""
    import csv

    import yaml
    from conftest import ROOT, make_paired_folder, paired_datasets

    from lan_basicsr.test import test_pipeline
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=4, size=(16, 24))
    ckpt = str(tmp_path / 'net.pth')
    torch.save({'params': _net('cpu').state_dict()}, ckpt)
    opt = {
        '_base_': f'{ROOT}/options/_base_/lan_base.yml',
        'network_g': tiny_dncnn(),
        'path': {
            'pretrain_network_g': ckpt
        },
        'adapt': {
            'steps': 3,
            'batch_size': 2,
            'loss': {
                'type': 'Nbr2NbrLoss'
            }
        },
        'datasets': paired_datasets(pairs),
    }
    (tmp_path / 'o.yml').write_text(yaml.safe_dump(opt))
    rows = {}
    for name, gpus in (('gpu', 1), ('cpu', 0)):
        model = test_pipeline(
            str(tmp_path), argv=['-opt',
                                 str(tmp_path / 'o.yml'), '--cfg-options', f'name={name}', f'num_gpu={gpus}'])
        assert model.device.type == ('cuda' if gpus else 'cpu')
        with open(tmp_path / 'results' / name / 'per_step.csv') as f:
            rows[name] = list(csv.DictReader(f))
    assert [(r['image'], r['step']) for r in rows['gpu']] == [(r['image'], r['step']) for r in rows['cpu']]
    for g, c in zip(rows['gpu'], rows['cpu']):
        assert abs(float(g['psnr']) - float(c['psnr'])) <= 1e-4 + 1e-6
        assert abs(float(g['ssim']) - float(c['ssim'])) <= 2e-6
