"""DnCNN (Zhang et al., TIP 2017) in KAIR's layout, so that KAIR's released ``dncnn_*.pth`` load unchanged."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

__all__ = ['DnCNN']

_ACTIVATIONS = {'R': lambda: nn.ReLU(inplace=True), 'L': lambda: nn.LeakyReLU(negative_slope=0.2, inplace=True)}


@ARCH_REGISTRY.register()
class DnCNN(nn.Module):
    """Residual denoiser: ``nb`` 3x3 convs predict the noise, the output is ``x - noise``.

    The layers form one flat ``nn.Sequential`` named ``model`` exactly as KAIR builds it: conv+act, then
    ``nb - 2`` x (conv [+ BatchNorm] + act), then conv. Keys are ``model.0.weight``, ``model.0.bias``, ... so
    KAIR checkpoints load strictly.

    Args:
        in_nc, out_nc: input / output channels (3 for colour, 1 for grey); ``out_nc`` must equal ``in_nc``.
        nc: feature channels.
        nb: number of conv layers (KAIR's colour blind model: 20; grey ``dncnn_15/25/50``: 17).
        act_mode: 'R' (ReLU, no BatchNorm: KAIR's released weights, whose BN is merged into the convs),
            'BR' (BatchNorm + ReLU, KAIR's training layout); 'L' / 'BL' use LeakyReLU(0.2) as KAIR does.

    Padding: none needed; any H, W >= 1 works (zero padding inside each conv, like the original).
    """

    def __init__(self, in_nc=1, out_nc=1, nc=64, nb=17, act_mode='BR'):
        super().__init__()
        if act_mode not in ('R', 'BR', 'L', 'BL'):
            raise ValueError(f'DnCNN act_mode must be one of R, BR, L, BL; got {act_mode!r}')
        if nb < 2:
            raise ValueError(f'DnCNN needs nb >= 2 conv layers; got {nb}')
        if in_nc != out_nc:
            raise ValueError(f'DnCNN predicts the residual, so out_nc must equal in_nc; got {in_nc} and {out_nc}')
        act = _ACTIVATIONS[act_mode[-1]]
        layers = [nn.Conv2d(in_nc, nc, 3, 1, 1, bias=True), act()]
        for _ in range(nb - 2):
            layers.append(nn.Conv2d(nc, nc, 3, 1, 1, bias=True))
            if act_mode.startswith('B'):
                # KAIR's BatchNorm settings (momentum 0.9 in PyTorch's convention, eps 1e-4).
                layers.append(nn.BatchNorm2d(nc, momentum=0.9, eps=1e-4, affine=True))
            layers.append(act())
        layers.append(nn.Conv2d(nc, out_nc, 3, 1, 1, bias=True))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.model(x)
