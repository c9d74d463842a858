"""Uformer (Wang et al., CVPR 2022), module for module as the official ``model.py``, so its checkpoints load.

Only the configuration space of the released denoisers is built: ``token_projection='linear'``, ``token_mlp`` 'leff'
or 'mlp'/'ffn', optional modulators; the cross-modulator and conv projection variants raise a ValueError.
timm is not needed for the three helpers the official code took from it: DropPath is a few lines here,
``trunc_normal_`` is in ``torch.nn.init`` and ``to_2tuple`` is a tuple literal.
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .arch_util import pad_to_centred_square, run_blocks

__all__ = ['Uformer']


def _window_partition(x, win):
    """(B, H, W, C) -> (B * H/win * W/win, win, win, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // win, win, w // win, win, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, win, win, c)


def _window_reverse(windows, win, h, w):
    """Inverse of :func:`_window_partition`: (B * nW, win, win, C) -> (B, H, W, C)."""
    b = windows.shape[0] // ((h // win) * (w // win))
    x = windows.view(b, h // win, w // win, win, win, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def _to_tokens(x):
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2).contiguous()


def _to_map(x, hw):
    """(B, H*W, C) -> (B, C, H, W), a channels-last strided view like the official code's (no copy)."""
    return x.transpose(1, 2).view(x.shape[0], x.shape[2], *hw)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``drop_prob`` (training only)."""

    def __init__(self, drop_prob=0.):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1. - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'


class LinearProjection(nn.Module):
    """Per-head q and kv from linear layers (keys ``to_q``, ``to_kv`` as in the official model)."""

    def __init__(self, dim, heads=8, dim_head=64, bias=True):
        super().__init__()
        inner_dim = dim_head * heads
        self.heads = heads
        self.to_q = nn.Linear(dim, inner_dim, bias=bias)
        self.to_kv = nn.Linear(dim, inner_dim * 2, bias=bias)

    def forward(self, x):
        b, n, c = x.shape
        q = self.to_q(x).reshape(b, n, 1, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)[0]
        kv = self.to_kv(x).reshape(b, n, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return q, kv[0], kv[1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias."""

    def __init__(self, dim, win_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0., proj_drop=0.):
        super().__init__()
        self.dim = dim
        self.win_size = win_size  # (Wh, Ww)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads)**-0.5

        wh, ww = win_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        # Index of the bias of every (query, key) token pair in the window: their offset (dh, dw), shifted to be
        # non-negative and flattened row-major. Persistent: the official checkpoints contain it.
        coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing='ij')).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
        index = (rel[..., 0] + wh - 1) * (2 * ww - 1) + (rel[..., 1] + ww - 1)
        self.register_buffer('relative_position_index', index)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=.02)

        self.qkv = LinearProjection(dim, num_heads, dim // num_heads, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, mask=None):
        b_, n, c = x.shape
        q, k, v = self.qkv(x)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            n_win = mask.shape[0]
            attn = attn.view(b_ // n_win, n_win, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(self.softmax(attn))
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))

    def extra_repr(self):
        return f'dim={self.dim}, win_size={self.win_size}, num_heads={self.num_heads}'


class Mlp(nn.Module):
    """Plain token MLP (``token_mlp`` 'mlp' / 'ffn')."""

    def __init__(self, in_features, hidden_features, act_layer=nn.GELU, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x, hw=None):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LeFF(nn.Module):
    """Locally-enhanced feed-forward: linear, 3x3 depthwise conv on the token map, linear (``token_mlp`` 'leff')."""

    def __init__(self, dim=32, hidden_dim=128, act_layer=nn.GELU):
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(dim, hidden_dim), act_layer())
        self.dwconv = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, groups=hidden_dim, kernel_size=3, stride=1, padding=1), act_layer())
        self.linear2 = nn.Sequential(nn.Linear(hidden_dim, dim))
        self.eca = nn.Identity()  # the official use_eca=False placeholder (no parameters)

    def forward(self, x, hw):
        b, _, c = x.shape
        # Same strided layouts as the official einops rearranges, so that the convs pick the same kernels.
        x = self.linear1(x)
        x = self.dwconv(x.view(b, *hw, x.shape[-1]).permute(0, 3, 1, 2))
        x = x.permute(0, 2, 3, 1).reshape(b, hw[0] * hw[1], -1)
        return self.eca(self.linear2(x))


