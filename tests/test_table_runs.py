"""The runs of a results table: rows from the table: section (lists, mappings merged under _base_, null entries
removed), command lines, and reuse of finished runs. Runs execute in-process through the real test pipeline."""
import json
import os
import subprocess
from os import path as osp
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, import_tool, write_toy_options

from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.embedded import embedded_model
from lan_basicsr.table_runs import options_digest, run_command, run_tables, table_runs, write_report
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
    assert [opt['datasets'][k]['meta_info_file'] for k in ('test_1', 'test_2')] == [
        'datasets/PolyU_unseen/meta_info_Canon80D_every4.txt', 'datasets/PolyU_unseen/meta_info_SonyA7II_every4.txt'
    ]
    assert opt['adapt']['lr'] is None  # the adapters' defaults, never tuned on the test tiles
    gauss = load_config(osp.join(ROOT, 'options', 'table_dncnn_gaussian_polyu_cross.yml'))
    assert gauss['path']['pretrain_network_g'] == 'lan_basicsr/weights/dncnn_gaussian.pth'
    meta = [r for r in table_runs(gauss, 'g') if r.method == 'meta']
    assert {r.cfg_options['path.pretrain_network_g'] for r in meta} == {'lan_basicsr/weights/dncnn_gaussian_meta.pth'}
    camera = load_config(osp.join(ROOT, 'options', 'table_dncnn_camera_polyu_cross.yml'))
    assert [r.name for r in table_runs(camera, 'c')] == [f'c_{k}' for k in POLYU_RUNS if not k.startswith('meta')]
    assert camera['datasets'] == opt['datasets']  # the same tiles as the seen-camera table
    for table, model in ((gauss, 'dncnn_gaussian'), (camera, 'dncnn_camera')):  # the embedded model, loading strictly
        path, network_g = embedded_model(model)
        assert table['network_g'] == network_g and osp.join(ROOT, table['path']['pretrain_network_g']) == path
        net = DnCNN(**{k: v for k, v in network_g.items() if k != 'type'})
        net.load_state_dict(torch.load(path, map_location='cpu', weights_only=True)['params'], strict=True)
    for arch in ('restormer', 'uformer'):
        opt = load_config(osp.join(ROOT, 'options', f'table_{arch}_polyu_cross.yml'))
        assert opt['network_g']['type'].lower() == arch and len(table_runs(opt, arch)) == 11
        # every 12th tile per camera: a subset of the DnCNN table's every 4th, the rest of the test set unchanged
        assert [opt['datasets'][k]['meta_info_file'] for k in ('test_1', 'test_2')] == [
            'datasets/PolyU_unseen/meta_info_Canon80D_every12.txt',
            'datasets/PolyU_unseen/meta_info_SonyA7II_every12.txt'
        ]
        assert {k: {**v, 'meta_info_file': None} for k, v in opt['datasets'].items()} == \
            {k: {**v, 'meta_info_file': None} for k, v in camera['datasets'].items()}


def test_embedded_model_entries():
    """An entry's ``model`` gives the checkpoint and every network_g key before its cfg_options (which win)."""
    path, network_g = embedded_model('dncnn_camera')
    opt = {'table': {'methods': {'cam': {'model': 'dncnn_camera', 'cfg_options': {'network_g.nb': 3}}, 'plain': {}}}}
    cam, plain = table_runs(opt, 't')
    assert cam.cfg_options == {
        'path.pretrain_network_g': path,
        'network_g.type': 'DnCNN',
        'network_g.in_nc': 3,
        'network_g.out_nc': 3,
        'network_g.nc': 32,
        'network_g.nb': 3,
        'network_g.act_mode': 'R'
    } and network_g['nb'] == 12
    assert plain.cfg_options == {}
    assert run_command('o.yml', cam)[-2:] == ['network_g.nb=3', 'network_g.act_mode=R']
    with pytest.raises(OptionError, match='embedded model "nope" does not exist'):
        table_runs({'table': {'methods': {'x': {'model': 'nope'}}}}, 't')


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
    table = {
        'losses': [{
            'key': 'z',
            'label': 'ZS-N2N',
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
                'label': 'Pretrained',
                'cfg_options': {
                    'adapt.steps': 0
                },
                'per_loss': False
            },
            'lan': {
                'label': 'LAN',
                'cfg_options': {
                    'adapt.type': 'LAN'
                }
            }
        }
    }
    opt_path = write_toy_options(
        str(tmp_path), {'steps': 2}, num=2, size=(16, 16), val={'save_img': False}, table=table)
    calls = []

    def fake_run(cmd, cwd, env, **kw):
        calls.append(cmd)
        if 'fail=3' in cmd:
            return SimpleNamespace(returncode=3, stderr='Traceback\nboom\n')
        if 'fail=2' in cmd:
            return SimpleNamespace(returncode=2, stderr='error: datasets.test: something to fix\n')
        pipeline(str(tmp_path), argv=cmd[cmd.index('tools/test.py') + 1:])
        return SimpleNamespace(returncode=0, stderr='')

    monkeypatch.setattr(subprocess, 'run', fake_run)
    loaded = load_config(str(opt_path))
    return SimpleNamespace(
        root=str(tmp_path),
        results=str(tmp_path / 'results'),
        opt=str(opt_path),
        calls=calls,
        runs=table_runs(loaded, 'toy'),
        digest=options_digest(loaded))


