"""Camera-pipeline noise (NOISE_REGISTRY ``CameraNoise``): sRGB noise shaped like a real camera's.

After Brooks et al., "Unprocessing images for learned raw denoising" (CVPR 2019) and CBDNet (Guo et al., "Toward
convolutional blind denoising of real photographs", CVPR 2019). A clean sRGB image ``x`` (RGB, float in [0, 1]) is
taken back to a plausible raw Bayer image ``r = U(x)`` (inverse tone curve, inverse gamma, inverse colour correction,
inverse white balance and exposure, clip, mosaic), heteroscedastic shot + read noise ``n ~ N(0, shot * r + read)`` is
drawn on the Bayer samples, and the camera's forward pipeline ``P`` (white balance and exposure, clip, demosaic
(OpenCV), colour correction, clip, gamma, tone curve) turns it into sRGB noise: spatially correlated by the demosaic,
correlated across channels by the colour matrix, signal dependent, amplified in the shadows by the gamma. The
result is optionally JPEG-compressed at a random quality (most photos, PolyU included, are camera JPEGs).

What is added to ``x`` (the design choice, see docs/camera_noise.md): real sRGB pairs (PolyU, SIDD, Nam) have as
"clean" image the camera's own rendering of the scene, the mean of many processed frames, so their noise is
``P(r + n) - E[P(r + n)]``: zero-mean at every pixel. We keep the photograph ``x`` as the clean image and add only
the processed noise: ``noisy = JPEG(x + d)`` with

- ``reference: mean`` (default): ``d = (P(r + n) - P(r - n)) / 2``, the antithetic estimate of
  ``P(r + n) - E P(r + n)``: exactly zero-mean at every pixel (odd in ``n``), so a network trained on it has no reason
  to shift local means;
- ``reference: clean``: ``d = P(r + n) - P(r)``, the noisy rendering minus the noise-free one; its mean is not zero
  where the pipeline bends (gamma in the shadows, clipping), which teaches a network to shift dark colours.

Either way the network never has to undo the demosaic blur or the clipping of ``P(U(x))`` (which are no noise), and
zero noise with JPEG off returns ``x`` exactly. ``bounded: true`` (default) limits ``d`` at each pixel to
``[-min(x, 1 - x), min(x, 1 - x)]``: symmetric, so the noise stays zero-mean, and the noisy image stays in [0, 1]
without a clip that would shift its mean near black and white (a pixel whose mean over frames is 0 or 1 has no
noise). Draws come from a ``numpy.random.Generator`` only, in a fixed order (one seed, one noisy image).
"""
import math

import cv2
import numpy as np

from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.registry import NOISE_REGISTRY
from .noise_models import NoiseModel

__all__ = [
    'CameraNoise', 'BAYER_PATTERNS', 'DEMOSAIC_METHODS', 'XYZ2CAM_MATRICES', 'RGB2XYZ', 'mosaic', 'demosaic',
    'smoothstep', 'inverse_smoothstep'
]

# Bayer patterns by the colours of the 2x2 cell in row-major order (0 = R, 1 = G, 2 = B) and OpenCV's name for them
# (OpenCV names a pattern by the second row's second and third pixels: RGGB is its "BayerBG").
BAYER_PATTERNS = {
    'RGGB': ((0, 1), (1, 2)),
    'BGGR': ((2, 1), (1, 0)),
    'GRBG': ((1, 0), (2, 1)),
    'GBRG': ((1, 2), (0, 1)),
}
_OPENCV_BAYER = {'RGGB': 'BayerBG', 'BGGR': 'BayerRG', 'GRBG': 'BayerGB', 'GBRG': 'BayerGR'}
# OpenCV demosaicing of 16-bit Bayer images: bilinear (as Brooks et al.'s own) and edge-aware (closer to a camera's).
# OpenCV's VNG takes 8-bit input only, too coarse for the shadows of a raw image.
DEMOSAIC_METHODS = {'bilinear': '', 'EA': '_EA'}

