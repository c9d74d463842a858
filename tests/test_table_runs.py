"""The runs of a results table: rows from the table: section (lists, mappings merged under _base_, null entries
removed), command lines, and reuse of finished runs. Runs execute in-process through the real test pipeline."""
import json
import subprocess
from os import path as osp
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT, make_paired_folder, tiny_dncnn

from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.table_runs import options_digest, run_command, run_tables, table_runs
from lan_basicsr.test import test_pipeline as pipeline
from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.options import load_config

POLYU_RUNS = [
    'pretrained', 'full_zsn2n', 'full_nbr2nbr', 'first_zsn2n', 'first_nbr2nbr', 'last_zsn2n', 'last_nbr2nbr',
    'meta_zsn2n', 'meta_nbr2nbr', 'lan_zsn2n', 'lan_nbr2nbr'
]


def test_polyu_cross_tables_list_every_method_and_loss():
    opt = load_config(osp.join(ROOT, 'options', 'table_dncnn_polyu_cross.yml'))
    runs = table_runs(opt, 'table_dncnn_polyu_cross')
    assert [r.name for r in runs] == [f'table_dncnn_polyu_cross_{k}' for k in POLYU_RUNS]
    by_name = {r.name.replace('table_dncnn_polyu_cross_', ''): r for r in runs}
    assert by_name['pretrained'].cfg_options == {'adapt.steps': 0} and by_name['pretrained'].loss is None
    assert by_name['lan_nbr2nbr'].cfg_options == {'adapt.loss.type': 'Nbr2NbrLoss', 'adapt.type': 'LAN'}
    assert by_name['meta_zsn2n'].cfg_options == {
        'adapt.loss.type': 'ZSN2NLoss',
        'adapt.type': 'FullTrainable',
        'path.pretrain_network_g': 'experiments/train_meta_dncnn_polyu/models/net_g_latest.pth'
    }
    assert [r.label for r in runs[::2]
            ] == ['Pretrained', 'Full-trainable', 'First layer', 'Last layer', 'Meta-learning', 'LAN']
    assert opt['network_g'] == {'type': 'DnCNN', 'in_nc': 3, 'out_nc': 3, 'nc': 32, 'nb': 8, 'act_mode': 'R'}
    assert [opt['datasets'][k]['meta_info_file'] for k in ('test_1', 'test_2')
            ] == ['datasets/PolyU_unseen/meta_info_Canon80D.txt', 'datasets/PolyU_unseen/meta_info_SonyA7II.txt']
    assert opt['adapt']['lr'] is None  # the adapters' defaults, never tuned on the test tiles
    gauss = load_config(osp.join(ROOT, 'options', 'table_dncnn_gaussian_polyu_cross.yml'))
    assert gauss['path']['pretrain_network_g'] == 'lan_basicsr/weights/dncnn_gaussian.pth'
    meta = [r for r in table_runs(gauss, 'g') if r.method == 'meta']
    assert {r.cfg_options['path.pretrain_network_g'] for r in meta} == {'lan_basicsr/weights/dncnn_gaussian_meta.pth'}
    for arch in ('restormer', 'uformer'):
        opt = load_config(osp.join(ROOT, 'options', f'table_{arch}_polyu_cross.yml'))
        assert opt['network_g']['type'].lower() == arch and len(table_runs(opt, arch)) == 11
        assert opt['datasets']['test_2']['meta_info_file'] == 'datasets/PolyU_unseen/meta_info_SonyA7II_every4.txt'


def test_sections_lists_mappings_and_filters():
    demo = {'demo': {'methods': [{'key': 'pre', 'cfg_options': {'adapt.steps': 0}}, {'key': 'lan', 'label': 'LAN'}]}}
    assert [(r.name, r.loss, r.label) for r in table_runs(demo, 'd')] == [('d_pre', None, 'pre'),
                                                                          ('d_lan', None, 'LAN')]
    opt = {
        'table': {
            'losses': [{
                'key': 'z',
                'cfg_options': {
                    'adapt.loss.type': 'ZSN2NLoss'
                }
            }, {
                'key': 'n'
            }],
            'methods': {
                'a': {
                    'cfg_options': {
                        'adapt.type': 'LAN'
                    }
                },
                'gone': None,
                'p': {
                    'per_loss': False
                }
            }
        }
    }
    assert [r.name for r in table_runs(opt, 't')] == ['t_a_z', 't_a_n', 't_p']
    assert [r.name for r in table_runs(opt, 't', methods=['a'], losses=['n'])] == ['t_a_n']
    with pytest.raises(OptionError, match=r'--methods: unknown key\(s\) gone; table.methods has a, p'):
        table_runs(opt, 't', methods=['gone'])
    with pytest.raises(OptionError, match='no table.methods'):
        table_runs({'table': {}}, 't')
    with pytest.raises(OptionError, match='listed twice'):
        table_runs({'table': {'methods': [{'key': 'a'}, {'key': 'a'}]}}, 't')
    with pytest.raises(OptionError, match=r'table.methods.a.cfg_options: expected a mapping'):
        table_runs({'table': {'methods': {'a': {'cfg_options': ['adapt.type=LAN']}}}}, 't')