def quiet(line):
    pass


def test_runs_are_made_then_reused(toy):
    done = run_tables(toy.runs, toy.opt, toy.root, toy.results, toy.digest, {'num_gpu': 0}, log=quiet)
    assert [d['reused'] for d in done] == [False] * 3 and len(toy.calls) == 3
    summary = open(osp.join(toy.results, 'toy_lan_n', 'summary.csv')).read().splitlines()
    assert summary[0] == 'dataset,step,psnr,ssim,images' and summary[-1].startswith('toy,2,')
    record = json.load(open(osp.join(toy.results, 'toy_pre', 'table_run.json')))
    assert record['args'][-2:] == ['adapt.steps=0', 'num_gpu=0'] and record['options_sha256'] == toy.digest
    again = run_tables(toy.runs, toy.opt, toy.root, toy.results, toy.digest, {'num_gpu': 0}, log=quiet)
    assert [d['reused'] for d in again] == [True] * 3 and len(toy.calls) == 3  # nothing started
    # sharding does not change the numbers: the record is reused; another option file digest is run again (resumes)
    run_tables(toy.runs[:1], toy.opt, toy.root, toy.results, toy.digest, {'num_gpu': 0}, nproc_per_node=2, log=quiet)
    assert len(toy.calls) == 3
    run_tables(toy.runs[:1], toy.opt, toy.root, toy.results, 'other', {'num_gpu': 0}, log=quiet)
    assert len(toy.calls) == 4
    # the report: Table 1 of the run folders, a row per method, the loss as column groups
    from lan_basicsr.report import table1
    table, paths = write_report('toy', toy.runs, toy.results, steps=[0, 2])
    labels = {r.name: r.label for r in toy.runs}
    assert table == table1([osp.join(toy.results, r.name) for r in toy.runs], [0, 2], labels).markdown()
    rows = [line.split(' | ')[0] for line in table.splitlines() if line.startswith('| ') and ' --- ' not in line]
    assert '| Pretrained' in rows and '| LAN' in rows and len(rows) == 3  # header, Pretrained, LAN
    assert open(osp.join(toy.results, 'toy_table.md')).read() == table and osp.isfile(paths['index.html'])


def test_failing_runs(toy):
    lines = []
    with pytest.raises(SystemExit) as exc:
        run_tables(toy.runs, toy.opt, toy.root, toy.results, toy.digest, {'fail': 3}, log=lines.append)
    assert exc.value.code == 3 and lines[-1] == 'Traceback\nboom' and len(toy.calls) == 1
    with pytest.raises(OptionError, match=r'run toy_pre \(python tools/test.py .*\): datasets.test: something to fix'):
        run_tables(toy.runs, toy.opt, toy.root, toy.results, toy.digest, {'fail': 2}, log=quiet)


def test_run_table_tool(toy, monkeypatch, capsys):
    tool = import_tool('run_table')
    monkeypatch.setattr(tool, 'ROOT', toy.root)
    runs = tool.main(['-opt', toy.opt, '--dry-run', '--methods', 'lan', '--nproc-per-node', '2'])
    assert [r.name for r in runs] == ['toy_lan_z', 'toy_lan_n'] and not toy.calls
    assert 'torch.distributed.run --nproc_per_node=2 --standalone tools/test.py' in capsys.readouterr().out
    tool.main(['-opt', toy.opt, '--losses', 'z', '--cfg-options', 'num_gpu=0', 'name=renamed'])
    assert sorted(n for n in os.listdir(toy.results) if not n.startswith('.')) == [
        'renamed_lan_z', 'renamed_pre', 'renamed_report', 'renamed_runs.csv', 'renamed_table.md'
    ]
    out = capsys.readouterr().out
    assert '| Pretrained |' in out and 'renamed_report/index.html' in out
    assert 'Not in the report (not finished yet): renamed_lan_n' in out
    lines = open(osp.join(toy.results, 'renamed_runs.csv')).read().splitlines()
    assert lines[0] == 'run,method,loss,seconds,reused' and lines[2].startswith('renamed_lan_z,lan,z,')
    # another part of the table (e.g. another queue job): the report and the times cover both parts
    tool.main(['-opt', toy.opt, '--losses', 'n', '--methods', 'lan', '--cfg-options', 'num_gpu=0', 'name=renamed'])
    assert 'Not in the report' not in capsys.readouterr().out
    lines = open(osp.join(toy.results, 'renamed_runs.csv')).read().splitlines()
    assert [line.split(',')[0] for line in lines[1:]] == ['renamed_pre', 'renamed_lan_z', 'renamed_lan_n']
    table = open(osp.join(toy.results, 'renamed_table.md')).read()
    assert '| method | k = 0 | ZS-N2N k = 2 | Nbr2Nbr k = 2 |' in table  # one LAN row, a column group per loss
    assert table.count('| LAN |') == 1 and table.count('| Pretrained |') == 1
    with pytest.raises(OptionError, match=r'table.methods.pre.per_loss'):
        tool.main(['-opt', toy.opt, '--cfg-options', 'table.methods.pre.per_loss=maybe'])