# XYZ (D65) -> camera colour matrices that Brooks et al. mix at random: the Adobe DNG colour matrices (as tabulated by
# dcraw) of the four cameras of the Darmstadt Noise Dataset. Camera calibration data, not code.
XYZ2CAM_MATRICES = np.array([
    [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
    [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
    [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
    [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
])
# linear sRGB -> XYZ (D65), IEC 61966-2-1
RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]])

_JPEG_SUBSAMPLING = {
    '420': cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    '422': cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    '444': cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
}


def smoothstep(y):
    """Brooks et al.'s global tone curve ``3y^2 - 2y^3`` (on [0, 1])."""
    return y * y * (3 - 2 * y)


def inverse_smoothstep(y):
    """The exact inverse of :func:`smoothstep` on [0, 1]: ``1/2 - sin(asin(1 - 2y) / 3)``."""
    y = np.clip(y, 0, 1)
    return 0.5 - np.sin(np.arcsin(1 - 2 * y) / 3)


def _cfa(pattern, h, w):
    """Colour index (0 R, 1 G, 2 B) of every pixel of an ``h`` x ``w`` Bayer image with ``pattern``."""
    cell = np.array(BAYER_PATTERNS[pattern], np.intp)
    return np.tile(cell, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def mosaic(rgb, pattern='RGGB'):
    """Bayer image (H, W) of an RGB image (H, W, 3): each pixel keeps the colour its filter passes."""
    h, w = rgb.shape[:2]
    return np.take_along_axis(rgb, _cfa(pattern, h, w)[..., None], axis=2)[..., 0]


def demosaic(bayer, pattern='RGGB', method='bilinear'):
    """RGB image (H, W, 3) from a Bayer image (H, W) in [0, 1], with OpenCV's 16-bit demosaicing.

    The Bayer image is quantised to 16 bits (finer than any camera's 12-14-bit raw) and reflect-padded by 2 pixels
    (a reflection keeps the colour-filter phase), so the borders are treated like the inside. At least 2 x 2 pixels.
    """
    code = getattr(cv2, f'COLOR_{_OPENCV_BAYER[pattern]}2RGB{DEMOSAIC_METHODS[method]}')
    h, w = bayer.shape
    if min(h, w) < 2:
        raise DataError(f'CameraNoise: a Bayer image needs at least 2 x 2 pixels, got {h} x {w}')
    raw16 = np.pad(np.round(np.clip(bayer, 0, 1) * 65535.).astype(np.uint16), 2, mode='reflect')
    rgb = cv2.cvtColor(raw16, code)[2:2 + h, 2:2 + w]
    return rgb.astype(np.float32) * np.float32(1 / 65535.)


def _number_or_range(value, name, allow_zero=True, integer=False):
    """``(low, high)`` from a number or a ``[low, high]`` list; OptionError otherwise."""
    where = f'CameraNoise.{name}'
    if isinstance(value, bool):
        raise OptionError(f'{where}: expected a number or [low, high], got {value!r}')
    if isinstance(value, (int, float)):
        low = high = value
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        low, high = value
    else:
        raise OptionError(f'{where}: expected a number or [low, high], got {value!r}')
    low, high = (int(low), int(high)) if integer else (float(low), float(high))
    if not (math.isfinite(low) and math.isfinite(high) and (0 <= low if allow_zero else 0 < low) and low <= high):
        bound = '0 <=' if allow_zero else '0 <'
        raise OptionError(f'{where}: need {bound} low <= high (finite), got {value!r}')
    return low, high


def _choices(value, name, allowed):
    """A tuple of allowed names from one name or a list of names (one is drawn per image)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or any(v not in allowed for v in values):
        raise OptionError(f'CameraNoise.{name}: expected one of {", ".join(allowed)} or a list of them, '
                          f'got {value!r}')
    return tuple(values)


def _log_uniform(rng, low, high):
    return low if low == high else math.exp(rng.uniform(math.log(low), math.log(high)))


@NOISE_REGISTRY.register()
class CameraNoise(NoiseModel):
    """Realistic sRGB camera noise: unprocess to raw, shot + read noise on the Bayer mosaic, process, JPEG.

    Every stage is an option; ``null``/``false`` switches it off. Defaults are the published models' ranges: Brooks
    et al. 2019 for the raw pipeline and the noise, CBDNet for the JPEG quality (docs/camera_noise.md says why).
    Inputs are RGB (H, W, 3) in [0, 1]; the output is the noisy image (float32, in [0, 1] when ``bounded`` or
    JPEG is on).

    Args:
        shot (float | [low, high]): shot-noise gain: the variance of a raw value r is ``shot * r + read``. A range is
            drawn log-uniformly per image. Default [1e-4, 0.012] (Brooks et al.). 0: no shot noise.
        read (str | float | [low, high]): read-noise variance. ``log_linear`` (default, Brooks et al.): drawn with the
            shot noise, ``log(read) = slope * log(shot) + intercept + N(0, std^2)``; a number or a range (drawn
            log-uniformly) makes it independent. 0: no read noise.
        read_line ([slope, intercept, std]): the log-linear relation. Default [2.18, 1.20, 0.26] (Brooks et al.).
        tone_curve (str | null): ``smoothstep`` (Brooks et al.'s global tone curve, default) or null.
        gamma (float | null): gamma of the transfer curve, default 2.2 (Brooks et al.); null: linear.
        ccm (bool): colour correction with a random convex mix of :data:`XYZ2CAM_MATRICES` (default true).
        red_gain, blue_gain (float | [low, high] | null): white-balance gains, drawn uniformly. Defaults [1.9, 2.4] and
            [1.5, 1.9] (Brooks et al.); null: 1.
        exposure ([mean, std] | null): the raw image is the linear image times ``N(mean, std^2)`` (clipped to
            mean +- 3 std), brightened back by the camera. Default [0.8, 0.1] (Brooks et al.'s brightening).
        bayer (str | list | null): Bayer pattern (RGGB, BGGR, GRBG, GBRG) or a list to draw from (default: all four;
            the phase is arbitrary for a crop); null: no mosaic, the noise is drawn on all three raw channels.
        demosaic (str | list): OpenCV method(s), ``bilinear`` and/or ``EA`` (edge-aware); one drawn per image.
        jpeg_quality (int | [low, high] | null): JPEG quality drawn uniformly (integers). Default [60, 100] (CBDNet);
            null: no JPEG and no 8-bit rounding (float output).
        jpeg_subsampling (str | list): chroma subsampling(s) to draw from: 420, 422, 444. Default all three.
        jpeg_prob (float): probability that an image is JPEG-compressed (default 1); the others are only rounded to
            8 bits, as a PNG from a raw converter.
        reference (str): ``mean`` (zero-mean noise, default) or ``clean``; see the module docstring.
        bounded (bool): keep ``x + d`` in [0, 1] by limiting ``d`` symmetrically per pixel (default true).
    """

    def __init__(self,
                 shot=(1e-4, 0.012),
                 read='log_linear',
                 read_line=(2.18, 1.20, 0.26),
                 tone_curve='smoothstep',
                 gamma=2.2,
                 ccm=True,
                 red_gain=(1.9, 2.4),
                 blue_gain=(1.5, 1.9),
                 exposure=(0.8, 0.1),
                 bayer=('RGGB', 'BGGR', 'GRBG', 'GBRG'),
                 demosaic=('bilinear', 'EA'),
                 jpeg_quality=(60, 100),
                 jpeg_subsampling=('420', '422', '444'),
                 jpeg_prob=1.,
                 reference='mean',
                 bounded=True):
        self._shot = _number_or_range(shot, 'shot')
        if self._shot[0] == 0 and self._shot[1] > 0:
            raise OptionError(f'CameraNoise.shot: a range is drawn log-uniformly, so its low end must be > 0, got '
                              f'{shot!r} (use a number for a fixed gain, 0 for none)')
        if read == 'log_linear':
            self._read = None
        else:
            self._read = _number_or_range(read, 'read')
            if self._read[0] == 0 and self._read[1] > 0:
                raise OptionError(f'CameraNoise.read: a range is drawn log-uniformly, so its low end must be > 0, '
                                  f'got {read!r}')
        if not (isinstance(read_line, (list, tuple)) and len(read_line) == 3 and read_line[2] >= 0):
            raise OptionError(f'CameraNoise.read_line: expected [slope, intercept, std >= 0], got {read_line!r}')
        if tone_curve not in (None, False, 'smoothstep'):
            raise OptionError(f'CameraNoise.tone_curve: expected smoothstep or null, got {tone_curve!r}')
        if gamma not in (None, False) and not (isinstance(gamma, (int, float)) and gamma > 0):
            raise OptionError(f'CameraNoise.gamma: expected a number > 0 or null, got {gamma!r}')
        if not (exposure in (None, False) or (isinstance(exposure, (list, tuple)) and len(exposure) == 2
                                              and exposure[0] - 3 * exposure[1] > 0 and exposure[1] >= 0)):
            raise OptionError(f'CameraNoise.exposure: expected [mean, std] with mean - 3 std > 0, or null, '
                              f'got {exposure!r}')
        if reference not in ('mean', 'clean'):
            raise OptionError(f'CameraNoise.reference: expected mean or clean, got {reference!r}')
        self.shot, self.read, self.read_line = shot, read, tuple(float(v) for v in read_line)
        self.tone_curve = tone_curve or None
        self.gamma = float(gamma) if gamma else None
        self.ccm = bool(ccm)
        self._red = _number_or_range(red_gain, 'red_gain', allow_zero=False) if red_gain else None
        self._blue = _number_or_range(blue_gain, 'blue_gain', allow_zero=False) if blue_gain else None
        self.red_gain, self.blue_gain = red_gain, blue_gain
        self.exposure = tuple(float(v) for v in exposure) if exposure else None
        self.bayer = _choices(bayer, 'bayer', tuple(BAYER_PATTERNS)) if bayer else None
        self.demosaic = _choices(demosaic, 'demosaic', tuple(DEMOSAIC_METHODS))
        self._quality = _number_or_range(jpeg_quality, 'jpeg_quality', integer=True) if jpeg_quality else None
        if self._quality and not (1 <= self._quality[0] and self._quality[1] <= 100):
            raise OptionError(f'CameraNoise.jpeg_quality: qualities are 1..100, got {jpeg_quality!r}')
        self.jpeg_quality = jpeg_quality
        self.jpeg_subsampling = _choices(
            [str(v) for v in jpeg_subsampling] if isinstance(jpeg_subsampling,
                                                             (list, tuple)) else str(jpeg_subsampling),
            'jpeg_subsampling', tuple(_JPEG_SUBSAMPLING))
        if not (isinstance(jpeg_prob, (int, float)) and 0 <= jpeg_prob <= 1):
            raise OptionError(f'CameraNoise.jpeg_prob: expected a probability in [0, 1], got {jpeg_prob!r}')
        self.jpeg_prob = float(jpeg_prob)
        self.reference, self.bounded = reference, bool(bounded)

    # ----------------------------------------------------------------------------------------------------- parameters
    def draw_params(self, rng):
        """The per-image camera: a dict of every random choice, drawn from ``rng`` in a fixed order."""
        p = {}
        if self.ccm:
            weights = rng.uniform(size=len(XYZ2CAM_MATRICES))
            xyz2cam = np.tensordot(weights / weights.sum(), XYZ2CAM_MATRICES, axes=1)
            rgb2cam = xyz2cam @ RGB2XYZ
            p['rgb2cam'] = rgb2cam / rgb2cam.sum(axis=1, keepdims=True)  # white stays white
            p['cam2rgb'] = np.linalg.inv(p['rgb2cam'])
        if self.exposure:
            mean, std = self.exposure
            p['exposure'] = float(np.clip(rng.normal(mean, std), mean - 3 * std, mean + 3 * std))
        p['red_gain'] = rng.uniform(*self._red) if self._red else 1.
        p['blue_gain'] = rng.uniform(*self._blue) if self._blue else 1.
        if self.bayer:
            p['bayer'] = self.bayer[rng.integers(len(self.bayer))]
            p['demosaic'] = self.demosaic[rng.integers(len(self.demosaic))]
        p['shot'] = _log_uniform(rng, *self._shot) if self._shot[1] > 0 else 0.
        if self._read is None:
            slope, intercept, std = self.read_line
            p['read'] = (
                math.exp(slope * math.log(p['shot']) + intercept + rng.normal(0, std)) if p['shot'] > 0 else 0.)
        else:
            p['read'] = _log_uniform(rng, *self._read) if self._read[1] > 0 else 0.
        if self._quality:
            p['jpeg_quality'] = int(rng.integers(self._quality[0], self._quality[1] + 1))
            p['jpeg_subsampling'] = self.jpeg_subsampling[rng.integers(len(self.jpeg_subsampling))]
            if self.jpeg_prob < 1 and rng.uniform() >= self.jpeg_prob:
                p['jpeg_quality'] = None  # this image is saved losslessly (8 bits)
        return p

    @staticmethod
    def _gains(p):
        """Per-channel (R, G, B) camera gains: white balance times the brightening that undoes the exposure."""
        return np.array([p['red_gain'], 1., p['blue_gain']]) / p.get('exposure', 1.)

    # ------------------------------------------------------------------------------------------------- the pipeline
    def unprocess(self, img, p):
        """sRGB (H, W, 3) -> raw in [0, 1]: Bayer (H, W), or (H, W, 3) when ``bayer`` is off."""
        x = np.clip(np.asarray(img, np.float32), 0, 1)
        if self.tone_curve:
            x = inverse_smoothstep(x)
        if self.gamma:
            x = np.maximum(x, np.float32(1e-8))**np.float32(self.gamma)
        if self.ccm:
            x = x @ p['rgb2cam'].T.astype(np.float32)
        raw = np.clip(x / self._gains(p).astype(np.float32), 0, 1)
        return mosaic(raw, p['bayer']) if self.bayer else raw

    def process(self, raw, p):
        """Raw (as :meth:`unprocess` returns) -> sRGB (H, W, 3) in [0, 1]: the camera's forward pipeline."""
        gains = self._gains(p).astype(np.float32)
        if self.bayer:
            h, w = raw.shape
            x = demosaic(np.clip(raw * gains[_cfa(p['bayer'], h, w)], 0, 1), p['bayer'], p['demosaic'])
        else:
            x = np.clip(raw * gains, 0, 1)
        if self.ccm:
            x = np.clip(x @ p['cam2rgb'].T.astype(np.float32), 0, 1)
        if self.gamma:
            x = np.maximum(x, np.float32(1e-8))**np.float32(1 / self.gamma)
        if self.tone_curve:
            x = smoothstep(x)
        return x

    @staticmethod
    def raw_variance(raw, p):
        """Variance of the noise of each raw value: ``shot * raw + read`` (heteroscedastic Gaussian)."""
        return np.float32(p['shot']) * raw + np.float32(p['read'])

    def draw_raw_noise(self, raw, p, rng):
        """Shot + read noise for the raw image ``raw`` (same shape), Gaussian with :meth:`raw_variance`."""
        return rng.standard_normal(raw.shape, dtype=np.float32) * np.sqrt(self.raw_variance(raw, p))

    def render(self, img, p, raw_noise, raw=None):
        """``x + d`` (before JPEG): the processed raw noise added to ``img`` (see ``reference`` and ``bounded``)."""
        x = np.asarray(img, np.float32)
        raw = self.unprocess(x, p) if raw is None else raw
        if self.reference == 'mean':
            d = (self.process(raw + raw_noise, p) - self.process(raw - raw_noise, p)) * np.float32(0.5)
        else:
            d = self.process(raw + raw_noise, p) - self.process(raw, p)
        if self.bounded:
            bound = np.clip(np.minimum(x, 1 - x), 0, None)
            d = np.clip(d, -bound, bound)
        return x + d

    @staticmethod
    def jpeg(img, quality, subsampling='420'):
        """JPEG round trip of an RGB image in [0, 1] through OpenCV (8-bit, the given quality and subsampling)."""
        img8 = np.round(np.clip(img, 0, 1) * 255.).astype(np.uint8)
        params = [
            cv2.IMWRITE_JPEG_QUALITY,
            int(quality), cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _JPEG_SUBSAMPLING[subsampling]
        ]
        ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(img8[..., ::-1]), params)
        if not ok:
            raise DataError(f'CameraNoise: OpenCV could not JPEG-encode an image of shape {img.shape}')
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) * np.float32(1 / 255.)

    def __call__(self, img, rng):
        x = np.asarray(img, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != 3:
            raise DataError(f'CameraNoise: expects an RGB image (H, W, 3), got shape {x.shape}')
        p = self.draw_params(rng)
        raw = self.unprocess(x, p)
        noisy = self.render(x, p, self.draw_raw_noise(raw, p, rng), raw)
        if self._quality:
            if p['jpeg_quality'] is None:
                noisy = np.round(np.clip(noisy, 0, 1) * 255.) * np.float32(1 / 255.)
            else:
                noisy = self.jpeg(noisy, p['jpeg_quality'], p['jpeg_subsampling'])
        return noisy.astype(np.float32)

    def sample(self, img, rng):
        """The noise field ``noisy - img`` (the JPEG error of the signal included when JPEG is on)."""
        img = np.asarray(img, dtype=np.float32)
        return self(img, rng) - img
