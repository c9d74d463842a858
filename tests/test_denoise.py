"""The own-photos command (lan_basicsr/denoise.py) on small generated photos, 2 adaptation steps."""
import json
import os
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_dncnn

from lan_basicsr import denoise
from lan_basicsr.denoise import cli, collect_inputs, main, output_name, read_photo

STEPS = ['--steps', '2']


def _photo(h=24, w=32, seed=0, bits=8):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(xx / 5. + seed)[..., None] * np.cos(yy / 4.)[..., None] * np.array([1, .7, .4])
    noisy = np.clip(base + rng.normal(0, 0.08, base.shape), 0, 1) * (2**bits - 1)
    return noisy.round().astype(np.uint16 if bits == 16 else np.uint8)


@pytest.fixture
def photos(tmp_path):
    """A folder with a space in its name: a corrupt JPEG sorted first, an 8-bit PNG, a JPEG with a non-ASCII name."""
    folder = tmp_path / 'my photos'
    folder.mkdir()
    (folder / 'a_broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a JPEG')
    cv2.imwrite(str(folder / 'b_photo.png'), _photo(seed=1))
    ok, buf = cv2.imencode('.jpg', _photo(seed=2), [cv2.IMWRITE_JPEG_QUALITY, 98])
    (folder / 'c_fotó ü.jpg').write_bytes(buf.tobytes())
    (folder / 'notes.txt').write_text('not an image: ignored')
    return folder


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