class LeWinTransformerBlock(nn.Module):
    """(Shifted-)window attention block with optional modulator, then a LeFF/MLP; both pre-norm residual.

    The shift rule of the official model: when ``min(input_resolution) <= win_size`` the block does not shift and
    its window becomes the whole (build-time) resolution. ``input_resolution`` comes from the ``img_size`` the model
    is built with, not from the runtime input, so ``img_size`` changes the function computed.
    """

    def __init__(self,
                 dim,
                 input_resolution,
                 num_heads,
                 win_size=8,
                 shift_size=0,
                 mlp_ratio=4.,
                 qkv_bias=True,
                 qk_scale=None,
                 drop=0.,
                 attn_drop=0.,
                 drop_path=0.,
                 token_mlp='leff',
                 modulator=False):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.win_size = win_size
        self.shift_size = shift_size
        if min(input_resolution) <= win_size:
            self.shift_size = 0
            self.win_size = min(input_resolution)
        if not 0 <= self.shift_size < self.win_size:
            raise ValueError(f'Uformer shift_size must be in [0, win_size); got {self.shift_size}, {self.win_size}')

        # The modulator is sized by the configured win_size (not the possibly reduced self.win_size), as officially.
        self.modulator = nn.Embedding(win_size * win_size, dim) if modulator else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, (self.win_size, self.win_size),
            num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        if token_mlp in ('ffn', 'mlp'):
            self.mlp = Mlp(dim, hidden, drop=drop)
        elif token_mlp == 'leff':
            self.mlp = LeFF(dim, hidden)
        else:
            raise ValueError(f"Uformer token_mlp must be 'leff', 'mlp' or 'ffn'; got {token_mlp!r}")

    def extra_repr(self):
        return (f'dim={self.dim}, input_resolution={self.input_resolution}, num_heads={self.num_heads}, '
                f'win_size={self.win_size}, shift_size={self.shift_size}')

    def _shift_mask(self, h, w, ref):
        """Additive mask (nW, N, N): -100 between tokens that the cyclic shift brought from different regions."""
        win, shift = self.win_size, self.shift_size
        region = torch.zeros((1, h, w, 1), dtype=ref.dtype, device=ref.device)
        label = 0
        for hs in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
            for ws in (slice(0, -win), slice(-win, -shift), slice(-shift, None)):
                region[:, hs, ws, :] = label
                label += 1
        region = _window_partition(region, win).view(-1, win * win)
        mask = region.unsqueeze(1) - region.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.).masked_fill(mask == 0, 0.)

    def forward(self, x, hw):
        h, w = hw
        b, _, c = x.shape
        win, shift = self.win_size, self.shift_size

        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        mask = None
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = self._shift_mask(h, w, x)
        windows = _window_partition(x, win).view(-1, win * win, c)
        if self.modulator is not None:
            windows = windows + self.modulator.weight
        windows = self.attn(windows, mask=mask)
        x = _window_reverse(windows.view(-1, win, win, c), win, h, w)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))

        x = shortcut + self.drop_path(x.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x), hw))


class BasicUformerLayer(nn.Module):
    """A stage of ``depth`` blocks; with ``shift_flag`` every second block shifts its windows by win_size // 2."""

    def __init__(self,
                 dim,
                 input_resolution,
                 depth,
                 num_heads,
                 win_size,
                 mlp_ratio=4.,
                 qkv_bias=True,
                 qk_scale=None,
                 drop=0.,
                 attn_drop=0.,
                 drop_path=(),
                 use_checkpoint=False,
                 token_mlp='leff',
                 shift_flag=True,
                 modulator=False):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList([
            LeWinTransformerBlock(
                dim=dim,
                input_resolution=input_resolution,
                num_heads=num_heads,
                win_size=win_size,
                shift_size=win_size // 2 if (shift_flag and i % 2 == 1) else 0,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i],
                token_mlp=token_mlp,
                modulator=modulator) for i in range(depth)
        ])

    def extra_repr(self):
        return f'dim={self.dim}, input_resolution={self.input_resolution}, depth={self.depth}'

    def forward(self, x, hw):
        return run_blocks(self.blocks, x, hw, use_checkpoint=self.use_checkpoint)


class Downsample(nn.Module):
    """Tokens at (H, W) -> tokens at (H/2, W/2) through a 4x4 stride-2 conv."""

    def __init__(self, in_channel, out_channel):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channel, out_channel, kernel_size=4, stride=2, padding=1))

    def forward(self, x, hw):
        return _to_tokens(self.conv(_to_map(x, hw).contiguous()))


