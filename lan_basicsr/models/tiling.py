"""Tiled test-time adaptation: the network applied tile by tile, so that memory follows the tile size.

``adapt.tile: {size: 512, pad: 16}`` (like HAT's ``tile:`` and Real-ESRGAN's ``--tile/--tile_pad``) makes LANModel
adapt through :class:`TiledNetwork` instead of the bare network; nothing else changes: φ (or the adapted weights)
belongs to the whole image and the loss, the optimiser step and the scoring are the whole image's.

How: the self-supervised losses call the network on the full image and on half-size sub-images; everything else they
do is pixel-wise and costs a few image-sized tensors. :class:`TiledNetwork` answers each of those calls tile by tile:

- forward (no gradient recorded): every tile of ``size`` x ``size`` output pixels is computed from its window, the
  tile plus ``pad`` pixels of context on each side (clipped at the image border, where the network pads as it does
  on the whole image); the output is assembled from the tile centres;
- backward: each window is recomputed with gradients and back-propagated with the centre's slice of the output
  gradient; the windows' input gradients are summed into the whole image's (so φ gets the gradient of the whole
  image's loss) and their parameter gradients are summed for the network adapters.

The tile grid lives in the coordinates of the tensor the network is given, so a half-size sub-image gets its own grid
of ``size`` tiles. The losses' 2x2 cells (ZS-N2N's down-sampler, Neighbor2Neighbor's sampler) are taken on the
assembled full-size tensors, never across a tile border, so they need no care. Peak memory: one window's activations
(forward and backward) plus the image-sized tensors of the loop (y, φ, its Adam moments, outputs, gradients).

Exactness: an output pixel is exact when its window holds the network's whole receptive field; DnCNN's is
``nb`` pixels in every direction (all 3x3 convolutions), so ``pad >= nb`` makes tiled adaptation equal to whole-image
adaptation up to float summation order (tested). Restormer (channel attention over the whole input) and Uformer
(padding to a square, shifted windows) see the whole image: tiled, they only see their window, an approximation
measured in ``docs/tiling.md``. ``pad: null`` picks the measured receptive radius of a bounded network (rounded up to
a multiple of 8) and :data:`GLOBAL_PAD` otherwise.

The wrapper is transparent: it registers the network's own submodules under their own names (no ``net.`` prefix), so
``adapt.layer`` names, ``state_dict`` keys, ``requires_grad`` flags and the first/last-layer search (forward pre-hooks
on a probe pass, which runs through the tiles) are the network's.
"""
import math

import torch
from basicsr.utils import get_root_logger
from torch import nn

from lan_basicsr.utils.errors import OptionError

__all__ = [
    'TiledNetwork', 'tile_windows', 'receptive_radius', 'auto_pad', 'build_tiled', 'activation_bytes_per_pixel',
    'choose_tile', 'GLOBAL_PAD', 'TILE_MULTIPLE', 'WORKING_FACTOR', 'IMAGE_BYTES_PER_PIXEL'
]

GLOBAL_PAD = 32  # context for networks whose receptive field is the whole image (HAT's tile_pad default)
TILE_MULTIPLE = 8  # automatic tile sizes and pads are multiples of 8 (Restormer's down-sampling factor)
WORKING_FACTOR = 2.2  # peak memory of a window / the tensors autograd saves in it (measured, embedded DnCNN, CPU)
IMAGE_BYTES_PER_PIXEL = 150  # the loop's image-sized tensors per pixel (140 measured, LAN + ZS-N2N; choose_tile)


