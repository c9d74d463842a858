"""Restormer (Zamir et al., CVPR 2022), module for module as the official code, so ``real_denoising.pth`` loads."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from einops import rearrange
from torch import nn

from .arch_util import pad_to_multiple, run_blocks

__all__ = ['Restormer']


class _BiasFreeLayerNorm(nn.Module):
    """Channel LayerNorm without mean subtraction or bias (the official 'BiasFree' variant)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        var = x.var(1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight[:, None, None]


class _WithBiasLayerNorm(nn.Module):
    """Standard channel LayerNorm (the official 'WithBias' variant)."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = x.var(1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight[:, None, None] + self.bias[:, None, None]


class LayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map; ``body`` holds the parameters as in the official keys."""

    def __init__(self, dim, LayerNorm_type):
        super().__init__()
        self.body = _BiasFreeLayerNorm(dim) if LayerNorm_type == 'BiasFree' else _WithBiasLayerNorm(dim)

    def forward(self, x):
        return self.body(x)


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN): GELU(dwconv branch 1) * dwconv branch 2."""

    def __init__(self, dim, ffn_expansion_factor, bias):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): attention across channels, linear in H*W."""

    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x):
        h, w = x.shape[-2:]
        q, k, v = (
            rearrange(t, 'b (head c) h w -> b head c (h w)', head=self.num_heads)
            for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = rearrange(attn @ v, 'b head c (h w) -> b (head c) h w', head=self.num_heads, h=h, w=w)
        return self.project_out(out)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(self, dim, num_heads, ffn_expansion_factor, bias, LayerNorm_type):
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 conv embedding (always without bias, as in the official model)."""

    def __init__(self, in_c=3, embed_dim=48, bias=False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: conv to C/2 then pixel-unshuffle."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x):
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: conv to 2C then pixel-shuffle."""

    def __init__(self, n_feat):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


@ARCH_REGISTRY.register()
class Restormer(nn.Module):
    """Restormer: a 4-level U-Net of transposed-attention transformer blocks; output = body(x) + x.

    Constructor arguments, module names, parameter names and registration order follow the official
    ``restormer_arch.py``, so official checkpoints load with ``strict=True``. The SIDD checkpoint
    ``real_denoising.pth`` needs ``LayerNorm_type='BiasFree'`` (the class default 'WithBias' does not load it) and
    ``bias=False``; see ``options/_base_/networks/restormer_sidd.yml``.

    Padding: the three down-samplings need H and W to be multiples of 8. ``forward`` reflect-pads the bottom and
    right edges up to the next multiple of 8 (as the official demo/test scripts do) and crops the output back;
    inputs too small to reflect (a side < pad + 1) are replicate-padded instead. Both are differentiable.

    Args:
        use_checkpoint: recompute each transformer block's activations in the backward pass instead of storing
            them (``torch.utils.checkpoint``, non-reentrant): same outputs and gradients, less memory.
    """

    def __init__(self,
                 inp_channels=3,
                 out_channels=3,
                 dim=48,
                 num_blocks=(4, 6, 6, 8),
                 num_refinement_blocks=4,
                 heads=(1, 2, 4, 8),
                 ffn_expansion_factor=2.66,
                 bias=False,
                 LayerNorm_type='WithBias',
                 dual_pixel_task=False,
                 use_checkpoint=False):
        super().__init__()
        if LayerNorm_type not in ('WithBias', 'BiasFree'):
            raise ValueError(f"Restormer LayerNorm_type must be 'WithBias' or 'BiasFree'; got {LayerNorm_type!r}")
        self.use_checkpoint = use_checkpoint
        self.dual_pixel_task = dual_pixel_task

        def stage(channels, n_heads, depth):
            blocks = [
                TransformerBlock(channels, n_heads, ffn_expansion_factor, bias, LayerNorm_type) for _ in range(depth)
            ]
            return nn.Sequential(*blocks)

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = stage(dim, heads[0], num_blocks[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(dim * 2, heads[1], num_blocks[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, heads[2], num_blocks[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(dim * 8, heads[3], num_blocks[3])

        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(dim * 4, heads[2], num_blocks[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(dim * 2, heads[1], num_blocks[1])
        self.up2_1 = Upsample(dim * 2)  # level 1 keeps 2*dim channels after the skip concat (no reduction)
        self.decoder_level1 = stage(dim * 2, heads[0], num_blocks[0])
        self.refinement = stage(dim * 2, heads[0], num_refinement_blocks)

        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def _stage(self, blocks, x):
        return run_blocks(blocks, x, use_checkpoint=self.use_checkpoint)

    def forward(self, x):
        h, w = x.shape[-2:]
        inp = pad_to_multiple(x, 8, mode='reflect')

        emb = self.patch_embed(inp)
        enc1 = self._stage(self.encoder_level1, emb)
        enc2 = self._stage(self.encoder_level2, self.down1_2(enc1))
        enc3 = self._stage(self.encoder_level3, self.down2_3(enc2))
        latent = self._stage(self.latent, self.down3_4(enc3))

        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1))
        dec3 = self._stage(self.decoder_level3, dec3)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1))
        dec2 = self._stage(self.decoder_level2, dec2)
        dec1 = self._stage(self.decoder_level1, torch.cat([self.up2_1(dec2), enc1], 1))
        dec1 = self._stage(self.refinement, dec1)

        if self.dual_pixel_task:
            out = self.output(dec1 + self.skip_conv(emb))
        else:
            out = self.output(dec1) + inp
        return out[..., :h, :w]
