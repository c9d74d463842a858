"""tools/demo.py: the method list comes from the option file, and the table reads LANModel's summary.csv."""
import importlib
import sys
from os import path as osp

import pytest

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.options import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def demo():
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        yield importlib.import_module('demo')
    finally:
        sys.path.remove(osp.join(ROOT, 'tools'))


def test_methods_are_data_driven(demo):
    opt = load_config(osp.join(ROOT, demo.DEFAULT_OPT))
    assert [m['key'] for m in demo.demo_methods(opt)] == ['pretrained', 'lan', 'full', 'meta']
    assert [m['key'] for m in demo.demo_methods(opt, ['full'])] == ['full']
    opt['demo']['methods'].append({'key': 'meta', 'label': 'meta', 'cfg_options': {'adapt.type': 'FullTrainable'}})
    assert demo.demo_methods(opt)[-1]['key'] == 'meta'
    with pytest.raises(OptionError, match='unknown key'):
        demo.demo_methods(opt, ['nope'])
    with pytest.raises(OptionError, match='lists no demo methods'):
        demo.demo_methods({})


def test_table_from_summaries(demo, tmp_path):
    path = tmp_path / 'summary.csv'
    path.write_text('dataset,step,psnr,ssim,images\nA,0,25.000000,0.500000,3\nA,20,26.000000,0.600000,3\n')
    lan = demo.read_summary(str(path))
    assert lan == {'A': {0: (25., 0.5, 3), 20: (26., 0.6, 3)}}
    methods = [{'key': 'pretrained', 'label': 'pretrained'}, {'key': 'lan', 'label': 'LAN'}]
    table = demo.format_table(methods, [{'A': {0: lan['A'][0]}}, lan], {'A': (18., 0.3)})
    assert table.splitlines()[:5] == [
        'A (3 images), PSNR (dB) / SSIM after k adaptation steps (noisy input: 18.00 / 0.3000):', '',
        '| method | k = 0 | k = 20 |', '|---|---|---|', '| pretrained | 25.00 / 0.5000 |  |'
    ]
    assert table.splitlines()[5] == '| LAN | 25.00 / 0.5000 | 26.00 / 0.6000 |'
    assert demo._cli_value([1, 2]) == '[1,2]' and demo._cli_value(None) == 'None'
