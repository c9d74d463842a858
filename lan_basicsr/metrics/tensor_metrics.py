"""The official PSNR/SSIM (BasicSR ``calculate_psnr`` / ``calculate_ssim`` on float images) computed with torch in
float64 on the images' own device, for a batch at once, without a host round trip.

Same conversion as :func:`.float_metrics.to_float_image` (float32 clip to [0, 1], then float64 x 255, no rounding),
same formulas: PSNR ``10 log10(255^2 / MSE)`` over all pixels and channels; SSIM with the 11x11 Gaussian window
(sigma 1.5) on the valid region, per channel, averaged. Differences from BasicSR are only in float64 summation order
(measured below 1e-12 dB / 1e-14 SSIM; tests assert 1e-9 / 1e-12). Cheaper than BasicSR's per-step numpy call: the
11x11 window is applied as two 11-tap passes (it is an outer product), and the ground truth's local means and
variances, the same at every step, are filtered once per image, not once per step.
"""
import math

import cv2
import numpy as np
import torch
from torch.nn import functional as F

__all__ = ['TensorScorer', 'tensor_scoring_supported']

_C1 = (0.01 * 255)**2
_C2 = (0.03 * 255)**2
_WINDOW = 11
_TYPES = {'psnr': 'calculate_psnr', 'ssim': 'calculate_ssim'}


def tensor_scoring_supported(metrics_opt):
    """Whether ``val.metrics`` asks only for what :class:`TensorScorer` computes exactly.

    The keys ``psnr`` and ``ssim`` (the ones the adaptation loop records) must be BasicSR's ``calculate_psnr`` /
    ``calculate_ssim`` on RGB (``test_y_channel`` false) in HWC order; other keys are not read by the loop.
    """
    for name, metric_type in _TYPES.items():
        opt = metrics_opt.get(name)
        if opt is None:
            continue
        if opt.get('type') != metric_type or opt.get('test_y_channel') or opt.get('input_order', 'HWC') != 'HWC':
            return False
        if not isinstance(opt.get('crop_border', 0), int) or opt.get('crop_border', 0) < 0:
            return False
    return True


def _to_255(x, crop):
    x = x.detach().float().clamp(0, 1).double() * 255.  # exactly to_float_image's conversion
    return x[..., crop:x.shape[-2] - crop, crop:x.shape[-1] - crop] if crop else x


class TensorScorer:
    """Scores batches of predictions against fixed ground truths ``gt`` (B,C,H,W in [0, 1]) on ``gt``'s device.

    ``scorer(pred)`` returns ``{'psnr': (B,) float64 tensor, 'ssim': ...}`` for the metrics named in
    ``metrics_opt`` (see :func:`tensor_scoring_supported`), still on the device; nothing waits for the device.
    Images smaller than the 11x11 window get NaN SSIM, as BasicSR's mean over an empty map.
    """

    opencv_on_cpu = True  # CPU tensors: filter with OpenCV (faster there); False: torch's depthwise conv everywhere

    def __init__(self, gt, metrics_opt):
        if not tensor_scoring_supported(metrics_opt):
            raise ValueError(f'TensorScorer: unsupported metrics {metrics_opt}')
        self.names = [n for n in _TYPES if n in metrics_opt]
        self.crop = {n: metrics_opt[n].get('crop_border', 0) for n in self.names}
        self.gt = {n: _to_255(gt, self.crop[n]) for n in self.names}
        if 'ssim' in self.names:
            self.window = cv2.getGaussianKernel(_WINDOW, 1.5)  # float64, as BasicSR's _ssim
            window = torch.from_numpy(self.window[:, 0]).to(gt.device)
            self.row = window.view(1, 1, 1, _WINDOW)
            self.col = window.view(1, 1, _WINDOW, 1)
            y = self.gt['ssim']
            self.small = min(y.shape[-2:]) < _WINDOW
            if not self.small:
                self.mu2 = self._filter(y)
                self.sigma2 = self._filter(y * y) - self.mu2**2

    def _filter(self, x):
        """Valid-region 11x11 Gaussian filter of every B,C plane, in two separable 11-tap passes (float64).

        On the CPU OpenCV's ``sepFilter2D`` (3x cheaper than torch's float64 depthwise convolution there); elsewhere a
        depthwise ``conv2d`` on the device.
        """
        b, c, h, w = x.shape
        if x.device.type == 'cpu' and self.opencv_on_cpu:
            half = _WINDOW // 2
            planes = x.contiguous().view(b * c, h, w).numpy()
            out = np.stack([cv2.sepFilter2D(p, -1, self.window, self.window)[half:-half, half:-half] for p in planes])
            return torch.from_numpy(out).view(b, c, h - 2 * half, w - 2 * half)
        planes = x.reshape(1, b * c, h, w)
        y = F.conv2d(planes, self.row.expand(b * c, 1, 1, _WINDOW), groups=b * c)
        y = F.conv2d(y, self.col.expand(b * c, 1, _WINDOW, 1), groups=b * c)
        return y.view(b, c, h - _WINDOW + 1, w - _WINDOW + 1)

    def psnr(self, pred):
        x = _to_255(pred, self.crop['psnr'])
        mse = ((x - self.gt['psnr'])**2).mean(dim=(1, 2, 3))
        return torch.where(mse == 0, math.inf, 10. * torch.log10(255. * 255. / mse))

    def ssim(self, pred):
        x = _to_255(pred, self.crop['ssim'])
        if self.small:
            return torch.full(x.shape[:1], math.nan, dtype=torch.float64, device=x.device)
        y, mu2, sigma2 = self.gt['ssim'], self.mu2, self.sigma2
        mu1 = self._filter(x)
        sigma1 = self._filter(x * x) - mu1**2
        sigma12 = self._filter(x * y) - mu1 * mu2
        ssim_map = ((2 * mu1 * mu2 + _C1) * (2 * sigma12 + _C2)) / ((mu1**2 + mu2**2 + _C1) * (sigma1 + sigma2 + _C2))
        return ssim_map.mean(dim=(2, 3)).mean(dim=1)

    def __call__(self, pred):
        return {name: getattr(self, name)(pred) for name in self.names}
