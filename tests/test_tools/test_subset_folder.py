"""tools/subset_folder.py: every k-th pair by name, from an offset; subsets with other offsets are disjoint."""
import os
from os import path as osp

import pytest
from conftest import import_tool, make_paired_folder

from lan_basicsr.utils.errors import DataError, OptionError


def _names(folder, side='lq'):
    return sorted(os.listdir(osp.join(folder, side)))


def test_every_kth_pair_from_an_offset_is_disjoint_from_offset_zero(tmp_path):
    tool = import_tool('subset_folder')
    src = make_paired_folder(str(tmp_path / 'pairs'), num=7)
    tool.main(['--src', src, '--dst', str(tmp_path / 'eval'), '--every', '3'])
    tool.main(['--src', src, '--dst', str(tmp_path / 'val'), '--every', '3', '--offset', '2'])
    assert _names(tmp_path / 'eval') == ['img000.png', 'img003.png', 'img006.png']
    assert _names(tmp_path / 'val') == ['img002.png', 'img005.png']
    assert _names(tmp_path / 'val', 'gt') == _names(tmp_path / 'val')
    link = tmp_path / 'val' / 'gt' / 'img005.png'
    assert osp.islink(link) and osp.realpath(link) == osp.realpath(osp.join(src, 'gt', 'img005.png'))


def test_prefix_and_offset_per_camera(tmp_path):
    tool = import_tool('subset_folder')
    src = make_paired_folder(str(tmp_path / 'pairs'), num=4)
    for side in ('lq', 'gt'):  # two "cameras": A_img000.. A_img001, B_img002.. B_img003
        for i, name in enumerate(_names(src, side)):
            os.rename(osp.join(src, side, name), osp.join(src, side, ('A_' if i < 2 else 'B_') + name))
    for camera in ('A_', 'B_'):
        tool.main(['--src', src, '--dst', str(tmp_path / 'val'), '--every', '2', '--offset', '1', '--prefix', camera])
    assert _names(tmp_path / 'val') == ['A_img001.png', 'B_img003.png']


@pytest.mark.parametrize('args, error, words', [
    (['--every', '3', '--offset', '3'], OptionError, '--offset: expected an integer in [0, 3)'),
    (['--every', '2', '--offset', '-1'], OptionError, '--offset'),
    (['--every', '4', '--offset', '3', '--prefix', 'img000'], DataError, 'none at --offset 3'),
])
def test_bad_offsets_are_one_line_errors(tmp_path, args, error, words):
    tool = import_tool('subset_folder')
    src = make_paired_folder(str(tmp_path / 'pairs'), num=3)
    with pytest.raises(error) as e:
        tool.main(['--src', src, '--dst', str(tmp_path / 'out'), *args])
    assert words in str(e.value)
