"""Defined conversions of the image decoder and its errors."""
import cv2
import numpy as np
import pytest

from lan_basicsr.data.data_util import decode_image, fixed_crop, parse_crop_opt, read_image_file
from lan_basicsr.utils.errors import DataError, OptionError


def write(path, img):
    assert cv2.imwrite(str(path), img)
    return str(path)


def test_colour_8bit_is_rgb_in_unit_range(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    bgr[0, 0] = (0, 51, 0)
    img = read_image_file(write(tmp_path / 'red.png', bgr))
    assert img.dtype == np.float32 and img.shape == (4, 5, 3)
    np.testing.assert_array_equal(img[1, 1], [1, 0, 0])
    np.testing.assert_allclose(img[0, 0], [0, 0.2, 0], atol=1e-7)


def test_grayscale_replicated_to_three_channels(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    img = read_image_file(write(tmp_path / 'gray.png', gray))
    assert img.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_allclose(img[..., c], gray / 255., atol=1e-7)


def test_gray_mode_is_opencvs_bgr_to_gray_on_the_stored_integers(tmp_path):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    path = write(tmp_path / 'colour.png', bgr)
    img = read_image_file(path, 'gray')
    assert img.dtype == np.float32 and img.shape == (6, 7, 1)
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)  # rounded to uint8, as a grey PNG written from it holds
    np.testing.assert_array_equal(img[..., 0], expected.astype(np.float32) / 255.)
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    assert np.abs(img[..., 0] * 255. - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 0.5 + 1e-6  # Rec. 601 luma
    # a colour file read as gray equals the grey file written from OpenCV's conversion, bit for bit
    grey_file = write(tmp_path / 'grey.png', expected)
    np.testing.assert_array_equal(read_image_file(grey_file, 'gray'), img)
    np.testing.assert_array_equal(read_image_file(grey_file, 'rgb'), np.repeat(img, 3, axis=2))
    bgra = np.concatenate([bgr, np.full((6, 7, 1), 9, np.uint8)], axis=2)  # alpha is dropped in gray mode too
    np.testing.assert_array_equal(read_image_file(write(tmp_path / 'rgba.png', bgra), 'gray'), img)
    deep = (bgr.astype(np.uint16) * 257)
    img16 = read_image_file(write(tmp_path / 'deep.png', deep), 'gray')
    np.testing.assert_array_equal(img16[..., 0], cv2.cvtColor(deep, cv2.COLOR_BGR2GRAY) / np.float32(65535.))


def test_rgba_alpha_dropped(tmp_path):
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 7  # blue, nearly transparent
    img = read_image_file(write(tmp_path / 'rgba.png', bgra))
    assert img.shape == (3, 3, 3)
    np.testing.assert_array_equal(img[0, 0], [0, 0, 1])


def test_16bit_scaled_by_65535(tmp_path):
    bgr16 = np.full((2, 3, 3), 65535, np.uint16)
    bgr16[0, 0] = (0, 32768, 13107)
    img = read_image_file(write(tmp_path / 'deep.png', bgr16))
    np.testing.assert_allclose(img[0, 0], [13107 / 65535, 32768 / 65535, 0], rtol=1e-6)
    np.testing.assert_array_equal(img[1, 2], [1, 1, 1])
    gray16 = read_image_file(write(tmp_path / 'gray16.png', np.full((2, 2), 65535, np.uint16)))
    assert gray16.shape == (2, 2, 3) and gray16.max() == 1


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match='nothere.png'):
        read_image_file(str(tmp_path / 'nothere.png'))
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0 this is not a jpeg')
    with pytest.raises(DataError, match='bad.jpg.*cannot decode'):
        read_image_file(str(bad))
    with pytest.raises(DataError, match='key42'):
        decode_image(None, 'key42')


def test_unsupported_sample_type(tmp_path):
    path = tmp_path / 'float.tiff'
    assert cv2.imwrite(str(path), np.zeros((2, 2, 3), np.float32))
    with pytest.raises(DataError, match='float.tiff.*float32'):
        read_image_file(str(path))


def test_fixed_crop_positions():
    img = np.arange(6 * 8).reshape(6, 8, 1)
    top_left = parse_crop_opt({'size': 4}, 'x')
    center = parse_crop_opt({'size': [2, 4], 'position': 'center'}, 'x')
    np.testing.assert_array_equal(fixed_crop([img], top_left, 'n')[0], img[:4, :4])
    np.testing.assert_array_equal(fixed_crop([img], center, 'n')[0], img[2:4, 2:6])
    assert fixed_crop([img], None, 'n')[0] is img
    with pytest.raises(DataError, match='pic.png: image 6x8 is smaller than the fixed crop 7x7'):
        fixed_crop([img], parse_crop_opt({'size': 7}, 'x'), 'pic.png')
    with pytest.raises(OptionError, match='datasets.test.crop.position'):
        parse_crop_opt({'size': 4, 'position': 'middle'}, 'datasets.test.crop')


def test_truncated_jpeg_refused(tmp_path, monkeypatch):
    yy, xx = np.mgrid[0:64, 0:64]
    ok, buf = cv2.imencode('.jpg', np.stack([xx * 4, yy * 4, xx + yy], axis=2).astype(np.uint8))
    path = tmp_path / 'cut.jpg'
    path.write_bytes(buf.tobytes()[:-2])  # end-of-image marker gone
    with pytest.raises(DataError, match='cut.jpg: (truncated JPEG|cannot decode)'):  # OpenCV 5 refuses it itself
        read_image_file(str(path))
    # older OpenCV decodes such a file (grey fill): the marker check catches it
    monkeypatch.setattr(cv2, 'imdecode', lambda *args: np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match='cut.jpg: truncated JPEG'):
        read_image_file(str(path))
    path.write_bytes(buf.tobytes())
    assert read_image_file(str(path)).shape == (64, 64, 3)