def tile_windows(length, size, pad):
    """Split ``range(length)`` into ``ceil(length / size)`` near-equal tiles; yield one triple per tile.

    ``(window, centre_in_window, centre)``: the window is the tile plus ``pad`` pixels each side clipped to
    ``[0, length)``; ``centre_in_window`` is the tile's slice inside the window, ``centre`` its slice in the image.
    """
    n = max(1, math.ceil(length / size))
    bounds = [i * length // n for i in range(n + 1)]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        lo, hi = max(0, start - pad), min(length, stop + pad)
        yield slice(lo, hi), slice(start - lo, stop - lo), slice(start, stop)


class _TiledFunction(torch.autograd.Function):
    """``net(x)`` computed tile by tile; backward recomputes each tile (no graph is kept between the two)."""

    @staticmethod
    def forward(ctx, tiled, x, *params):
        ctx.tiled = tiled
        ctx.params = params
        ctx.save_for_backward(x)
        return tiled.assemble(x)

    @staticmethod
    def backward(ctx, grad_out):
        x, = ctx.saved_tensors
        tiled, params = ctx.tiled, ctx.params
        need_x = ctx.needs_input_grad[1]
        need_p = [i for i, need in enumerate(ctx.needs_input_grad[2:]) if need]
        grad_x = torch.zeros_like(x) if need_x else None
        grad_p = [None] * len(params)
        for rows, cols in tiled.windows(x):
            (win_r, mid_r, out_r), (win_c, mid_c, out_c) = rows, cols
            xt = x[..., win_r, win_c].detach().requires_grad_(need_x)
            with torch.enable_grad():
                yt = tiled.net(xt)[..., mid_r, mid_c]
            inputs = ([xt] if need_x else []) + [params[i] for i in need_p]
            grads = torch.autograd.grad(yt, inputs, grad_out[..., out_r, out_c], allow_unused=True)
            if need_x:
                grad_x[..., win_r, win_c] += grads[0]
                grads = grads[1:]
            for i, g in zip(need_p, grads):
                if g is not None:
                    grad_p[i] = g if grad_p[i] is None else grad_p[i].add_(g)
            del yt, grads
        for i in need_p:  # a parameter that no tile used (an unused branch) gets a zero gradient, as untiled
            if grad_p[i] is None:
                grad_p[i] = torch.zeros_like(params[i])
        return (None, grad_x, *grad_p)


class TiledNetwork(nn.Module):
    """``net`` applied in tiles of ``size`` output pixels with ``pad`` pixels of context (see the module doc).

    At most one window's graph exists at any time, whatever the loss holds (a no-grad call on an input of one tile is
    passed to ``net`` as it is). The output must have the input's height and width (a denoiser). ``size`` None
    switches tiling off (``net`` is called as it is); ``size`` and ``pad`` may be changed between calls. The
    network's submodules, parameters and buffers are registered here under their own names.
    """

    def __init__(self, net, size, pad):
        super().__init__()
        if isinstance(net, TiledNetwork):
            net = net.net
        if not (size is None or isinstance(size, int) and not isinstance(size, bool) and size >= 1):
            raise OptionError(f'adapt.tile.size: expected a positive integer (pixels), got {size!r}')
        if not (isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0):
            raise OptionError(f'adapt.tile.pad: expected an integer >= 0 (pixels), got {pad!r}')
        object.__setattr__(self, 'net', net)  # not a child: its children are ours
        for name, child in net.named_children():
            self.add_module(name, child)
        for name, param in net.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in net.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=name not in net._non_persistent_buffers_set)
        self.size, self.pad = size, pad
        self.training = net.training

    def train(self, mode=True):
        self.net.train(mode)
        return super().train(mode)

    def windows(self, x):
        """The tiles of ``x`` (…,H,W): ``((rows window, rows centre in window, rows centre), (cols …))`` pairs."""
        h, w = x.shape[-2:]
        rows, cols = list(tile_windows(h, self.size, self.pad)), list(tile_windows(w, self.size, self.pad))
        return [(r, c) for r in rows for c in cols]

    @torch.no_grad()
    def assemble(self, x):
        """``net(x)`` from the tile centres, without recording gradients."""
        out = None
        for (win_r, mid_r, out_r), (win_c, mid_c, out_c) in self.windows(x):
            yt = self.net(x[..., win_r, win_c])
            if yt.shape[-2:] != (win_r.stop - win_r.start, win_c.stop - win_c.start):
                raise OptionError(f'adapt.tile: {type(self.net).__name__} returned {tuple(yt.shape[-2:])} for a '
                                  f'{win_r.stop - win_r.start}x{win_c.stop - win_c.start} input; tiling needs an '
                                  'output of the input\'s size (a denoiser)')
            if out is None:
                out = yt.new_empty(yt.shape[:-2] + x.shape[-2:])
            out[..., out_r, out_c] = yt[..., mid_r, mid_c]
        return out

    def forward(self, x):
        if self.size is None:  # switched off (e.g. for a photo that fits in memory whole)
            return self.net(x)
        params = [p for p in self.parameters() if p.requires_grad]
        if not torch.is_grad_enabled() or not (x.requires_grad or params):
            h, w = x.shape[-2:]
            return self.net(x) if h <= self.size and w <= self.size else self.assemble(x)
        # Even an input of one tile goes through the function: the loss holds several network outputs at once
        # (ZS-N2N: the image and two sub-images), and only here is none of their graphs kept.
        return _TiledFunction.apply(self, x, *params)

    def extra_repr(self):
        return f'tile size={self.size}, pad={self.pad}'


def _probe(net, size, channels):
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    dtype = param.dtype if param is not None else torch.float32
    if channels is None:
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else 3
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, channels, size, size, generator=generator).to(device=device, dtype=dtype)


