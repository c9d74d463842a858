"""A malformed option file gives a one-line error naming the file or key, and a non-zero exit status."""
import subprocess
import sys
from os import path as osp

import pytest
import yaml
from conftest import tiny_dncnn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(tool, opt_path, cwd):
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), '-opt',
                           str(opt_path)],
                          capture_output=True,
                          text=True,
                          cwd=cwd,
                          timeout=120)


def _opt(paired_folder):
    return {
        'model_type': 'DenoiseModel',
        'num_gpu': 0,
        'network_g': tiny_dncnn(),
        'datasets': {
            'test': {
                'type': 'PairedImageDataset',
                'dataroot_gt': f'{paired_folder}/gt',
                'dataroot_lq': f'{paired_folder}/lq',
                'io_backend': {
                    'type': 'disk'
                },
                'scale': 1
            }
        },
    }


@pytest.mark.parametrize('case,tool', [('bad_yaml', 'test.py'), ('unknown_type', 'test.py'),
                                       ('missing_path', 'test.py'), ('unknown_type', 'train.py')])
def test_malformed_option_file(case, tool, paired_folder, tmp_path):
    path = tmp_path / f'{case}.yml'
    opt = _opt(paired_folder)
    if case == 'bad_yaml':
        path.write_text('model_type: DenoiseModel\nnetwork_g: {type: DnCNN\n')
        expected = f'{path}:'
    elif case == 'unknown_type':
        opt['network_g']['type'] = 'DnCNNN'
        path.write_text(yaml.safe_dump(opt))
        expected = 'network_g.type: unknown type "DnCNNN"'
    else:
        opt['datasets']['test']['dataroot_gt'] = str(tmp_path / 'missing_gt')
        path.write_text(yaml.safe_dump(opt))
        expected = 'datasets.test.dataroot_gt: path'
    result = _run(tool, path, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], result.stderr
    assert 'Traceback' not in result.stderr
