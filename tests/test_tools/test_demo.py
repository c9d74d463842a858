"""tools/demo.py: the method list comes from the option file, and the table is the report tool's Table 1."""
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
    opt['demo']['methods'].append({'key': 'extra', 'label': 'extra', 'cfg_options': {'adapt.type': 'FullTrainable'}})
    assert demo.demo_methods(opt)[-1]['key'] == 'extra'
    with pytest.raises(OptionError, match='unknown key'):
        demo.demo_methods(opt, ['nope'])
    with pytest.raises(OptionError, match='lists no demo methods'):
        demo.demo_methods({})
    opt['demo']['methods'].append({'key': 'extra'})  # two runs would share one results folder
    with pytest.raises(OptionError, match='a key is listed twice'):
        demo.demo_methods(opt)


def test_table_and_report_come_from_the_report_tool(demo, report_runs):
    """The demo's table is lan_basicsr.report's Table 1 of its runs (labels from demo.methods), written as is."""
    from lan_basicsr.report import table1
    results = osp.dirname(report_runs['lan'])
    methods = [{'key': 'pre', 'label': 'pretrained'}, {'key': 'lan', 'label': 'LAN (lr 0.05)'}]
    table, paths = demo.write_report('toy', methods, results)
    labels = {'toy_pre': 'pretrained', 'toy_lan': 'LAN (lr 0.05)'}
    expected = table1([report_runs['pre'], report_runs['lan']], labels=labels)
    assert table == expected.markdown()
    pre = expected.cell('toy', 'pretrained', 0)
    assert table.splitlines()[4] == f'| pretrained | {pre["psnr"]:.2f} / {pre["ssim"]:.4f} |  |  |'
    assert table.splitlines()[5].startswith('| LAN (lr 0.05) | ')
    with open(osp.join(results, 'toy_table.md')) as f:
        assert f.read() == table
    assert osp.isfile(osp.join(results, 'toy_report', 'index.html')) and paths['index.html'].endswith('index.html')
    from lan_basicsr.table_runs import cli_value
    assert cli_value([1, 2]) == '[1,2]' and cli_value(None) == 'None'
