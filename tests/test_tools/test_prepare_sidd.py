"""SIDD preparation on a generated fake SIDD tree: Restormer's crop rule, byte-exact LMDB round trip, .mat blocks."""
import importlib
import os
import sys
from os import path as osp

import cv2
import lmdb
import numpy as np
import pytest
import scipy.io

from lan_basicsr.data.prepare_util import crop_starts, load_mat_blocks, prepare_sidd_lmdb, prepare_sidd_val, scan_sidd
from lan_basicsr.utils.errors import DataError

TOOLS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools')


def load_tool(name):
    if TOOLS not in sys.path:
        sys.path.append(TOOLS)  # appended: tools/test.py must not shadow anything
    return importlib.import_module(name)


def restormer_starts(length, size, step):
    """Restormer's generate_patches_sidd.py, written independently: np.arange(0, L - size, step) + [L - size]."""
    return list(np.arange(0, length - size, step, dtype=int)) + [length - size]


def make_fake_sidd(root, size=(600, 700)):
    """Two scene folders with one pair each (random pixels), plus a scene whose GT is missing."""
    rng = np.random.default_rng(0)
    sources = {}
    for scene, prefix in (('0001_001_S6_00100_00060_3200_L', '0001'), ('0002_001_GP_00800_00350_5500_N', '0002'),
                          ('0003_001_IP_00100_00100_3200_N', '0003')):
        os.makedirs(osp.join(root, scene))
        noisy = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        gt = (noisy // 2 + 60).astype(np.uint8)
        cv2.imwrite(osp.join(root, scene, f'{prefix}_NOISY_SRGB_010.PNG'), noisy)
        if prefix != '0003':
            cv2.imwrite(osp.join(root, scene, f'{prefix}_GT_SRGB_010.PNG'), gt)
        sources[f'{prefix}_SRGB_010'] = (noisy, gt)
    return sources


def read_lmdb(path):
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        items = {k.decode(): bytes(v) for k, v in txn.cursor()}
    env.close()
    return items


def test_crop_starts_follow_restormer():
    for length in list(range(512, 2500, 37)) + [512, 896, 1280, 3000, 5328]:
        assert crop_starts(length, 512, 384) == restormer_starts(length, 512, 384), length
    assert crop_starts(600, 512, 384) == [0, 88]  # last crop flush with the edge
    assert crop_starts(896, 512, 384) == [0, 384]  # fits exactly: no duplicate
    assert crop_starts(500, 512, 384) == []  # too small: no crop (Restormer would slice a negative start)


def test_sidd_lmdb_round_trip_is_byte_exact(tmp_path):
    sources = make_fake_sidd(str(tmp_path / 'Data'))
    scan = scan_sidd(str(tmp_path / 'Data'))
    assert [p[0] for p in scan.pairs] == ['0001_SRGB_010', '0002_SRGB_010']
    assert len(scan.unpaired) == 1 and '0003_NOISY_SRGB_010.PNG has no partner 0003_GT_SRGB_010.PNG' in scan.unpaired[0]

    dst = str(tmp_path / 'out')
    summary = prepare_sidd_lmdb(scan, dst, size=512, overlap=128, workers=2, progress=False)
    assert (summary.pairs, summary.outputs, len(summary.skipped)) == (2, 8, 1)

    lq, gt = read_lmdb(osp.join(dst, 'lq.lmdb')), read_lmdb(osp.join(dst, 'gt.lmdb'))
    boxes = [(t, c) for t in restormer_starts(600, 512, 384) for c in restormer_starts(700, 512, 384)]
    expected_keys = sorted(f'{stem}_s{i:03d}' for stem in ('0001_SRGB_010', '0002_SRGB_010') for i in range(1, 5))
    assert sorted(lq) == sorted(gt) == expected_keys
    for key in expected_keys:
        stem, index = key.rsplit('_s', 1)
        top, left = boxes[int(index) - 1]
        for store, src in ((lq, sources[stem][0]), (gt, sources[stem][1])):
            crop = src[top:top + 512, left:left + 512]
            decoded = cv2.imdecode(np.frombuffer(store[key], np.uint8), cv2.IMREAD_UNCHANGED)
            assert decoded.dtype == crop.dtype and decoded.tobytes() == crop.tobytes(), key
    meta = open(osp.join(dst, 'gt.lmdb', 'meta_info.txt')).read().splitlines()
    assert meta[0] == '0001_SRGB_010_s001.png (512,512,3) 1' and len(meta) == 8

    with pytest.raises(DataError, match='lq.lmdb: already exists'):
        prepare_sidd_lmdb(scan, dst, progress=False)


def test_sidd_val_mat_to_png_and_lmdb(tmp_path):
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    gt = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    scipy.io.savemat(str(tmp_path / 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': noisy})
    scipy.io.savemat(str(tmp_path / 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': gt})
    np.testing.assert_array_equal(load_mat_blocks(str(tmp_path / 'ValidationGtBlocksSrgb.mat')), gt)

    dst = str(tmp_path / 'val')
    n = prepare_sidd_val(
        str(tmp_path / 'ValidationNoisyBlocksSrgb.mat'),
        str(tmp_path / 'ValidationGtBlocksSrgb.mat'),
        dst,
        formats=('png', 'lmdb'))
    assert n == 6 and sorted(os.listdir(osp.join(
        dst, 'lq'))) == [f'{i:02d}_{j:02d}.png' for i in range(2) for j in range(3)]
    lq_lmdb = read_lmdb(osp.join(dst, 'lq.lmdb'))
    for i in range(2):
        for j in range(3):
            png = cv2.imread(osp.join(dst, 'gt', f'{i:02d}_{j:02d}.png'), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(png[..., ::-1], gt[i, j])  # RGB blocks survive OpenCV's BGR files
            from_lmdb = cv2.imdecode(np.frombuffer(lq_lmdb[f'{i:02d}_{j:02d}'], np.uint8), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(from_lmdb[..., ::-1], noisy[i, j])


def test_mat_errors(tmp_path):
    scipy.io.savemat(str(tmp_path / 'a.mat'), {'blocks': np.zeros((2, 3, 8, 8, 3), np.uint8)})
    scipy.io.savemat(str(tmp_path / 'b.mat'), {'blocks': np.zeros((2, 2, 8, 8, 3), np.uint8)})
    with pytest.raises(DataError, match=r'a\.mat holds blocks \(2, 3, 8, 8, 3\), .*b\.mat holds'):
        prepare_sidd_val(str(tmp_path / 'a.mat'), str(tmp_path / 'b.mat'), str(tmp_path / 'out'))
    (tmp_path / 'bad.mat').write_bytes(b'not a mat file at all' * 10)
    with pytest.raises(DataError, match=r'bad\.mat: cannot read the \.mat file'):
        load_mat_blocks(str(tmp_path / 'bad.mat'))
    with pytest.raises(DataError, match=r'missing\.mat: no such file'):
        load_mat_blocks(str(tmp_path / 'missing.mat'))
    # a MATLAB v7.3 (HDF5) header: scipy refuses it, we need h5py
    header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .'
    (tmp_path / 'v73.mat').write_bytes(header.ljust(116) + b'\0' * 8 + b'\x00\x02IM' + b'\0' * 512)
    try:
        import h5py  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match=r'v73\.mat: a MATLAB v7.3 \(HDF5\) file; reading it needs h5py'):
            load_mat_blocks(str(tmp_path / 'v73.mat'))


def test_cli_summary_and_one_line_errors(tmp_path, capsys):
    make_fake_sidd(str(tmp_path / 'Data'))
    scipy.io.savemat(str(tmp_path / 'ValidationNoisyBlocksSrgb.mat'), {'x': np.zeros((1, 2, 8, 8, 3), np.uint8)})
    scipy.io.savemat(str(tmp_path / 'ValidationGtBlocksSrgb.mat'), {'x': np.ones((1, 2, 8, 8, 3), np.uint8)})
    tool, entry = load_tool('prepare_sidd'), load_tool('_entry')
    entry.run(tool.main, [
        '--src',
        str(tmp_path / 'Data'), '--dst',
        str(tmp_path / 'out'), '--workers', '1', '--val-dir',
        str(tmp_path), '--val-format', 'png', '--no-progress'
    ])
    out = capsys.readouterr().out
    assert '2 pairs -> 8 512x512 crops per side' in out and '0003_NOISY_SRGB_010.PNG has no partner' in out
    assert 'SIDD val: 2 blocks per side' in out
    assert sorted(os.listdir(tmp_path / 'out' / 'val' / 'gt')) == ['00_00.png', '00_01.png']
    with pytest.raises(SystemExit) as exc:
        entry.run(tool.main, ['--src', str(tmp_path / 'nowhere'), '--dst', str(tmp_path / 'o2')])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count('\n') == 1 and 'nowhere: not a folder' in err
