"""PolyU / Nam preparation on generated trees: tile naming and order, counts, skipped files reported by name."""
import importlib
import os
import runpy
import sys
from os import path as osp

import cv2
import lmdb
import numpy as np
import pytest

from lan_basicsr.data.prepare_util import (crop_boxes, prepare_paired_folder, scan_pairs, scene_camera, select_cameras,
                                           split_holdout)
from lan_basicsr.utils.errors import DataError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools')


def load_tool(name):
    if TOOLS not in sys.path:
        sys.path.append(TOOLS)  # appended: tools/test.py must not shadow anything
    return importlib.import_module(name)


def smooth(h, w, seed):
    """A JPEG-friendly image (gradients plus mild noise) so that the generated tree stays small and fast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 / w, yy * 200 / h, (xx + yy) * 100 / (h + w)], axis=2) + rng.normal(0, 8, (h, w, 3))
    return np.clip(base + 20, 0, 255).astype(np.uint8)


def make_polyu(root):
    """OriginalImages: 2 good pairs (4 + 1 tiles), an unpaired mean, a corrupt Real, a size mismatch, a tiny pair."""
    folder = osp.join(root, 'OriginalImages')
    os.makedirs(folder)
    specs = {
        'CamA_scene1': ((1030, 1100), (1030, 1100)),
        'CamB_scene2': ((600, 520), (600, 520)),
        'CamE_odd': ((600, 600), (600, 700)),
        'CamF_tiny': ((300, 300), (300, 300))
    }
    for i, (scene, (noisy_size, clean_size)) in enumerate(specs.items()):
        cv2.imwrite(osp.join(folder, f'{scene}_Real.JPG'), smooth(*noisy_size, seed=i))
        cv2.imwrite(osp.join(folder, f'{scene}_mean.JPG'), smooth(*clean_size, seed=i + 10))
    cv2.imwrite(osp.join(folder, 'CamC_gone_mean.JPG'), smooth(600, 600, seed=20))
    cv2.imwrite(osp.join(folder, 'CamD_broken_mean.JPG'), smooth(600, 600, seed=21))
    with open(osp.join(folder, 'CamD_broken_Real.JPG'), 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0\x00\x10JFIF' + b'\x00' * 64)  # a JPEG header and nothing else
    open(osp.join(folder, 'Readme.txt'), 'w').write('not an image')
    return folder


@pytest.fixture(scope='module')
def polyu_tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('polyu') / 'PolyU')
    make_polyu(root)
    return root


def test_tile_order_is_row_major_and_ragged_edges_dropped():
    assert crop_boxes(1100, 1300, 512) == [(0, 0), (0, 512), (512, 0), (512, 512)]
    assert crop_boxes(511, 4000, 512) == []
    assert len(crop_boxes(1856, 2784, 512)) == 3 * 5  # Canon5D2 originals


def test_polyu_tiles_counts_and_reports(polyu_tree, tmp_path):
    folder = osp.join(polyu_tree, 'OriginalImages')
    scan = scan_pairs(folder, noisy_suffix='_Real', clean_suffix='_mean')
    assert [s for s, _, _ in scan.pairs] == ['CamA_scene1', 'CamB_scene2', 'CamD_broken', 'CamE_odd', 'CamF_tiny']
    assert len(scan.unpaired) == 1 and scan.unpaired[0].startswith('CamC_gone: ')
    dst = str(tmp_path / 'out')
    summary = prepare_paired_folder(scan, dst, tile_size=512, workers=2, progress=False)
    assert (summary.pairs, summary.outputs) == (2, 5)
    assert len(summary.unreadable) == 1 and 'CamD_broken_Real.JPG: cannot decode' in summary.unreadable[0]
    assert len(summary.mismatched) == 1 and 'CamE_odd_Real.JPG is 600x600' in summary.mismatched[0]
    assert len(summary.too_small) == 1 and 'CamF_tiny' in summary.too_small[0]
    names = [f'CamA_scene1_{i:04d}.png' for i in range(4)] + ['CamB_scene2_0000.png']
    assert sorted(os.listdir(osp.join(dst, 'lq'))) == sorted(os.listdir(osp.join(dst, 'gt'))) == names
    for side, suffix in (('lq', 'Real'), ('gt', 'mean')):
        src = cv2.imread(osp.join(folder, f'CamA_scene1_{suffix}.JPG'), cv2.IMREAD_UNCHANGED)
        for i, (top, left) in enumerate([(0, 0), (0, 512), (512, 0), (512, 512)]):
            tile = cv2.imread(osp.join(dst, side, f'CamA_scene1_{i:04d}.png'), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(tile, src[top:top + 512, left:left + 512])
    with pytest.raises(DataError, match='lq: not empty'):
        prepare_paired_folder(scan, dst, progress=False)


def test_polyu_cli_as_script(polyu_tree, tmp_path, monkeypatch, capsys):
    """The script itself (``__main__``, argv, ``_entry``), in-process: a fresh interpreter would spend its time
    importing torch. The real-data command line was run by hand (see docs/data.md)."""
    load_tool('_entry')
    monkeypatch.setattr(
        sys, 'argv',
        ['prepare_polyu.py', '--src', polyu_tree, '--dst',
         str(tmp_path / 'out'), '--workers', '1', '--no-progress'])
    runpy.run_path(osp.join(TOOLS, 'prepare_polyu.py'), run_name='__main__')
    out = capsys.readouterr().out
    assert 'PolyU OriginalImages: 2 pairs -> 5 512x512 tiles per side' in out
    assert '1 unpaired, 1 unreadable, 1 size-mismatched, 1 too small' in out
    assert 'unpaired: CamC_gone: ' in out and 'CamD_broken_Real.JPG: cannot decode' in out


def test_polyu_cropped_and_errors(tmp_path, capsys):
    folder = tmp_path / 'PolyU' / 'CroppedImages'
    os.makedirs(folder)
    for i, scene in enumerate(['Cam_x_11', 'Cam_x_14']):
        cv2.imwrite(str(folder / f'{scene}_real.JPG'), smooth(64, 64, i))
        cv2.imwrite(str(folder / f'{scene}_mean.JPG'), smooth(64, 64, i + 5))
    tool, entry = load_tool('prepare_polyu'), load_tool('_entry')
    summary = tool.main([
        '--src',
        str(tmp_path / 'PolyU'), '--dst',
        str(tmp_path / 'c'), '--cropped', '--workers', '1', '--no-progress'
    ])
    assert (summary.pairs, summary.outputs) == (2, 2)
    assert sorted(os.listdir(tmp_path / 'c' / 'gt')) == ['Cam_x_11.png', 'Cam_x_14.png']
    assert '2 pairs -> 2 images per side' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        entry.run(tool.main, ['--src', str(tmp_path / 'c' / 'gt'), '--dst', str(tmp_path / 'd')])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1 and 'no {scene}_Real / {scene}_mean image pairs' in err


def test_nam_whole_images_and_tiles(tmp_path, capsys):
    src = tmp_path / 'CC15'
    os.makedirs(src)
    images = {}
    for i, scene in enumerate(['5dmark3_iso3200_1', 'd800_iso1600_2']):
        images[scene] = smooth(64, 64, i)
        cv2.imwrite(str(src / f'{scene}_real.png'), images[scene])
        cv2.imwrite(str(src / f'{scene}_mean.png'), smooth(64, 64, i + 5))
        cv2.imwrite(str(src / f'{scene}_ours.png'), smooth(64, 64, i + 9))
    tool = load_tool('prepare_nam')
    summary = tool.main(['--src', str(src), '--dst', str(tmp_path / 'whole'), '--no-progress'])
    assert (summary.pairs, summary.outputs, summary.skipped) == (2, 2, [])
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / 'whole' / 'lq' / 'd800_iso1600_2.png')), images['d800_iso1600_2'])
    assert 'ignored 2 other image file(s)' in capsys.readouterr().out
    summary = tool.main(['--src', str(src), '--dst', str(tmp_path / 'tiles'), '--tile-size', '32', '--no-progress'])
    assert summary.outputs == 8
    assert sorted(os.listdir(tmp_path / 'tiles' / 'lq'))[:4] == [f'5dmark3_iso3200_1_{i:04d}.png' for i in range(4)]


# ------------------------------------------------------------------------------- the cross-camera protocol's splits
CROSS_SCENES = [
    'Canon5D2_bag', 'Canon5D2_toy', 'Nikon800_bulle', 'Nikon800_wall', 'Nikon_800_carbi', 'Canon80D_GO',
    'SonyA7II_book', 'SonyA7II_class', 'Canon600_book'
]


def make_cross_tree(root):
    """A fake PolyU OriginalImages folder: 9 complete scenes of 64x96 (2 x 3 tiles of 32), one scene without noisy."""
    folder = osp.join(root, 'OriginalImages')
    os.makedirs(folder)
    for i, scene in enumerate(CROSS_SCENES):
        cv2.imwrite(osp.join(folder, f'{scene}_Real.JPG'), smooth(64, 96, seed=i))
        cv2.imwrite(osp.join(folder, f'{scene}_mean.JPG'), smooth(64, 96, seed=i + 50))
    cv2.imwrite(osp.join(folder, 'SonyA7II_water_mean.JPG'), smooth(64, 96, seed=99))
    return root


def tiles(scenes, n=6):
    return sorted(f'{s}_{i:04d}.png' for s in scenes for i in range(n))


def test_scene_camera_joins_the_split_nikon_name():
    assert [scene_camera(s) for s in CROSS_SCENES] == [
        'Canon5D2', 'Canon5D2', 'Nikon800', 'Nikon800', 'Nikon800', 'Canon80D', 'SonyA7II', 'SonyA7II', 'Canon600'
    ]
    assert scene_camera('Nikon_800') == 'Nikon' and scene_camera('cam') == 'cam'  # the last token stays the scene


def test_cross_camera_splits(tmp_path, capsys):
    src = make_cross_tree(str(tmp_path / 'PolyU'))
    tool = load_tool('prepare_polyu')
    common = ['--src', src, '--tile-size', '32', '--workers', '1', '--no-progress']
    # unseen cameras: PNG tiles plus per-camera lists, every 2nd and every 4th tile of each camera
    test_dst = tmp_path / 'unseen'
    summary = tool.main(common + ['--dst', str(test_dst), '--cameras', 'Canon80D', 'sonya7ii', '--every', '2', '4'])
    test_tiles = tiles(['Canon80D_GO', 'SonyA7II_book', 'SonyA7II_class'])
    assert (summary.pairs, summary.outputs) == (3, 18)
    assert sorted(os.listdir(test_dst / 'lq')) == sorted(os.listdir(test_dst / 'gt')) == test_tiles
    assert len(summary.unpaired) == 1 and summary.unpaired[0].startswith('SonyA7II_water: ')  # only its cameras'
    assert (test_dst / 'meta_info_Canon80D.txt').read_text().split() == tiles(['Canon80D_GO'])
    assert (test_dst / 'meta_info_SonyA7II_every2.txt').read_text().split() == \
        tiles(['SonyA7II_book', 'SonyA7II_class'])[::2]
    every4 = (test_dst / 'meta_info_SonyA7II_every4.txt').read_text().split()
    assert every4 == tiles(['SonyA7II_book', 'SonyA7II_class'])[::4] and len(every4) == 3
    assert set(every4) <= set((test_dst / 'meta_info_SonyA7II_every2.txt').read_text().split())
    out = capsys.readouterr().out
    assert 'meta_info_Canon80D_every2.txt (3)' in out and 'meta_info_Canon80D_every4.txt (2)' in out
    # seen cameras: training LMDB and held-out validation scenes (the first of each camera in name order)
    seen_dst = tmp_path / 'seen'
    splits = tool.main(
        common +
        ['--dst',
         str(seen_dst), '--cameras', 'Canon5D2', 'Nikon800', '--format', 'lmdb', '--val-per-camera', '1'])
    assert (splits['train'].pairs, splits['val'].pairs) == (3, 2)
    train_keys = [line.split()[0] for line in open(seen_dst / 'train' / 'gt.lmdb' / 'meta_info.txt')]
    assert train_keys == tiles(['Canon5D2_toy', 'Nikon800_wall', 'Nikon_800_carbi'])  # the Nikon_800 scene trains
    assert sorted(os.listdir(seen_dst / 'val' / 'lq')) == tiles(['Canon5D2_bag', 'Nikon800_bulle'])
    assert (seen_dst / 'val' / 'meta_info_Nikon800.txt').read_text().split() == tiles(['Nikon800_bulle'])
    scenes = {
        split: {name.rsplit('_', 1)[0]
                for name in names}
        for split, names in (('test', test_tiles), ('train', train_keys), ('val', os.listdir(seen_dst / 'val' / 'gt')))
    }
    assert not (scenes['test'] & scenes['train'] or scenes['test'] & scenes['val'] or scenes['train'] & scenes['val'])
    assert 'Canon600_book' not in set.union(*scenes.values())
    # the LMDB holds the source pixels
    env = lmdb.open(str(seen_dst / 'train' / 'lq.lmdb'), readonly=True, lock=False)
    with env.begin() as txn:
        tile = cv2.imdecode(np.frombuffer(txn.get(b'Nikon_800_carbi_0004'), np.uint8), cv2.IMREAD_UNCHANGED)
    env.close()
    src_img = cv2.imread(osp.join(src, 'OriginalImages', 'Nikon_800_carbi_Real.JPG'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(tile, src_img[32:64, 32:64])


def test_cross_camera_errors(tmp_path):
    src = make_cross_tree(str(tmp_path / 'PolyU'))
    tool, entry = load_tool('prepare_polyu'), load_tool('_entry')
    common = ['--src', src, '--tile-size', '32', '--workers', '1', '--no-progress', '--dst', str(tmp_path / 'o')]
    scan = select_cameras(scan_pairs(osp.join(src, 'OriginalImages'), '_Real', '_mean'), ['Canon5D2'])
    with pytest.raises(DataError, match='leaves camera Canon5D2 without a training scene'):
        split_holdout(scan, per_camera=2)
    with pytest.raises(DataError, match='--val-scenes: no pair named Canon5D2_nope'):
        split_holdout(scan, scenes=['Canon5D2_nope'])
    with pytest.raises(
            DataError,
            match=r'no complete noisy/clean pair of camera Canon9 \(cameras with pairs: '
            r'Canon5D2, Canon600, Canon80D, Nikon800, SonyA7II\)'):
        tool.main(common + ['--cameras', 'Canon9'])
    with pytest.raises(SystemExit) as exc:
        entry.run(tool.main, common + ['--every', '2'])
    assert exc.value.code == 2 and not osp.exists(tmp_path / 'o')
