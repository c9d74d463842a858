"""TensorScorer: BasicSR's float PSNR/SSIM (the official scoring) computed in float64 torch, batched, on the device."""
import math

import pytest
import torch

from lan_basicsr.metrics import TensorScorer, score_images, tensor_scoring_supported

METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}, 'ssim': {'type': 'calculate_ssim', 'crop_border': 0}}


def _pair(shape, seed=0):
    """Predictions that leave [0, 1] (the clip matters) and their ground truths."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(shape, generator=g)
    return gt + 0.08 * torch.randn(shape, generator=g), gt


@pytest.mark.parametrize('shape,crop', [((3, 3, 16, 24), 0), ((2, 3, 40, 33), 4), ((1, 1, 20, 21), 0)])
def test_equals_basicsr_per_image(shape, crop):
    pred, gt = _pair(shape)
    metrics = {k: dict(v, crop_border=crop) for k, v in METRICS.items()}
    scores = TensorScorer(gt, metrics)(pred)
    assert scores['psnr'].dtype == torch.float64 and scores['psnr'].shape == (shape[0], )
    for i in range(shape[0]):
        ref = score_images(pred[i:i + 1], gt[i:i + 1], metrics)
        assert abs(scores['psnr'][i].item() - ref['psnr']) < 1e-9
        assert abs(scores['ssim'][i].item() - ref['ssim']) < 1e-12


def test_channels_last_and_identical_images():
    pred, gt = _pair((2, 3, 24, 24), seed=1)
    scorer = TensorScorer(gt, METRICS)
    plain = scorer(pred)
    strided = scorer(pred.contiguous(memory_format=torch.channels_last))
    assert torch.equal(plain['psnr'], strided['psnr']) and torch.equal(plain['ssim'], strided['ssim'])
    same = scorer(gt)
    assert same['psnr'].tolist() == [math.inf, math.inf] and same['ssim'].tolist() == pytest.approx([1.0, 1.0])


def test_smaller_than_the_window_gives_nan_ssim_like_basicsr():
    pred, gt = _pair((1, 3, 8, 10))
    scores = TensorScorer(gt, METRICS)(pred)
    with pytest.warns(RuntimeWarning):  # numpy: mean of an empty slice
        ref = score_images(pred, gt, METRICS)
    assert math.isnan(scores['ssim'].item()) and math.isnan(ref['ssim'])
    assert abs(scores['psnr'].item() - ref['psnr']) < 1e-9


def test_supported_metrics():
    assert tensor_scoring_supported(METRICS)
    assert tensor_scoring_supported({'psnr': {'type': 'calculate_psnr'}, 'niqe': {'type': 'calculate_niqe'}})
    assert not tensor_scoring_supported({'psnr': {'type': 'calculate_psnr', 'test_y_channel': True}})
    assert not tensor_scoring_supported({'ssim': {'type': 'calculate_ssim', 'input_order': 'CHW'}})
    assert not tensor_scoring_supported({'psnr': {'type': 'calculate_ssim'}})
    with pytest.raises(ValueError, match='unsupported'):
        TensorScorer(torch.zeros(1, 3, 16, 16), {'psnr': {'type': 'calculate_psnr', 'test_y_channel': True}})


@pytest.mark.cuda
def test_on_cuda_equals_cpu_scoring():
    pred, gt = _pair((4, 3, 64, 48), seed=2)
    cpu = TensorScorer(gt, METRICS)(pred)
    gpu = TensorScorer(gt.to('cuda'), METRICS)(pred.to('cuda'))
    assert gpu['psnr'].device.type == 'cuda'
    torch.testing.assert_close(gpu['psnr'].cpu(), cpu['psnr'], rtol=0, atol=1e-9)
    torch.testing.assert_close(gpu['ssim'].cpu(), cpu['ssim'], rtol=0, atol=1e-12)
