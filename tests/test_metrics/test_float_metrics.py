"""The official float scoring on the channels the network produced: three RGB channels or one grey channel."""
import math

import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_ssim

from lan_basicsr.metrics import score_images, to_float_image
from lan_basicsr.utils.errors import DataError

METRICS = {'psnr': {'type': 'calculate_psnr'}, 'ssim': {'type': 'calculate_ssim'}}


def test_grey_scores_are_the_formulas_on_one_channel():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 1, 24, 20, generator=g)
    pred = gt + 0.05 * torch.randn(gt.shape, generator=g)  # leaves [0, 1] in places: clipped before scoring
    scores = score_images(pred, gt, METRICS)
    p, t = to_float_image(pred), to_float_image(gt)
    assert p.shape == (24, 20, 1) and p.dtype == np.float64 and p.max() == 255.
    assert scores['psnr'] == pytest.approx(10 * math.log10(255.**2 / np.mean((p - t)**2)), rel=1e-12)
    assert scores['ssim'] == pytest.approx(calculate_ssim(p[..., 0], t[..., 0], crop_border=0), rel=1e-12)
    # a colour image made of three copies of the grey one scores exactly the same (means over identical channels)
    colour = score_images(pred.expand(-1, 3, -1, -1), gt.expand(-1, 3, -1, -1), METRICS)
    assert colour['psnr'] == pytest.approx(scores['psnr'], rel=1e-12)
    assert colour['ssim'] == pytest.approx(scores['ssim'], rel=1e-12)


def test_channel_mismatch_is_a_data_error():
    with pytest.raises(DataError, match=r'cannot score a 8x8x1 \(HxWxC\) prediction against a 8x8x3 ground truth'):
        score_images(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8), METRICS)