def receptive_radius(net, probe_size=65, channels=None, probes=2):
    """How far (pixels) an input pixel reaches the output: the support of a centre output pixel's input gradient.

    Measured on ``probes`` random ``probe_size`` squares (the union of their supports, so that a unit that happens
    to be inactive on one probe is not missed). Returns None when the support reaches the probe's border (the
    receptive field is the whole image, or larger than the probe). ``net`` is left as it was (no gradient stored).
    """
    centre = probe_size // 2
    support = None
    for k in range(probes):
        x = _probe(net, probe_size, channels).roll(k * 7, dims=-1).requires_grad_(True)
        with torch.enable_grad():
            y = net(x)
            grad, = torch.autograd.grad(y[..., centre, centre].sum(), x)
        mask = grad.abs().sum(dim=(0, 1)) > 0
        support = mask if support is None else support | mask
    rows, cols = torch.nonzero(support, as_tuple=True)
    if rows.numel() == 0:
        return 0
    radius = int(max((rows - centre).abs().max(), (cols - centre).abs().max()))
    return None if radius >= centre else radius


def auto_pad(net):
    """``(pad, radius)``: the receptive radius rounded up to a multiple of 8, or :data:`GLOBAL_PAD` when unbounded."""
    radius = receptive_radius(net)
    if radius is None:
        return GLOBAL_PAD, None
    return max(TILE_MULTIPLE, math.ceil(radius / TILE_MULTIPLE) * TILE_MULTIPLE), radius


def build_tiled(net, tile_opt, where='adapt.tile'):
    """:class:`TiledNetwork` from ``{size, pad}`` (``pad: null`` = :func:`auto_pad`); ``(net, resolved opt)``.

    ``tile_opt`` None or ``{size: null}`` returns ``(net, None)``: no tiling.
    """
    if tile_opt is None:
        return net, None
    if not isinstance(tile_opt, dict):
        raise OptionError(f'{where}: expected a mapping {{size: <pixels>, pad: <pixels or null>}}, got {tile_opt!r}')
    unknown = sorted(set(tile_opt) - {'size', 'pad'})
    if unknown:
        raise OptionError(f'{where}: unknown key(s) {", ".join(unknown)} (it takes size, pad)')
    size, pad = tile_opt.get('size'), tile_opt.get('pad')
    if size is None:
        return net, None
    note = 'pad given'
    if pad is None:
        pad, radius = auto_pad(net)
        note = (f'receptive radius {radius} px: tiled = whole-image adaptation' if radius is not None else
                'receptive field = the whole image: tiled adaptation approximates whole-image adaptation')
    tiled = TiledNetwork(net, size, pad)
    get_root_logger().info(f'Tiled adaptation of {type(net).__name__}: tiles of {size} px, pad {pad} px ({note})')
    return tiled, {'size': size, 'pad': pad}


def activation_bytes_per_pixel(net, probe_size=128, channels=None):
    """Bytes per input pixel of one forward + backward of ``net``: the tensors autograd saves on a ``probe_size``
    square, times :data:`WORKING_FACTOR` for the gradients and buffers of the backward pass and the allocator's slack
    (calibrated on the peak RSS of tiles of the embedded DnCNN, 2.0-2.3 KB/px). ``net`` is left unchanged."""
    x = _probe(net, probe_size, channels).requires_grad_(True)
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = net(x)
        torch.autograd.grad(y.sum(), x)
    return WORKING_FACTOR * (sum(storages.values()) + 2 * y.numel() * y.element_size()) / probe_size**2


def choose_tile(height,
                width,
                bytes_per_pixel,
                budget,
                pad,
                image_bytes_per_pixel=IMAGE_BYTES_PER_PIXEL,
                max_size=512,
                min_size=64):
    """Tile size for adapting an ``height`` x ``width`` image within ``budget`` bytes; None = no tiling needed.

    The image-sized tensors of the loop (about ``image_bytes_per_pixel`` per pixel: y, φ, its Adam moments, tanh φ,
    the outputs, the gradients; 140 measured for LAN + ZS-N2N) are there anyway; the rest of the budget goes to the
    network's activations (``bytes_per_pixel`` of its input, see :func:`activation_bytes_per_pixel`): untiled, the
    loss runs the network with gradients on 1.5 image areas per step (ZS-N2N: the image and two half-size
    sub-images); tiled, on one window (tile + 2 pad) at a time. The largest multiple of 8 whose window fits is
    chosen, within ``[min_size, max_size]``: beyond 512 px the overlap saved is a few percent, below 64 px the
    overlap costs more than the tile (a budget too small for that is exceeded rather than crawled through).
    """
    pixels = height * width
    left = budget - image_bytes_per_pixel * pixels
    if 1.5 * pixels * bytes_per_pixel <= left:
        return None
    side = int(math.sqrt(max(left, 0) / bytes_per_pixel)) - 2 * pad
    return min(max_size, max(min_size, side // TILE_MULTIPLE * TILE_MULTIPLE))
