"""Network baselines: all weights / the first / the last layer, reset to in-memory reference weights per image."""
import pytest
import torch

from lan_basicsr.adapters.weight_adapter import FirstLayer, FullTrainable, LastLayer, parameter_module_calls
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.archs.restormer_arch import Restormer
from lan_basicsr.archs.uformer_arch import Uformer
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
from lan_basicsr.models.lan_model import adapt_batch, adapt_image, build_adapter
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


@pytest.mark.parametrize('adapter_type', ['FullTrainable', 'FirstLayer'])
def test_a_batch_gets_per_image_weights_equal_to_one_at_a_time(adapter_type):
    """reset(B images): each image its own weight copies (vmap); three Adam steps as three separate adaptations."""
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lq = torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    adapter = build_adapter(net, {'type': adapter_type, 'lr': 1e-2})
    batched = adapt_batch(net, adapter, ZSN2NLoss(), lq, lq.clamp(0, 1), steps=3)
    stacked = adapter.trainable_parameters()
    assert all(t.shape[0] == 3 for t in stacked)
    assert len(stacked) == (6 if adapter_type == 'FullTrainable' else 2)
    assert _changed(net, before) == []  # the module's own weights stay the reference ones
    for i in range(3):
        alone = adapt_image(
            net,
            build_adapter(net, {
                'type': adapter_type,
                'lr': 1e-2
            }),
            ZSN2NLoss(),
            lq[i:i + 1],
            lq[i:i + 1].clamp(0, 1),
            steps=3)
        assert batched[i].psnr == pytest.approx(alone.psnr, abs=1e-4)
        assert batched[i].loss == pytest.approx(alone.loss, rel=1e-5)
        torch.testing.assert_close(batched[i].output, alone.output, rtol=0, atol=1e-5)
        for copy, p in zip(stacked, adapter._trainable):  # image i's copy ended where its own adaptation did
            alone_p = dict(net.named_parameters())[next(n for n, q in net.named_parameters() if q is p)]
            torch.testing.assert_close(copy[i].detach(), alone_p.detach(), rtol=0, atol=1e-6)
        net.load_state_dict(before)


def test_per_image_weights_need_the_parameters_in_the_network_run():
    net = _net()
    adapter = build_adapter(net, {'type': 'FullTrainable'})
    adapter.reset(torch.rand(2, 3, 8, 8))
    with pytest.raises(OptionError, match='adapt.batch_size: 1'):
        adapter.network(lambda x: net(x))  # a callable that hides the module: no per-image weights possible
    assert adapter.network(net) is not net