class Upsample(nn.Module):
    """Tokens at (H, W) -> tokens at (2H, 2W) through a 2x2 stride-2 transposed conv."""

    def __init__(self, in_channel, out_channel):
        super().__init__()
        self.deconv = nn.Sequential(nn.ConvTranspose2d(in_channel, out_channel, kernel_size=2, stride=2))

    def forward(self, x, hw):
        return _to_tokens(self.deconv(_to_map(x, hw).contiguous()))


class InputProj(nn.Module):
    """3x3 conv + LeakyReLU, image -> tokens."""

    def __init__(self, in_channel=3, out_channel=64):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channel, out_channel, 3, 1, 1), nn.LeakyReLU(inplace=True))

    def forward(self, x):
        return _to_tokens(self.proj(x))


class OutputProj(nn.Module):
    """3x3 conv, tokens -> image."""

    def __init__(self, in_channel=64, out_channel=3):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channel, out_channel, 3, 1, 1))

    def forward(self, x, hw):
        return self.proj(_to_map(x, hw))


@ARCH_REGISTRY.register()
class Uformer(nn.Module):
    """Uformer: a 4-level U-Net of LeWin transformer blocks; output = body(x) + x when ``dd_in == 3``.

    Constructor arguments (those expressible in YAML), module names, parameter and buffer names (including the 40
    persistent ``relative_position_index`` buffers of Uformer-B) follow the official ``model.py``, so official
    checkpoints load with ``strict=True``.

    ``img_size`` is part of the model, not just a size hint: a block whose build-time resolution
    (img_size / 2^level) is <= ``win_size`` does not shift its windows (see :class:`LeWinTransformerBlock`).
    The SIDD Uformer-B was trained with ``img_size=128`` (its 128x128 training patches); building it with 256 loads
    the same weights without error but computes a different function. See ``options/_base_/networks/``.

    Padding: every level must hold whole windows, so the input is zero-padded, centred, to a square whose side is
    the smallest multiple of ``16 * win_size`` (128 for ``win_size=8``) that fits it, as the official test script
    (``expand2square(..., factor=128)``) does; the output is cropped back. Any H, W >= 1 works (a 1x1 input runs
    at 128x128). The padding is differentiable with respect to the input.

    Args:
        use_checkpoint: recompute each block's activations in the backward pass (``torch.utils.checkpoint``,
            non-reentrant): same outputs and gradients, less memory.
        patch_norm: accepted for compatibility with the official signature; unused there too.
    """

    def __init__(self,
                 img_size=256,
                 in_chans=3,
                 dd_in=3,
                 embed_dim=32,
                 depths=(2, 2, 2, 2, 2, 2, 2, 2, 2),
                 num_heads=(1, 2, 4, 8, 16, 16, 8, 4, 2),
                 win_size=8,
                 mlp_ratio=4.,
                 qkv_bias=True,
                 qk_scale=None,
                 drop_rate=0.,
                 attn_drop_rate=0.,
                 drop_path_rate=0.1,
                 patch_norm=True,
                 use_checkpoint=False,
                 token_projection='linear',
                 token_mlp='leff',
                 shift_flag=True,
                 modulator=False,
                 cross_modulator=False):
        super().__init__()
        if len(depths) != 9 or len(num_heads) != 9:
            raise ValueError(f'Uformer needs 9 depths and 9 num_heads (4 encoder levels, bottleneck, 4 decoder '
                             f'levels); got {len(depths)} and {len(num_heads)}')
        if token_projection != 'linear':
            raise ValueError(f"Uformer: only token_projection='linear' is implemented; got {token_projection!r}")
        if cross_modulator:
            raise ValueError('Uformer: cross_modulator=True is not implemented (no released denoiser uses it)')
        if modulator and img_size // 8 < win_size:
            raise ValueError(f'Uformer: with modulator=True the decoder windows must be full size: need '
                             f'img_size // 8 >= win_size; got img_size={img_size}, win_size={win_size}')
        self.img_size = img_size
        self.embed_dim = embed_dim
        self.win_size = win_size
        self.dd_in = dd_in
        self.pad_multiple = 16 * win_size
        self.use_checkpoint = use_checkpoint

        # Stochastic depth as officially: linear over the encoder, constant in the bottleneck, mirrored in the decoder.
        enc_dpr = torch.linspace(0, drop_path_rate, sum(depths[:4]), device='cpu').tolist()
        conv_dpr = [drop_path_rate] * depths[4]
        dec_dpr = enc_dpr[::-1]
        if sum(depths[5:]) > len(dec_dpr):
            raise ValueError(f'Uformer: the decoder depths {list(depths[5:])} must not add up to more than the '
                             f'encoder depths {list(depths[:4])} (the official stochastic-depth schedule)')

        def layer(level, dim, i, dpr, with_modulator):
            res = img_size // (2**level)
            return BasicUformerLayer(
                dim=dim,
                input_resolution=(res, res),
                depth=depths[i],
                num_heads=num_heads[i],
                win_size=win_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr,
                use_checkpoint=use_checkpoint,
                token_mlp=token_mlp,
                shift_flag=shift_flag,
                modulator=with_modulator)

        def enc_slice(i):
            return enc_dpr[sum(depths[:i]):sum(depths[:i + 1])]

        def dec_slice(i):
            return dec_dpr[sum(depths[5:i]):sum(depths[5:i + 1])]

        self.pos_drop = nn.Dropout(p=drop_rate)
        self.input_proj = InputProj(dd_in, embed_dim)
        self.output_proj = OutputProj(2 * embed_dim, in_chans)

        self.encoderlayer_0 = layer(0, embed_dim, 0, enc_slice(0), False)
        self.dowsample_0 = Downsample(embed_dim, embed_dim * 2)
        self.encoderlayer_1 = layer(1, embed_dim * 2, 1, enc_slice(1), False)
        self.dowsample_1 = Downsample(embed_dim * 2, embed_dim * 4)
        self.encoderlayer_2 = layer(2, embed_dim * 4, 2, enc_slice(2), False)
        self.dowsample_2 = Downsample(embed_dim * 4, embed_dim * 8)
        self.encoderlayer_3 = layer(3, embed_dim * 8, 3, enc_slice(3), False)
        self.dowsample_3 = Downsample(embed_dim * 8, embed_dim * 16)

        self.conv = layer(4, embed_dim * 16, 4, conv_dpr, False)

        self.upsample_0 = Upsample(embed_dim * 16, embed_dim * 8)
        self.decoderlayer_0 = layer(3, embed_dim * 16, 5, dec_slice(5), modulator)
        self.upsample_1 = Upsample(embed_dim * 16, embed_dim * 4)
        self.decoderlayer_1 = layer(2, embed_dim * 8, 6, dec_slice(6), modulator)
        self.upsample_2 = Upsample(embed_dim * 8, embed_dim * 2)
        self.decoderlayer_2 = layer(1, embed_dim * 4, 7, dec_slice(7), modulator)
        self.upsample_3 = Upsample(embed_dim * 4, embed_dim)
        self.decoderlayer_3 = layer(0, embed_dim * 2, 8, dec_slice(8), modulator)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x):
        h, w = x.shape[-2:]
        inp, (top, left) = pad_to_centred_square(x, self.pad_multiple)
        side = inp.shape[-1]
        hws = [(side // 2**i, side // 2**i) for i in range(5)]

        y = self.pos_drop(self.input_proj(inp))
        conv0 = self.encoderlayer_0(y, hws[0])
        conv1 = self.encoderlayer_1(self.dowsample_0(conv0, hws[0]), hws[1])
        conv2 = self.encoderlayer_2(self.dowsample_1(conv1, hws[1]), hws[2])
        conv3 = self.encoderlayer_3(self.dowsample_2(conv2, hws[2]), hws[3])
        conv4 = self.conv(self.dowsample_3(conv3, hws[3]), hws[4])

        dec0 = self.decoderlayer_0(torch.cat([self.upsample_0(conv4, hws[4]), conv3], -1), hws[3])
        dec1 = self.decoderlayer_1(torch.cat([self.upsample_1(dec0, hws[3]), conv2], -1), hws[2])
        dec2 = self.decoderlayer_2(torch.cat([self.upsample_2(dec1, hws[2]), conv1], -1), hws[1])
        dec3 = self.decoderlayer_3(torch.cat([self.upsample_3(dec2, hws[1]), conv0], -1), hws[0])

        out = self.output_proj(dec3, hws[0])
        if self.dd_in == 3:
            out = out + inp
        return out[..., top:top + h, left:left + w]
