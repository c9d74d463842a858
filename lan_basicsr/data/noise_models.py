"""Synthetic noise models (NOISE_REGISTRY) for the seen-versus-unseen noise experiments.

Every model works on float32 images in [0, 1] (H, W) or (H, W, C), draws from a ``numpy.random.Generator`` only
(so one seed gives one noise field, whatever the process), and returns the unclipped noisy image; clipping is the
dataset's business (``SyntheticNoiseDataset`` clips to [0, 1] by default, as a real sensor saturates). Noise is
independent across channels. Standard deviations are given in 0-255 units, as in the denoising literature.
"""
import math

import cv2
import numpy as np

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.registry import NOISE_REGISTRY

__all__ = [
    'NoiseModel', 'GaussianNoise', 'PoissonGaussianNoise', 'CorrelatedGaussianNoise', 'SpatiallyVaryingGaussianNoise',
    'gaussian_kernel_1d'
]


def _sigma_or_range(value, name, cls):
    """A fixed sigma (number) or a [low, high] range sampled uniformly per image; both in 0-255 units."""
    if isinstance(value, (int, float)):
        low = high = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
    else:
        raise OptionError(f'{cls}.{name}: expected a number or [low, high], got {value!r}')
    if not 0 <= low <= high:
        raise OptionError(f'{cls}.{name}: need 0 <= low <= high, got {value!r}')
    return low, high


class NoiseModel:
    """Base class: ``model(img, rng)`` returns ``img + model.sample(img, rng)`` as float32."""

    def sample(self, img, rng):
        """The noise field (same shape as ``img``) for clean image ``img``; ``rng`` is a numpy Generator."""
        raise NotImplementedError

    def __call__(self, img, rng):
        img = np.asarray(img, dtype=np.float32)
        return (img + self.sample(img, rng)).astype(np.float32)

    def __repr__(self):
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items() if not k.startswith('_'))
        return f'{type(self).__name__}({args})'


