"""read_image, read_mask and colours_to_index: formats, and errors that name the file."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from segcvae.data import DataError, colours_to_index, read_image, read_mask


def _write(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


def test_read_image_returns_rgb_uint8(tmp_path):
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    image = read_image(_write(tmp_path / "red.png", rgb[..., ::-1]))  # cv2 writes BGR
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    assert (image[..., 0] == 200).all() and (image[..., 1:] == 0).all()


def test_read_image_grayscale_rgba_and_16_bit(tmp_path):
    gray = read_image(_write(tmp_path / "g.png", np.full((4, 4), 77, np.uint8)))
    assert gray.shape == (4, 4, 3) and (gray == 77).all()
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 1], bgra[..., 3] = 90, 10  # green, nearly transparent
    rgba = read_image(_write(tmp_path / "a.png", bgra))
    assert rgba.shape == (4, 4, 3) and (rgba[..., 1] == 90).all() and (rgba[..., [0, 2]] == 0).all()
    deep = read_image(_write(tmp_path / "d.png", np.full((4, 4), 0xAB00, np.uint16)))
    assert deep.dtype == np.uint8 and (deep == 0xAB).all()


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "empty"), (b"not an image at all", "cannot decode"), (None, "not found")],
)
def test_read_image_bad_files_name_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_an_error(tmp_path):
    ok, data = cv2.imencode(
        ".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[: len(data) * 2 // 3])
    with pytest.raises(DataError, match="truncated") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_mask_keeps_values(tmp_path):
    values = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(read_mask(_write(tmp_path / "m.png", values)), values)
    rgb = read_mask(_write(tmp_path / "c.png", np.dstack([values, values * 0, values * 0 + 9])))
    assert rgb.shape == (3, 4, 3) and np.array_equal(rgb[..., 2], values)  # BGR -> RGB


PALETTE = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]


def test_colours_to_index_maps_each_colour():
    rgb = np.array([[PALETTE[0], PALETTE[1]], [PALETTE[2], PALETTE[1]]], np.uint8)
    assert colours_to_index(rgb, PALETTE, "m.ppm").tolist() == [[0, 1], [2, 1]]


def test_unknown_colour_names_file_and_colour():
    rgb = np.zeros((3, 3, 3), np.uint8) + np.array(PALETTE[0], np.uint8)
    rgb[1, 1] = (12, 200, 40)
    with pytest.raises(DataError, match=r"m\.ppm: 1 pixels.*\(12, 200, 40\)"):
        colours_to_index(rgb, PALETTE, "m.ppm", ["background", "skin", "hair"])


def test_colour_tolerance_maps_noisy_pixels_to_nearest():
    rgb = np.zeros((2, 2, 3), np.uint8) + np.array(PALETTE[0], np.uint8)
    rgb[0, 1] = (4, 250, 3)  # a JPEG-noisy green
    with pytest.raises(DataError):
        colours_to_index(rgb, PALETTE, "m.jpg")
    assert colours_to_index(rgb, PALETTE, "m.jpg", tolerance=8).tolist() == [[0, 1], [0, 0]]
    with pytest.raises(DataError, match="too small"):
        colours_to_index(rgb, PALETTE, "m.jpg", tolerance=2)


def test_repeated_palette_colour_is_rejected():
    with pytest.raises(ValueError, match="repeats"):
        colours_to_index(np.zeros((2, 2, 3), np.uint8), [(0, 0, 0), (0, 0, 0)], "m.png")
