"""Scoring as the official LAN evaluation does: clip to [0, 1], x255, float (no uint8 rounding), RGB, no crop.

BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (registered in METRIC_REGISTRY) compute exactly the official
formulas on float arrays; we only convert tensors without the rounding that ``tensor2img`` would add. Scores are
taken on the channels the network produced: the three RGB channels, or the one channel of a grey network (H x W x 1
arrays: PSNR over its pixels, SSIM of that channel; ``test_y_channel`` leaves a grey image as it is).
"""
from copy import deepcopy

import numpy as np
from basicsr.metrics import calculate_metric

from lan_basicsr.utils.errors import DataError

__all__ = ['to_float_image', 'score_images']


def to_float_image(tensor):
    """(1, C, H, W) or (C, H, W) tensor in [0, 1] -> float64 HWC array in [0, 255], clipped, unrounded."""
    if tensor.dim() == 4:
        if tensor.size(0) != 1:
            raise ValueError(f'to_float_image expects one image, got a batch of {tensor.size(0)}')
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).cpu().numpy().astype(np.float64) * 255.
    return array.transpose(1, 2, 0)


def score_images(pred, gt, metrics_opt):
    """Return ``{name: value}`` for each entry of ``val.metrics`` (``{name: {type: calculate_psnr, ...}}``).

    ``crop_border`` defaults to 0 (the official evaluation crops nothing).
    """
    pred_img, gt_img = to_float_image(pred), to_float_image(gt)
    if pred_img.shape != gt_img.shape:
        raise DataError(f'cannot score a {"x".join(map(str, pred_img.shape))} (HxWxC) prediction against a '
                        f'{"x".join(map(str, gt_img.shape))} ground truth: the network must return the size and '
                        'channels of its input')
    results = {}
    for name, opt in metrics_opt.items():
        opt = deepcopy(opt)
        opt.setdefault('crop_border', 0)
        results[name] = float(calculate_metric(dict(img=pred_img, img2=gt_img), opt))
    return results