@NOISE_REGISTRY.register()
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise, std ``sigma`` / 255.

    Args:
        sigma (float | [low, high]): std in 0-255 units; a range draws one sigma per image uniformly (blind training).
    """

    def __init__(self, sigma=25.):
        self.sigma = sigma
        self._range = _sigma_or_range(sigma, 'sigma', 'GaussianNoise')

    def sample(self, img, rng):
        low, high = self._range
        sigma = low if low == high else rng.uniform(low, high)
        return rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.)


@NOISE_REGISTRY.register()
class PoissonGaussianNoise(NoiseModel):
    """Signal-dependent noise: ``y = a * Poisson(x / a) + N(0, b)``, so E[y] = x and Var[y] = a * x + b (x in [0, 1]).

    Give either ``a`` or ``photons`` (a = 1 / photons: the photon count of a white pixel), and either ``b`` (read
    variance in [0, 1]^2 units) or ``read_sigma`` (read std in 0-255 units: b = (read_sigma / 255)^2).
    ``gaussian_approx: true`` draws N(0, a * x + b) instead (the heteroscedastic Gaussian approximation).

    Args:
        a (float): shot-noise gain. photons (float): alternative to ``a``.
        b (float): read-noise variance. read_sigma (float): alternative to ``b``. Default: no read noise.
        gaussian_approx (bool): Gaussian instead of Poisson shot noise. Default: False.
    """

    def __init__(self, a=None, b=None, photons=None, read_sigma=None, gaussian_approx=False):
        if (a is None) == (photons is None):
            raise OptionError('PoissonGaussianNoise: give exactly one of a (gain) or photons (= 1 / a)')
        if b is not None and read_sigma is not None:
            raise OptionError('PoissonGaussianNoise: give at most one of b (variance) or read_sigma (std, 0-255)')
        self.a = float(a) if a is not None else 1. / float(photons)
        self.b = float(b) if b is not None else (float(read_sigma or 0.) / 255.)**2
        if not (self.a > 0 and self.b >= 0 and math.isfinite(self.a)):
            raise OptionError(f'PoissonGaussianNoise: need a > 0 (photons > 0) and b >= 0, got a={a}, '
                              f'photons={photons}, b={b}, read_sigma={read_sigma}')
        self.gaussian_approx = bool(gaussian_approx)

    def sample(self, img, rng):
        x = np.clip(img, 0, None).astype(np.float64)
        if self.gaussian_approx:
            noise = rng.standard_normal(img.shape) * np.sqrt(self.a * x + self.b)
        else:
            noise = self.a * rng.poisson(x / self.a) - x
            if self.b > 0:
                noise += rng.standard_normal(img.shape) * math.sqrt(self.b)
        return noise.astype(np.float32)


def gaussian_kernel_1d(kernel_sigma, kernel_size=None):
    """Normalised 1-D Gaussian of std ``kernel_sigma`` px; default size 2 * ceil(3 sigma) + 1."""
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * kernel_sigma) + 1
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise OptionError(f'CorrelatedGaussianNoise.kernel_size: expected a positive odd int, got {kernel_size}')
    r = kernel_size // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-x**2 / (2 * kernel_sigma**2))
    return g / g.sum()


@NOISE_REGISTRY.register()
class CorrelatedGaussianNoise(NoiseModel):
    """Spatially correlated Gaussian noise: white noise filtered by a Gaussian kernel, rescaled to std ``sigma``/255.

    The field is filtered over a margin and cropped, so it is stationary up to the borders. Its correlation between
    horizontal (or vertical) neighbours is ``sum(g[i] g[i+1]) / sum(g[i]^2)`` for the 1-D kernel ``g``
    (:meth:`neighbour_correlation`).

    Args:
        sigma (float | [low, high]): marginal std in 0-255 units (a range: drawn per image).
        kernel_sigma (float): std of the Gaussian kernel in pixels. Default: 1.
        kernel_size (int | None): odd kernel width; default 2 * ceil(3 * kernel_sigma) + 1.
    """

    def __init__(self, sigma=25., kernel_sigma=1., kernel_size=None):
        self.sigma = sigma
        self._range = _sigma_or_range(sigma, 'sigma', 'CorrelatedGaussianNoise')
        if not kernel_sigma > 0:
            raise OptionError(f'CorrelatedGaussianNoise.kernel_sigma: expected > 0, got {kernel_sigma}')
        self.kernel_sigma = float(kernel_sigma)
        self.kernel_size = kernel_size
        self._kernel = gaussian_kernel_1d(self.kernel_sigma, kernel_size)

    def neighbour_correlation(self, lag=1):
        """Theoretical correlation of pixels ``lag`` apart along a row or column."""
        g = self._kernel
        if lag == 0:
            return 1.
        return float(np.dot(g[:-lag], g[lag:]) / np.dot(g, g)) if lag < len(g) else 0.

    def sample(self, img, rng):
        low, high = self._range
        sigma = low if low == high else rng.uniform(low, high)
        h, w = img.shape[:2]
        channels = img.shape[2] if img.ndim == 3 else 1
        r = len(self._kernel) // 2
        white = rng.standard_normal((h + 2 * r, w + 2 * r, channels), dtype=np.float32)
        k = self._kernel.astype(np.float32)
        planes = [
            cv2.sepFilter2D(white[..., c], cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT) for c in range(channels)
        ]
        filtered = np.stack(planes, axis=2)[r:r + h, r:r + w]
        # the variance of white noise filtered by the separable kernel k k^T is (sum k^2)^2
        scale = sigma / 255. / float(np.dot(self._kernel, self._kernel))
        return (filtered * np.float32(scale)).reshape(img.shape)


@NOISE_REGISTRY.register()
class SpatiallyVaryingGaussianNoise(NoiseModel):
    """Gaussian noise whose std varies linearly across the image from ``sigma_min`` to ``sigma_max`` (0-255 units).

    Args:
        sigma_min (float): std at the first column (or row). sigma_max (float): std at the last one.
        direction (str): ``horizontal`` (left to right) or ``vertical`` (top to bottom). Default: horizontal.
    """

    def __init__(self, sigma_min=5., sigma_max=50., direction='horizontal'):
        if min(sigma_min, sigma_max) < 0:
            raise OptionError(f'SpatiallyVaryingGaussianNoise: sigmas must be >= 0, got {sigma_min}, {sigma_max}')
        if direction not in ('horizontal', 'vertical'):
            raise OptionError(f'SpatiallyVaryingGaussianNoise.direction: horizontal or vertical, got {direction!r}')
        self.sigma_min, self.sigma_max, self.direction = float(sigma_min), float(sigma_max), direction

    def sigma_map(self, h, w):
        """Std map (H, W) in 0-255 units."""
        n = w if self.direction == 'horizontal' else h
        ramp = np.linspace(self.sigma_min, self.sigma_max, n, dtype=np.float32)
        return np.broadcast_to(ramp[None, :] if self.direction == 'horizontal' else ramp[:, None], (h, w))

    def sample(self, img, rng):
        h, w = img.shape[:2]
        sigma = self.sigma_map(h, w) / np.float32(255.)
        if img.ndim == 3:
            sigma = sigma[..., None]
        return rng.standard_normal(img.shape, dtype=np.float32) * sigma
