"""Network baselines: all weights / the first / the last layer, reset to in-memory reference weights per image."""
import pytest
import torch

from lan_basicsr.adapters.weight_adapter import FirstLayer, FullTrainable, LastLayer, parameter_module_calls
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.archs.restormer_arch import Restormer
from lan_basicsr.archs.uformer_arch import Uformer
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
from lan_basicsr.models.lan_model import adapt_image, build_adapter
from lan_basicsr.utils.errors import OptionError


def _net(seed=0):
    torch.manual_seed(seed)
    return DnCNN(3, 3, 4, 3, 'R').eval()


def _changed(net, before):
    return [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]


@pytest.mark.parametrize('adapt,expected', [
    ({
        'type': 'FullTrainable'
    }, ['model.0.weight', 'model.0.bias', 'model.2.weight', 'model.2.bias', 'model.4.weight', 'model.4.bias']),
    ({
        'type': 'FirstLayer'
    }, ['model.0.weight', 'model.0.bias']),
    ({
        'type': 'LastLayer'
    }, ['model.4.weight', 'model.4.bias']),
    ({
        'type': 'LastLayer',
        'layer': 'model.2'
    }, ['model.2.weight', 'model.2.bias']),
])
def test_only_the_selected_weights_change_and_reset_restores_them(adapt, expected):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapter = build_adapter(net, adapt)
    assert adapter.lr == 5e-6
    lq = torch.rand(1, 3, 16, 16)
    result = adapt_image(net, adapter, ZSN2NLoss(), lq, torch.rand(1, 3, 16, 16), steps=2)
    assert result.stopped_at is None and _changed(net, before) == expected
    trainable = {id(p) for p in adapter.trainable_parameters()}
    assert all(p.requires_grad == (id(p) in trainable) for p in net.parameters())
    assert all(p.grad is None for p in net.parameters() if id(p) not in trainable)  # frozen ones: no gradient
    adapter.reset(lq)  # next image: bitwise the reference weights again, fresh optimiser
    assert _changed(net, before) == [] and not adapter.optimizer.state
    assert all(p.grad is None for p in net.parameters())


def test_init_path_is_the_reset_point(tmp_path):
    net, other = _net(0), _net(1)
    path = tmp_path / 'meta.pth'
    torch.save({'params': other.state_dict()}, path)
    adapter = FullTrainable(net, init_path=str(path))
    lq = torch.rand(1, 3, 8, 8)
    adapt_image(net, adapter, ZSN2NLoss(), lq, steps=2)
    assert _changed(net, other.state_dict())  # adapted away from it ...
    adapter.reset(lq)
    assert _changed(net, other.state_dict()) == []  # ... and back, without reading the file again
    path.unlink()
    adapter.reset(lq)
    assert _changed(net, other.state_dict()) == []


def test_layer_discovery_follows_the_forward_pass_on_every_arch():
    restormer = Restormer(
        dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1], LayerNorm_type='BiasFree').eval()
    uformer = Uformer(img_size=128, embed_dim=8, depths=[1] * 9, num_heads=[1] * 9, win_size=8, modulator=True).eval()
    expected = {restormer: ('patch_embed.proj', 'output'), uformer: ('input_proj.proj.0', 'output_proj.proj.0')}
    lq = torch.rand(1, 3, 16, 16)
    for net, (first, last) in expected.items():
        calls = parameter_module_calls(net, lq)
        assert (calls[0], calls[-1]) == (first, last)
        for cls, name in ((FirstLayer, first), (LastLayer, last)):
            adapter = cls(net)
            adapter.reset(lq)
            module = dict(net.named_modules())[name]
            assert adapter.layer == name
            assert [id(p) for p in adapter.trainable_parameters()] == [id(p) for p in module.parameters()]


def test_layer_discovery_ignores_registration_order():

    class Reversed(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.tail = torch.nn.Conv2d(4, 3, 3, padding=1)  # registered first, called last
            self.head = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return self.tail(self.head(x))

    net = Reversed()
    first, last = FirstLayer(net), LastLayer(net)
    first.reset(torch.rand(1, 3, 4, 4))
    last.reset(torch.rand(1, 3, 4, 4))
    assert (first.layer, last.layer) == ('head', 'tail')


def test_bad_layer_name():
    with pytest.raises(OptionError, match='adapt.layer: "model.9" is not a module of DnCNN'):
        FirstLayer(_net(), layer='model.9')
    with pytest.raises(OptionError, match='has no parameters'):
        FirstLayer(_net(), layer='model.1')  # a ReLU
