"""The embedded models: every entry's file ships and loads strictly into its network_g block."""
from os import path as osp

import pytest
from basicsr.utils.registry import ARCH_REGISTRY

from lan_basicsr.embedded import DEFAULT_REAL_PHOTO_MODEL, EMBEDDED_MODELS, embedded_model
from lan_basicsr.utils.checkpoint import load_network
from lan_basicsr.utils.errors import OptionError


@pytest.mark.parametrize('name', sorted(EMBEDDED_MODELS))
def test_every_embedded_model_loads_strictly(name):
    path, network_g = embedded_model(name)
    assert osp.isfile(path)
    net = ARCH_REGISTRY.get(network_g.pop('type'))(**network_g)
    load_network(net, path, strict=True)


def test_default_and_unknown_names():
    assert embedded_model()[0] == embedded_model(DEFAULT_REAL_PHOTO_MODEL)[0]
    with pytest.raises(OptionError, match='dncnn_gaussian'):
        embedded_model('nope')