def test_folder_with_a_corrupt_file_first(photos, tmp_path, capsys):
    out = tmp_path / 'out dir'
    assert main(['-i', str(photos), '-o', str(out), *STEPS]) == 1
    lines = _lines(capsys.readouterr().out)
    broken = osp.join(str(photos), 'a_broken.jpg')
    assert f'failed: {broken}: cannot decode the image (corrupt, truncated or not an image file)' in lines
    assert any(line.startswith(f'done: {osp.join(str(photos), "c_fotó ü.jpg")} -> ') for line in lines)
    summary = [line for line in lines if line.startswith('lan-denoise:')]
    assert len(summary) == 1 and summary[0].startswith('lan-denoise: 2 done, 1 failed, 0 skipped (already done) in')
    assert sorted(os.listdir(out)) == ['.lan-denoise.json', 'b_photo_lan+full.png', 'c_fotó ü_lan+full.png']
    img = cv2.imread(str(out / 'b_photo_lan+full.png'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8
    noisy = cv2.imread(str(photos / 'b_photo.png')).astype(float)
    assert 0 < np.abs(img - noisy).mean() < 40  # denoised, not blank


def test_bit_depth_exif_and_ext(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'deep.png'), _photo(bits=16))
    from PIL import Image
    im = Image.fromarray(_photo(20, 40)[..., ::-1])
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(tmp_path / 'turned.jpg', exif=exif.tobytes(), quality=98)
    assert read_photo(str(tmp_path / 'turned.jpg'))[0].shape == (40, 20, 3)
    out = tmp_path / 'out'
    assert main(['-i', str(tmp_path / 'deep.png'), str(tmp_path / 'turned.jpg'), '-o', str(out), *STEPS]) == 0
    deep = cv2.imread(str(out / 'deep_lan+full.png'), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (24, 32, 3) and deep.max() > 255
    turned = cv2.imread(str(out / 'turned_lan+full.png'), cv2.IMREAD_UNCHANGED)
    assert turned.shape == (40, 20, 3) and turned.dtype == np.uint8
    assert main(['-i', str(tmp_path / 'deep.png'), '-o', str(out), '--ext', 'jpg', '--suffix', '', *STEPS]) == 0
    assert cv2.imread(str(out / 'deep.jpg'), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert any(
        line.startswith('note: ') and '16-bit input saved as 8-bit jpg' in line
        for line in _lines(capsys.readouterr().out))


def test_interrupted_run_continues_where_it_stopped(photos, tmp_path, monkeypatch, capsys):
    args = ['-i', str(photos / 'b_photo.png'), str(photos / 'c_fotó ü.jpg'), *STEPS]
    assert main(args + ['-o', str(tmp_path / 'whole')]) == 0
    real = denoise.denoise_photo

    def interrupted(model, path, *a, **k):
        if 'fotó' in path:
            raise KeyboardInterrupt
        return real(model, path, *a, **k)

    monkeypatch.setattr(denoise, 'denoise_photo', interrupted)
    out = tmp_path / 'resumed'
    assert main(args + ['-o', str(out)]) == 130
    assert sorted(os.listdir(out)) == ['.lan-denoise.json', 'b_photo_lan+full.png']
    monkeypatch.setattr(denoise, 'denoise_photo', real)
    capsys.readouterr()
    assert main(args + ['-o', str(out)]) == 0
    assert 'lan-denoise: 1 done, 0 failed, 1 skipped (already done)' in capsys.readouterr().out
    for name in ('b_photo_lan+full.png', 'c_fotó ü_lan+full.png'):
        assert (out / name).read_bytes() == (tmp_path / 'whole' / name).read_bytes()
    # other settings, a --compare image not made before, a changed input or --overwrite: redone
    for extra in (['--steps', '1'], ['--steps', '1', '--compare'], ['--steps', '1', '--compare', '--overwrite']):
        assert main(['-i', str(photos / 'b_photo.png'), '-o', str(out)] + extra) == 0
        assert 'lan-denoise: 1 done, 0 failed, 0 skipped' in capsys.readouterr().out
    assert main(['-i', str(photos / 'b_photo.png'), '-o', str(out), '--steps', '1']) == 0  # compare made: not needed
    assert 'lan-denoise: 0 done, 0 failed, 1 skipped' in capsys.readouterr().out
    cv2.imwrite(str(photos / 'b_photo.png'), _photo(seed=5))
    assert main(['-i', str(photos / 'b_photo.png'), '-o', str(out), '--steps', '1']) == 0
    assert 'lan-denoise: 1 done, 0 failed, 0 skipped' in capsys.readouterr().out
    with open(out / '.lan-denoise.json', encoding='utf-8') as f:
        assert set(json.load(f)['outputs']) == {'b_photo_lan+full.png', 'c_fotó ü_lan+full.png'}


def test_method_none_is_the_pretrained_network_and_tiles_change_nothing(photos, tmp_path):
    from basicsr.archs import build_network

    from lan_basicsr.embedded import embedded_model
    from lan_basicsr.utils.checkpoint import load_network
    photo = str(photos / 'b_photo.png')
    assert main(['-i', photo, '-o', str(tmp_path), '--method', 'none']) == 0
    weights, opt = embedded_model()
    net = build_network(opt).eval()
    load_network(net, weights)
    lq = torch.from_numpy(read_photo(photo)[0].transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        expected = denoise.to_integers(net(lq), 8)
    assert np.array_equal(cv2.imread(str(tmp_path / 'b_photo_pretrained.png')), expected)
    for method in ('lan', 'full', 'lan+full'):  # embedded DnCNN: pad >= receptive radius (nb): tiled = whole image
        loss = ['--loss', 'bank'] if method == 'lan+full' else []  # the bank is the whole image's, tiled or not
        assert main(['-i', photo, '-o', str(tmp_path / 'whole'), '--method', method, '--tile', '0', *loss, *STEPS]) == 0
        assert main(['-i', photo, '-o',
                     str(tmp_path / 'tiled'), '--method', method, '--tile', '16', *loss, *STEPS]) == 0
        whole = cv2.imread(str(tmp_path / 'whole' / f'b_photo_{method}.png')).astype(int)
        tiled = cv2.imread(str(tmp_path / 'tiled' / f'b_photo_{method}.png')).astype(int)
        assert np.abs(whole - tiled).max() <= 1 and (whole != expected).any()


def test_automatic_tiles_from_the_memory_budget(photos, tmp_path, capsys):
    from lan_basicsr.embedded import embedded_model
    photo = str(photos / 'b_photo.png')
    assert main(['-i', photo, '-o', str(tmp_path), *STEPS]) == 0
    assert '(32x24, whole image;' in capsys.readouterr().out
    cv2.imwrite(str(tmp_path / 'wide.png'), _photo(40, 150))
    # a budget below what the process already uses: the smallest tiles (64 px) rather than no run
    assert main(['-i', str(tmp_path / 'wide.png'), '-o', str(tmp_path / 'o'), '--max-memory', '0.1', *STEPS]) == 0
    depth = embedded_model()[1]['nb']  # the default DnCNN's receptive radius (nb 3x3 convolutions), rounded up to 8
    assert f'(150x40, tiles of 64 px, pad {-(-depth // 8) * 8};' in capsys.readouterr().out


def test_automatic_tiles_count_the_pixel_banks_memory(photos, tmp_path, monkeypatch):
    from lan_basicsr.losses.pixel_bank_loss import PixelBankLoss
    from lan_basicsr.models import tiling
    assert PixelBankLoss().image_bytes_per_pixel(3) == 4 * 9 + 4 * 3 * 3  # int32 bank of 8 + self, key, x1, x2
    assert PixelBankLoss(bank_size=4, include_self=False).image_bytes_per_pixel(1) == 4 * 4 + 4 * 3
    seen = []
    choose = tiling.choose_tile
    monkeypatch.setattr(tiling, 'choose_tile',
                        lambda *a, **k: seen.append(k['image_bytes_per_pixel']) or choose(*a, **k))
    photo = str(photos / 'b_photo.png')
    for loss in ('zsn2n', 'bank'):
        assert main(['-i', photo, '-o', str(tmp_path / loss), '--loss', loss, *STEPS]) == 0
    assert seen == [tiling.IMAGE_BYTES_PER_PIXEL, tiling.IMAGE_BYTES_PER_PIXEL + 72]


def test_compare_image(photos, tmp_path):
    assert main(['-i', str(photos / 'b_photo.png'), '-o', str(tmp_path), '--compare', *STEPS]) == 0
    strip = cv2.imread(str(tmp_path / 'b_photo_lan+full_compare.png'))
    assert strip.shape == (20 + 24, 3 * 32, 3)  # a 20-px label band over noisy | pretrained | adapted
    noisy = cv2.imread(str(photos / 'b_photo.png'))
    assert np.array_equal(strip[20:, :32], noisy)
    assert np.array_equal(strip[20:, 64:], cv2.imread(str(tmp_path / 'b_photo_lan+full.png')))
    assert not np.array_equal(strip[20:, 32:64], strip[20:, 64:])
    # the pretrained panel is the pretrained network's, also after a photo that adapted the weights
    photos2 = [str(photos / 'b_photo.png'), str(photos / 'c_fotó ü.jpg')]
    assert main(['-i', *photos2, '-o',
                 str(tmp_path / 'full'), '--compare', '--method', 'full', '--lr', '1e-3', *STEPS]) == 0
    assert main(['-i', *photos2, '-o', str(tmp_path / 'none'), '--method', 'none']) == 0
    strip = cv2.imread(str(tmp_path / 'full' / 'c_fotó ü_full_compare.png'))
    assert np.array_equal(strip[20:, 32:64], cv2.imread(str(tmp_path / 'none' / 'c_fotó ü_pretrained.png')))


def test_network_choices(photos, tmp_path, monkeypatch):
    from lan_basicsr import embedded
    monkeypatch.setattr(embedded, 'DEFAULT_REAL_PHOTO_MODEL', 'dncnn_gaussian_meta')
    model, method, weights, _ = denoise.build_model(denoise.build_arg_parser().parse_args(['-i', 'x']), str(tmp_path))
    assert weights == embedded.embedded_model('dncnn_gaussian_meta')[0] and method == 'lan+full'
    # the defaults: the input offset and all weights, the pixel-bank loss (docs/selection.md, held-out PolyU tiles)
    assert type(model.adapter).__name__ == 'OffsetAndWeights' and model.adapter.combined['weights'] == 'FullTrainable'
    assert type(model.loss_fn).__name__ == 'PixelBankLoss' and model.steps == 20
    torch.manual_seed(0)
    from lan_basicsr.archs.dncnn_arch import DnCNN
    ckpt = str(tmp_path / 'tiny.pth')
    torch.save({'params': DnCNN(3, 3, 4, 3, 'R').state_dict()}, ckpt)
    arch = ['--arch', 'DnCNN', '--arch-opt'] + [f'{k}={v}' for k, v in tiny_dncnn().items() if k != 'type']
    args = denoise.build_arg_parser().parse_args(['-i', 'x', '--method', 'last', '--weights', ckpt] + arch)
    model, method, weights, _ = denoise.build_model(args, str(tmp_path))
    assert model.adapter.__class__.__name__ == 'LastLayer' and model.adapter.lr == 5e-6
    assert main([
        '-i',
        str(photos / 'b_photo.png'), '-o',
        str(tmp_path / 'o'), '--method', 'first', '--weights', ckpt, *arch, *STEPS
    ]) == 0
    assert osp.isfile(tmp_path / 'o' / 'b_photo_first.png')
    opt = tmp_path / 'net.yml'
    opt.write_text(f'network_g: {json.dumps(tiny_dncnn())}\npath: {{pretrain_network_g: {ckpt}}}\n'
                   'adapt: {type: FullTrainable, loss: {type: Nbr2NbrLoss}, lr: 0.001}\n')
    model, method, _, _ = denoise.build_model(denoise.build_arg_parser().parse_args(['-i', 'x', '--opt',
                                                                                     str(opt)]), str(tmp_path))
    assert method == 'full' and model.adapter.lr == 1e-3 and type(model.loss_fn).__name__ == 'Nbr2NbrLoss'
    args = ['-i', 'x', '--opt', str(opt), '--method', 'lan', '--loss', 'zsn2n']
    model, method, _, _ = denoise.build_model(denoise.build_arg_parser().parse_args(args), str(tmp_path))
    assert method == 'lan' and model.adapter.lr == 5e-4 and type(model.loss_fn).__name__ == 'ZSN2NLoss'
    # the combined methods and the pixel-bank loss by their short names
    for name, weights in (('lan+last', 'LastLayer'), ('lan+full', 'FullTrainable')):
        args = ['-i', 'x', '--opt', str(opt), '--method', name, '--loss', 'bank']
        model, method, _, _ = denoise.build_model(denoise.build_arg_parser().parse_args(args), str(tmp_path))
        assert method == name and type(model.adapter).__name__ == 'OffsetAndWeights'
        assert model.adapter.combined['weights'] == weights and type(model.loss_fn).__name__ == 'PixelBankLoss'
        assert model.adapter.lr == 5e-4 and model.adapter.weights_lr == 5e-6  # not the option file's 1e-3
        assert denoise.method_of(model.adapt_opt) == name
    assert denoise.METHODS['lan+full'] == {'type': 'OffsetAndWeights', 'combined': {'weights': 'FullTrainable'}}


def test_grey_network_gives_grey_photos(photos, tmp_path):
    from lan_basicsr.archs.dncnn_arch import DnCNN
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'grey.pth')
    torch.save({'params': DnCNN(1, 1, 4, 3, 'R').state_dict()}, ckpt)
    arch = ['--arch', 'DnCNN', '--weights', ckpt, '--arch-opt', 'in_nc=1', 'out_nc=1', 'nc=4', 'nb=3', 'act_mode=R']
    assert main(['-i', str(photos / 'b_photo.png'), '-o', str(tmp_path), '--compare', *arch, *STEPS]) == 0
    out = cv2.imread(str(tmp_path / 'b_photo_lan+full.png'), cv2.IMREAD_UNCHANGED)
    assert out.shape == (24, 32)
    strip = cv2.imread(str(tmp_path / 'b_photo_lan+full_compare.png'), cv2.IMREAD_UNCHANGED)
    grey = cv2.cvtColor(cv2.imread(str(photos / 'b_photo.png')), cv2.COLOR_BGR2GRAY)
    assert strip.shape == (44, 96) and np.array_equal(strip[20:, :32], grey)


@pytest.mark.parametrize('argv,message', [
    (['--arch', 'DnCNN'], '--arch needs --weights'),
    (['--arch', 'NoSuchNet', '--weights', __file__], '--arch: unknown type "NoSuchNet"'),
    (['--model', 'nope'], 'embedded model "nope" does not exist'),
    (['--suffix', '', '--ext', 'png', '-o', '{photos}'], 'the output would overwrite the input'),
    (['--tile', 'big'], '--tile: expected auto or an integer >= 0'),
    (['--device', 'tpu'], '--device tpu: expected auto, cpu, cuda or cuda:N'),
    (['-i', '{empty}'], 'no image files there'),
    (['-o', '{photos}/b_photo.png/sub'], 'cannot create the output folder'),
])
def test_errors_are_one_line(photos, tmp_path, capsys, argv, message):
    (tmp_path / 'empty').mkdir()
    argv = [a.format(photos=photos, empty=tmp_path / 'empty') for a in argv]
    with pytest.raises(SystemExit) as e:
        cli(['-i', str(photos / 'b_photo.png'), '-o', str(tmp_path), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1


def test_inputs_and_names(photos, tmp_path):
    paths, missing = collect_inputs([str(photos), str(photos / '*.png'), str(tmp_path / 'none*.jpg')])
    assert [osp.basename(p) for p in paths] == ['a_broken.jpg', 'b_photo.png', 'c_fotó ü.jpg']  # no repeats
    assert missing == [str(tmp_path / 'none*.jpg')]
    assert output_name('/x/IMG_1.JPG', 'lan', 'auto') == 'IMG_1_lan.jpg'
    assert output_name('/x/IMG_1.JPG', '', 'png') == 'IMG_1.png'
    cv2.imwrite(str(tmp_path / 'b_photo.jpg'), _photo())
    with pytest.raises(SystemExit) as e:  # two inputs, one output name
        cli(['-i', str(photos / 'b_photo.png'), str(tmp_path / 'b_photo.jpg'), '-o', str(tmp_path / 'o')])
    assert e.value.code == 2


def test_tools_wrapper_runs():
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'denoise.py'), '--help'],
                          capture_output=True,
                          text=True,
                          cwd=ROOT)
    assert proc.returncode == 0 and '--tile-pad' in proc.stdout and '--max-memory' in proc.stdout
