"""CameraNoise: the camera pipeline's exact properties on small arrays (constant images, zero noise, raw variance)."""
import numpy as np
import pytest

from lan_basicsr.data.camera_noise import (BAYER_PATTERNS, DEMOSAIC_METHODS, CameraNoise, demosaic, inverse_smoothstep,
                                           mosaic, smoothstep)
from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.registry import NOISE_REGISTRY, build_from_registry

COLOUR = np.array([0.2, 0.5, 0.8], np.float32)


def photo(h=24, w=20, seed=0):
    """A smooth colourful test image with dark and bright parts, in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    base = np.stack([0.5 + 0.45 * np.sin(6 * xx + 1), yy, 0.5 + 0.4 * np.cos(5 * yy * xx)], axis=2)
    return np.clip(base + 0.02 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


def no_stages(**kw):
    """Every stage off: the noise is the raw noise on the image itself."""
    opt = dict(
        tone_curve=None,
        gamma=None,
        ccm=False,
        red_gain=None,
        blue_gain=None,
        exposure=None,
        bayer=None,
        jpeg_quality=None,
        reference='clean',
        bounded=False)
    opt.update(kw)
    return CameraNoise(**opt)


def test_registered_and_options_checked():
    model = build_from_registry(NOISE_REGISTRY, {'type': 'CameraNoise', 'shot': 0.01}, where='datasets.train.noise')
    assert isinstance(model, CameraNoise) and model.draw_params(np.random.default_rng(0))['shot'] == 0.01
    bad = [
        dict(shot=[0, 0.01]),  # log-uniform needs low > 0
        dict(shot=[0.02, 0.01]),
        dict(read='linear'),
        dict(gamma=-1),
        dict(tone_curve='filmic'),
        dict(bayer='RGBG'),
        dict(demosaic='VNG'),
        dict(jpeg_quality=[50, 101]),
        dict(jpeg_subsampling='411'),
        dict(jpeg_prob=1.5),
        dict(exposure=[0.1, 0.1]),
        dict(reference='noisy'),
        dict(red_gain=[0, 2]),
    ]
    for kw in bad:
        with pytest.raises(OptionError, match=f'CameraNoise.{next(iter(kw))}'):
            CameraNoise(**kw)
    with pytest.raises(DataError, match=r'RGB image \(H, W, 3\)'):
        CameraNoise()(np.zeros((8, 8), np.float32), np.random.default_rng(0))


def test_tone_curve_inverse_is_exact():
    y = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(smoothstep(inverse_smoothstep(y)), y, atol=1e-12)
    np.testing.assert_allclose(inverse_smoothstep(smoothstep(y)), y, atol=1e-7)


@pytest.mark.parametrize('pattern', sorted(BAYER_PATTERNS))
@pytest.mark.parametrize('method', sorted(DEMOSAIC_METHODS))
@pytest.mark.parametrize('size', [(9, 12), (2, 2), (7, 5)])
def test_mosaic_demosaic_of_constant_is_constant(pattern, method, size):
    const = np.broadcast_to(COLOUR, size + (3, ))
    bayer = mosaic(const, pattern)
    assert bayer.shape == size
    cfa = np.array(BAYER_PATTERNS[pattern])
    assert bayer[0, 0] == COLOUR[cfa[0, 0]] and bayer[1, 1] == COLOUR[cfa[1, 1]]
    out = demosaic(bayer, pattern, method)
    assert out.shape == size + (3, ) and out.dtype == np.float32
    # exact up to the 16-bit quantisation of the Bayer image (half a step)
    np.testing.assert_allclose(out, const, atol=0.5 / 65535 + 1e-7, rtol=0)


def test_process_inverts_unprocess_on_a_constant_image():
    model = CameraNoise()
    const = np.broadcast_to(np.array([0.3, 0.5, 0.4], np.float32), (10, 10, 3))
    for seed in range(5):
        p = model.draw_params(np.random.default_rng(seed))
        np.testing.assert_allclose(model.process(model.unprocess(const, p), p), const, atol=2e-4)


@pytest.mark.parametrize('reference', ['mean', 'clean'])
@pytest.mark.parametrize('bounded', [True, False])
def test_zero_noise_without_jpeg_returns_the_input(reference, bounded):
    img = photo()
    model = CameraNoise(shot=0, read=0, jpeg_quality=None, reference=reference, bounded=bounded)
    for seed in range(3):
        out = model(img, np.random.default_rng(seed))
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, img)  # the processed noise is exactly zero
    # the log-linear read noise of a zero shot noise is zero too
    np.testing.assert_array_equal(CameraNoise(shot=0, jpeg_quality=None)(img, np.random.default_rng(0)), img)


def test_raw_variance_is_shot_times_signal_plus_read():
    """Per-pixel variance of the raw noise (linear, before any processing) across draws: shot * raw + read."""
    model = CameraNoise(shot=0.01, read=4e-4)
    img = photo(8, 8)
    p = model.draw_params(np.random.default_rng(0))
    raw = model.unprocess(img, p)
    assert raw.shape == (8, 8) and raw.min() >= 0 and raw.max() <= 1
    draws = 4000
    rng = np.random.default_rng(1)
    noise = np.stack([model.draw_raw_noise(raw, p, rng) for _ in range(draws)]).astype(np.float64)
    expected = 0.01 * raw + 4e-4
    ratio = noise.var(axis=0, ddof=1) / expected
    # sample variance / true variance: mean 1, std sqrt(2 / (n - 1)) = 0.022 per pixel; 64 pixels
    assert np.abs(ratio - 1).max() < 5 * np.sqrt(2 / (draws - 1))
    assert np.abs(noise.mean(axis=0)).max() < 5 * np.sqrt(expected.max() / draws)
    slope, intercept = np.polyfit(raw.ravel(), noise.var(axis=0).ravel(), 1)
    assert slope == pytest.approx(0.01, rel=0.05) and intercept == pytest.approx(4e-4, rel=0.05)


def test_all_stages_off_is_heteroscedastic_gaussian():
    """Every stage off: the path is clip(x + N(0, shot x + read)) (the raw saturates at 0 and 1), fixed params draw
    nothing, so the noise is the generator's first normals."""
    img = photo()
    out = no_stages(shot=0.02, read=1e-3)(img, np.random.default_rng(5))
    noise = np.random.default_rng(5).standard_normal(img.shape, dtype=np.float32)
    expected = np.clip(img + noise * np.sqrt(np.float32(0.02) * img + np.float32(1e-3)), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_read_noise_log_linear_in_shot_noise():
    model = CameraNoise(shot=[1e-4, 0.012], read_line=[2.18, 1.20, 0.])
    for seed in range(5):
        p = model.draw_params(np.random.default_rng(seed))
        assert 1e-4 <= p['shot'] <= 0.012
        assert np.log(p['read']) == pytest.approx(2.18 * np.log(p['shot']) + 1.20)
    # with the published std 0.26 the residual of log(read) around the line is N(0, 0.26^2)
    model = CameraNoise()
    res = [
        np.log(p['read']) - 2.18 * np.log(p['shot']) - 1.20
        for p in (model.draw_params(np.random.default_rng(s)) for s in range(400))
    ]
    assert np.std(res) == pytest.approx(0.26, rel=0.15) and abs(np.mean(res)) < 5 * 0.26 / 20


def test_same_seed_same_noise_other_seed_other_noise():
    img = photo(32, 32)
    model = CameraNoise(shot=0.005)  # every stage on, JPEG included
    a = model(img, np.random.default_rng(7))
    np.testing.assert_array_equal(a, model(img, np.random.default_rng(7)))
    b = model(img, np.random.default_rng(8))
    assert np.abs(a - b).mean() > 2 / 255
    np.testing.assert_array_equal(model.sample(img, np.random.default_rng(7)), a - img)


def test_reference_mean_is_odd_in_the_raw_noise():
    """``reference: mean``: d(-n) = -d(n) exactly, so the sRGB noise is zero-mean at every pixel."""
    img = photo()
    model = CameraNoise(shot=0.01, jpeg_quality=None)
    p = model.draw_params(np.random.default_rng(3))
    raw = model.unprocess(img, p)
    n = model.draw_raw_noise(raw, p, np.random.default_rng(4))
    d_plus = model.render(img, p, n, raw) - img
    d_minus = model.render(img, p, -n, raw) - img
    np.testing.assert_allclose(d_plus, -d_minus, atol=1e-6)
    assert np.abs(d_plus).mean() > 1 / 255  # and it is not zero


def test_reference_clean_shifts_the_mean_and_mean_does_not():
    """The noise-free rendering as reference biases a dark grey (gamma concavity, clipping); the mean does not."""
    dark = np.full((64, 64, 3), 0.15, np.float32)
    means = {}
    for reference in ('mean', 'clean'):
        model = CameraNoise(shot=0.01, jpeg_quality=None, reference=reference, bounded=False)
        means[reference] = np.mean([(model(dark, np.random.default_rng(s)) - dark).mean() for s in range(20)])
    assert abs(means['mean']) < 0.3 / 255
    assert abs(means['clean']) > 1 / 255


def test_bounded_keeps_the_range_and_black_and_white_noise_free():
    img = photo()
    img[:4] = 0
    img[-4:] = 1
    out = CameraNoise(shot=0.012, jpeg_quality=None)(img, np.random.default_rng(0))
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out[:4], 0)
    np.testing.assert_array_equal(out[-4:], 1)
    unbounded = CameraNoise(shot=0.012, jpeg_quality=None, bounded=False)(img, np.random.default_rng(0))
    assert unbounded.min() < 0 or unbounded.max() > 1


def test_jpeg_stage():
    img = photo(32, 32)
    model = CameraNoise(shot=0.001, jpeg_quality=[70, 80])
    out = model(img, np.random.default_rng(0))
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)  # an 8-bit decoded image
    p = model.draw_params(np.random.default_rng(0))
    assert 70 <= p['jpeg_quality'] <= 80 and p['jpeg_subsampling'] in ('420', '422', '444')
    # JPEG 100 without subsampling is nearly lossless (8-bit rounding plus a little); quality 10 is not
    q100 = CameraNoise.jpeg(img, 100, '444')
    q10 = CameraNoise.jpeg(img, 10, '420')
    assert np.abs(q100 - img).mean() < 1 / 255 < 3 / 255 < np.abs(q10 - img).mean()
    # jpeg_prob 0: only the 8-bit rounding
    model = CameraNoise(shot=0, jpeg_prob=0.)
    np.testing.assert_allclose(model(img, np.random.default_rng(0)), np.round(img * 255) / 255, atol=1e-6)