def test_command_lines():
    run = table_runs({'table': {
        'methods': {
            'm': {
                'cfg_options': {
                    'adapt.report_steps': [0, 2],
                    'x.y': None
                }
            }
        }
    }}, 'n')[0]
    args = [
        'tools/test.py', '-opt', 'o.yml', '--cfg-options', 'name=n_m', 'adapt.report_steps=[0,2]', 'x.y=None', 'z=1'
    ]
    assert run_command('o.yml', run, {'z': 1})[1:] == args
    assert run_command('o.yml', run, {'z': 1}, nproc_per_node=2)[1:] == \
        ['-m', 'torch.distributed.run', '--nproc_per_node=2', '--standalone'] + args + ['--launcher', 'pytorch']
    assert run_command('o.yml', run, {'z': 1}, 1, ['--nnodes=2'])[1:5] == \
        ['-m', 'torch.distributed.run', '--nproc_per_node=1', '--nnodes=2']


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A two-method, two-loss table on a tiny DnCNN; 'subprocesses' run the real test pipeline in this process."""
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=2, size=(16, 16))
    torch.manual_seed(0)
    net = tiny_dncnn()
    ckpt = str(tmp_path / 'net.pth')
    torch.save({'params': DnCNN(**{k: v for k, v in net.items() if k != 'type'}).state_dict()}, ckpt)
    opt = {
        '_base_': osp.join(ROOT, 'options', '_base_', 'lan_base.yml'),
        'num_gpu': 0,
        'network_g': net,
        'path': {
            'pretrain_network_g': ckpt
        },
        'adapt': {
            'steps': 2
        },
        'val': {
            'save_img': False
        },
        'datasets': {
            'test': {
                'name': 'toy',
                'type': 'PairedNoisyDataset',
                'dataroot_lq': f'{pairs}/lq',
                'dataroot_gt': f'{pairs}/gt'
            }
        },
        'table': {
            'losses': [{
                'key': 'z',
                'cfg_options': {
                    'adapt.loss.type': 'ZSN2NLoss'
                }
            }, {
                'key': 'n',
                'cfg_options': {
                    'adapt.loss.type': 'Nbr2NbrLoss'
                }
            }],
            'methods': {
                'pre': {
                    'cfg_options': {
                        'adapt.steps': 0
                    },
                    'per_loss': False
                },
                'lan': {
                    'cfg_options': {
                        'adapt.type': 'LAN'
                    }
                }
            }
        }
    }
    opt_path = tmp_path / 'toy.yml'
    opt_path.write_text(yaml.safe_dump(opt))
    calls = []

    def fake_run(cmd, cwd, env, **kw):
        calls.append(cmd)
        if 'fail' in ' '.join(cmd):
            return SimpleNamespace(returncode=3, stderr='boom\n')
        pipeline(str(tmp_path), argv=cmd[cmd.index('tools/test.py') + 1:])
        return SimpleNamespace(returncode=0, stderr='')

    monkeypatch.setattr(subprocess, 'run', fake_run)
    loaded = load_config(str(opt_path))
    return SimpleNamespace(
        root=str(tmp_path),
        opt=str(opt_path),
        calls=calls,
        runs=table_runs(loaded, 'toy'),
        digest=options_digest(loaded))


def test_runs_are_made_then_reused(toy):
    done = run_tables(toy.runs, toy.opt, toy.root, toy.digest, {'num_gpu': 0}, log=lambda line: None)
    assert [d['reused'] for d in done] == [False] * 3 and len(toy.calls) == 3
    summary = open(osp.join(toy.root, 'results', 'toy_lan_n', 'summary.csv')).read().splitlines()
    assert summary[0] == 'dataset,step,psnr,ssim,images' and summary[-1].startswith('toy,2,')
    record = json.load(open(osp.join(toy.root, 'results', 'toy_pre', 'table_run.json')))
    assert record['command'][-2:] == ['adapt.steps=0', 'num_gpu=0'] and record['options_sha256'] == toy.digest
    again = run_tables(toy.runs, toy.opt, toy.root, toy.digest, {'num_gpu': 0}, log=lambda line: None)
    assert [d['reused'] for d in again] == [True] * 3 and len(toy.calls) == 3  # nothing started
    # sharding does not change the numbers: the record is reused; another option file digest is run again (resumes)
    run_tables(toy.runs[:1], toy.opt, toy.root, toy.digest, {'num_gpu': 0}, nproc_per_node=2, log=lambda line: None)
    assert len(toy.calls) == 3
    run_tables(toy.runs[:1], toy.opt, toy.root, 'other', {'num_gpu': 0}, log=lambda line: None)
    assert len(toy.calls) == 4


def test_a_failing_run_stops_with_its_status(toy):
    lines = []
    with pytest.raises(SystemExit) as exc:
        run_tables(toy.runs, toy.opt, toy.root, toy.digest, {'fail': 1}, log=lines.append)
    assert exc.value.code == 3 and lines[-1] == 'boom' and len(toy.calls) == 1
