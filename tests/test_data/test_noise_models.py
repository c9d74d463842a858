"""Empirical statistics of the synthetic noise models against their parameters (tolerances of a few std errors)."""
import numpy as np
import pytest

from lan_basicsr.data.noise_models import (CorrelatedGaussianNoise, GaussianNoise, PoissonGaussianNoise,
                                           SpatiallyVaryingGaussianNoise)
from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.registry import NOISE_REGISTRY, build_from_registry

GREY = np.full((256, 256, 3), 0.5, np.float32)


def rng(seed=0):
    return np.random.default_rng(seed)


def corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


def test_registered():
    assert {'GaussianNoise', 'PoissonGaussianNoise', 'CorrelatedGaussianNoise',
            'SpatiallyVaryingGaussianNoise'} <= set(NOISE_REGISTRY.keys())
    model = build_from_registry(NOISE_REGISTRY, {'type': 'GaussianNoise', 'sigma': 15}, where='datasets.train.noise')
    assert isinstance(model, GaussianNoise) and model.sigma == 15
    with pytest.raises(OptionError, match='datasets.train.noise.*GaussianNoise'):
        build_from_registry(NOISE_REGISTRY, {'type': 'Gauss'}, where='datasets.train.noise')


def test_gaussian_mean_std_white():
    noise = GaussianNoise(sigma=25).sample(GREY, rng())
    assert noise.dtype == np.float32 and noise.shape == GREY.shape
    std = 25 / 255
    assert abs(noise.mean()) < 5 * std / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(std, rel=0.02)
    assert abs(corr(noise[:, :-1], noise[:, 1:])) < 0.02  # white: no neighbour correlation


def test_gaussian_sigma_range_per_image():
    model = GaussianNoise(sigma=[10, 40])
    stds = [model.sample(GREY[:64, :64], rng(s)).std() * 255 for s in range(12)]
    assert all(9 < s < 41.5 for s in stds)
    assert max(stds) - min(stds) > 10  # sigma really varies between images


def test_gaussian_call_is_unclipped_sum():
    img = np.zeros((32, 32, 3), np.float32)
    out = GaussianNoise(sigma=50)(img, rng(3))
    np.testing.assert_array_equal(out, GaussianNoise(sigma=50).sample(img, rng(3)))
    assert out.min() < 0  # clipping is the dataset's job


@pytest.mark.parametrize('gaussian_approx', [False, True])
def test_poisson_gaussian_variance_is_linear_in_signal(gaussian_approx):
    a, b = 0.01, (5 / 255)**2
    model = PoissonGaussianNoise(a=a, b=b, gaussian_approx=gaussian_approx)
    levels = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    variances, means = [], []
    for i, x in enumerate(levels):
        noise = model.sample(np.full((96, 96, 3), x, np.float32), rng(i))
        variances.append(noise.var())
        means.append(noise.mean())
    slope, intercept = np.polyfit(levels, variances, 1)
    assert slope == pytest.approx(a, rel=0.08)
    assert intercept == pytest.approx(b, abs=2e-4)  # b = 3.8e-4; a missing read term would fail
    assert max(abs(m) for m in means) < 5 * np.sqrt(a + b) / 96 / np.sqrt(3)  # zero-mean at every level


def test_poisson_gaussian_parametrisations_agree():
    m1 = PoissonGaussianNoise(photons=50, read_sigma=5)
    m2 = PoissonGaussianNoise(a=0.02, b=(5 / 255)**2)
    assert (m1.a, m1.b) == pytest.approx((m2.a, m2.b))
    np.testing.assert_array_equal(m1.sample(GREY[:32, :32], rng(1)), m2.sample(GREY[:32, :32], rng(1)))
    # black pixels: only read noise
    black = np.zeros((128, 128, 3), np.float32)
    assert m1.sample(black, rng(2)).std() == pytest.approx(5 / 255, rel=0.03)
    with pytest.raises(OptionError, match='exactly one of a'):
        PoissonGaussianNoise(a=0.1, photons=10)
    with pytest.raises(OptionError):
        PoissonGaussianNoise(a=-1)


def test_correlated_gaussian_std_and_neighbour_correlation():
    model = CorrelatedGaussianNoise(sigma=25, kernel_sigma=1.5)
    noise = model.sample(np.full((256, 256, 3), 0.5, np.float32), rng())
    rho = model.neighbour_correlation()
    assert 0.85 < rho < 0.93  # ~ exp(-1 / (4 sigma^2)) for a wide Gaussian kernel
    assert abs(noise.mean()) < 0.1 * 25 / 255
    assert noise.std() == pytest.approx(25 / 255, rel=0.05)
    assert corr(noise[:, :-1], noise[:, 1:]) == pytest.approx(rho, abs=0.02)
    assert corr(noise[:-1], noise[1:]) == pytest.approx(rho, abs=0.02)
    assert corr(noise[:, :-3], noise[:, 3:]) == pytest.approx(model.neighbour_correlation(3), abs=0.03)
    assert abs(corr(noise[..., 0], noise[..., 1])) < 0.05  # channels independent


def test_correlated_gaussian_grayscale_and_kernel_size():
    model = CorrelatedGaussianNoise(sigma=10, kernel_sigma=0.8, kernel_size=3)
    noise = model.sample(np.zeros((64, 80), np.float32), rng())
    assert noise.shape == (64, 80)
    with pytest.raises(OptionError, match='odd'):
        CorrelatedGaussianNoise(kernel_size=4)


@pytest.mark.parametrize('direction', ['horizontal', 'vertical'])
def test_spatially_varying_sigma_gradient(direction):
    model = SpatiallyVaryingGaussianNoise(sigma_min=5, sigma_max=50, direction=direction)
    img = np.full((384, 384, 3), 0.5, np.float32)
    noise = model.sample(img, rng())
    per_line = noise.std(axis=(0, 2)) if direction == 'horizontal' else noise.std(axis=(1, 2))
    slope, intercept = np.polyfit(np.arange(384), per_line * 255, 1)
    assert slope == pytest.approx(45 / 383, rel=0.05)
    assert intercept == pytest.approx(5, abs=0.6)
    assert per_line[-32:].mean() * 255 == pytest.approx(50 - 45 * 15.5 / 383, rel=0.03)
    assert abs(noise.mean()) < 0.002


@pytest.mark.parametrize(
    'model', [
        GaussianNoise(sigma=[5, 50]),
        PoissonGaussianNoise(photons=30, read_sigma=2),
        CorrelatedGaussianNoise(sigma=20, kernel_sigma=1),
        SpatiallyVaryingGaussianNoise(sigma_min=0, sigma_max=30)
    ],
    ids=lambda m: type(m).__name__)
def test_same_seed_same_noise(model):
    img = np.random.default_rng(9).random((40, 48, 3), dtype=np.float32)
    out1, out2, out3 = model(img, rng(7)), model(img, rng(7)), model(img, rng(8))
    assert out1.dtype == np.float32 and out1.shape == img.shape
    np.testing.assert_array_equal(out1, out2)
    assert not np.array_equal(out1, out3)
