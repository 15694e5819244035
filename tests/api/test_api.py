"""segcvae.load / Predictor: inputs of every kind, original-size outputs, same answer as predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segcvae
from segcvae.api import PredictionResult, Predictor, to_rgb
from segcvae.cli import predict_main
from segcvae.config import ConfigError
from segcvae.data import DataError, read_image
from segcvae.engine.predict import foreground_png
from tests.api.conftest import NUM_CLASSES, write_tiny_checkpoint


@pytest.fixture(scope="module")
def predictor(tiny_ckpt: Path) -> Predictor:
    torch.set_num_threads(1)
    return segcvae.load(tiny_ckpt, device="cpu")


def _check_result(r: PredictionResult, h: int, w: int, s: int) -> None:
    assert r.size == (h, w)
    assert r.mask.shape == (h, w) and r.mask.dtype == np.uint8
    assert r.probs.shape == (NUM_CLASSES, h, w) and r.probs.dtype == np.float32
    assert r.hypotheses.shape == (s, h, w) and r.hypotheses.dtype == np.uint8
    for name in ("entropy", "mutual_information", "foreground_frequency"):
        a = getattr(r, name)
        assert a.shape == (h, w) and a.dtype == np.float32, name
        assert np.isfinite(a).all() and (a >= 0).all(), name
    np.testing.assert_allclose(r.probs.sum(0), 1.0, atol=1e-5)
    assert (r.mask == r.probs.argmax(0)).all()
    assert r.entropy.max() <= np.log(NUM_CLASSES) + 1e-5
    assert (r.mutual_information <= r.entropy + 1e-5).all()
    assert r.foreground_frequency.max() <= 1.0
    if s:
        expected = (r.hypotheses != 0).mean(0)
        np.testing.assert_allclose(r.foreground_frequency, expected, atol=1e-6)
    assert r.class_names[0] == "background" and len(r.class_names) == NUM_CLASSES


def test_load_and_call_on_a_real_photograph(predictor: Predictor, real_image: Path) -> None:
    assert isinstance(predictor, Predictor) and predictor.device.type == "cpu"
    assert not predictor.model.training
    r = predictor(real_image, samples=6, seed=1)
    _check_result(r, 250, 250, 6)
    # untrained but re-drawn z embedding: the hypotheses really differ
    assert len({h.tobytes() for h in r.hypotheses}) > 1
    assert r.mutual_information.max() > 0


def test_every_input_kind_gives_the_same_answer(
    predictor: Predictor, real_image_wide: Path
) -> None:
    rgb = read_image(real_image_wide)
    h, w = rgb.shape[:2]
    assert h != w
    gray = (rgb.mean(2)).astype(np.uint8)
    rgba = np.dstack([rgb, np.full((h, w), 7, np.uint8)])
    ref = predictor(rgb, samples=3, seed=0)
    _check_result(ref, h, w, 3)
    for other in (str(real_image_wide), real_image_wide, Image.open(real_image_wide), rgba):
        r = predictor(other, samples=3, seed=0)
        assert (r.mask == ref.mask).all() and (r.hypotheses == ref.hypotheses).all()
    for g in (gray, gray[:, :, None], Image.fromarray(gray)):
        r = predictor(g, samples=2, seed=0)
        _check_result(r, h, w, 2)
        gref = predictor(np.repeat(gray[:, :, None], 3, 2), samples=2, seed=0)
        assert (r.mask == gref.mask).all()
    assert (to_rgb(rgb.astype(np.float32) / 255.0) == rgb).all()
    assert (to_rgb(rgb.astype(np.uint16) * 257) == rgb).all()
    deep = Image.fromarray(gray.astype(np.uint16) * 257)  # a 16-bit grayscale PIL image
    assert deep.mode.startswith("I") and (to_rgb(deep) == to_rgb(gray)).all()


def test_a_list_is_batched_with_the_same_deterministic_answer(
    predictor: Predictor, real_image: Path, real_image_wide: Path
) -> None:
    images = [read_image(real_image), read_image(real_image_wide), np.zeros((17, 45), np.uint8)]
    batched = predictor(images, samples=0)
    assert isinstance(batched, list) and len(batched) == 3
    for im, r in zip(images, batched, strict=True):
        single = predictor(im, samples=0)
        _check_result(r, im.shape[0], im.shape[1], 0)
        np.testing.assert_allclose(r.probs, single.probs, atol=1e-5)
        assert (r.foreground_frequency == (r.mask != 0)).all()
        assert (r.mutual_information == 0).all()


def test_seed_repeats_the_hypotheses_and_leaves_the_global_rng(
    predictor: Predictor, real_image: Path
) -> None:
    state = torch.get_rng_state()
    a = predictor(real_image, samples=4, seed=3)
    b = predictor(real_image, samples=4, seed=3)
    c = predictor(real_image, samples=4, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert (a.hypotheses == b.hypotheses).all()
    assert not (a.hypotheses == c.hypotheses).all()
    assert (a.mask == c.mask).all()  # the deterministic prediction needs no noise


def test_level_set_hypotheses_follow_the_checkpoints_eval_setting(
    tiny_ckpt: Path, real_image: Path
) -> None:
    level = segcvae.load(tiny_ckpt, device="cpu", overrides=["eval.hypothesis_masks=level_set"])
    mode = segcvae.load(tiny_ckpt, device="cpu")
    a, b = level(real_image, samples=6, seed=2), mode(real_image, samples=6, seed=2)
    _check_result(a, 250, 250, 6)
    assert (a.mask == b.mask).all() and np.allclose(a.entropy, b.entropy)
    assert not (a.hypotheses == b.hypotheses).all()


def test_cnn_hypotheses_are_the_mask(tmp_path: Path, real_image: Path) -> None:
    p = segcvae.load(write_tiny_checkpoint(tmp_path / "cnn.pt", "cnn"), device="cpu")
    r = p(real_image, samples=3)
    _check_result(r, 250, 250, 3)
    assert all((h == r.mask).all() for h in r.hypotheses)
    assert r.mutual_information.max() < 1e-5


def test_bad_inputs_name_what_was_expected(predictor: Predictor, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected"):
        predictor(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(DataError, match="pixel type"):
        predictor(np.zeros((4, 4, 3), np.complex64))
    with pytest.raises(DataError, match="type dict"):
        predictor({"image": 1})
    with pytest.raises(DataError, match="missing.png"):
        predictor(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="samples"):
        predictor(np.zeros((4, 4, 3), np.uint8), samples=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device='cuda' but this machine has no usable CUDA"):
            Predictor.from_checkpoint(tmp_path / "x.pt", "cuda")


def test_same_mask_as_tools_predict(
    predictor: Predictor, tiny_ckpt: Path, real_image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code = predict_main(
        [
            "--ckpt",
            str(tiny_ckpt),
            "--input",
            str(real_image),
            "--out",
            str(out),
            "--samples",
            "5",
            "--seed",
            "11",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    stem = real_image.stem
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_{k}.png" for k in ("mask", "overlay", "samples", "uncertainty", "foreground")
    )
    r = predictor(real_image, samples=5, seed=11)
    written = Image.open(out / f"{stem}_mask.png")
    assert written.mode == "P" and written.size == (250, 250)
    assert (np.asarray(written) == r.mask).all()
    fg = Image.open(out / f"{stem}_foreground.png")
    assert fg.mode == "L" and (np.asarray(fg) == foreground_png(r)).all()
    # 5 hypotheses: every pixel is k/5 of 255
    assert set(np.unique(np.asarray(fg)).tolist()) <= {round(k * 255 / 5) for k in range(6)}


# ------------------------------------------------------------------ the float rule (issue 26)
def _photo_and_floats(real_image_wide: Path) -> tuple[np.ndarray, np.ndarray]:
    rgb = read_image(real_image_wide)
    return rgb, rgb.astype(np.float32)  # what np.asarray(img).astype(np.float32) gives: 0..255


def test_float_pixels_must_be_in_0_1(predictor: Predictor, real_image_wide: Path) -> None:
    rgb, f255 = _photo_and_floats(real_image_wide)
    # the silent wrong answer of before: clipped to [0, 1], most pixels white
    with pytest.raises(DataError, match=r"float32 has values \d+\.\.255; float pixels must be in "):
        predictor(f255)
    with pytest.raises(DataError, match="divide by 255"):
        to_rgb(f255)
    with pytest.raises(DataError, match="divide by 65535"):
        to_rgb(rgb.astype(np.float64) * 257)
    with pytest.raises(DataError, match=r"1\.001.*must be in \[0, 1\]"):
        to_rgb(np.full((4, 4, 3), 1.001, np.float32))  # just above 1 is not clipped either
    with pytest.raises(DataError, match="before any mean / std step"):
        to_rgb(np.full((4, 4), -0.5, np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        image = f255 / 255.0
        image[3, 5, 1] = bad
        with pytest.raises(DataError, match="has 1 NaN or infinite pixel value"):
            predictor(image)
    ok = predictor(f255 / 255.0, samples=2, seed=0)  # in [0, 1]: the uint8 image's answer
    ref = predictor(rgb, samples=2, seed=0)
    assert (ok.mask == ref.mask).all() and (ok.hypotheses == ref.hypotheses).all()
    assert (to_rgb(np.zeros((2, 2), np.float16)) == 0).all() and to_rgb(
        np.ones((2, 2))
    ).max() == 255


def test_float_pil_images_follow_the_same_rule(real_image_wide: Path) -> None:
    rgb, f255 = _photo_and_floats(real_image_wide)
    gray = f255.mean(2).astype(np.float32)
    with pytest.raises(DataError, match="divide by 255"):
        to_rgb(Image.fromarray(gray))  # mode "F": convert("RGB") would have clipped it
    expected = to_rgb(gray / 255.0)
    assert (to_rgb(Image.fromarray(gray / 255.0)) == expected).all()


def test_float_tiff_files_follow_the_same_rule(
    predictor: Predictor, real_image_wide: Path, tmp_path: Path
) -> None:
    import cv2

    from segcvae.api import load_image

    rgb, f255 = _photo_and_floats(real_image_wide)
    bgr = np.ascontiguousarray(f255[:, :, ::-1])
    assert cv2.imwrite(str(tmp_path / "f255.tiff"), bgr)
    assert cv2.imwrite(str(tmp_path / "f01.tiff"), bgr / 255.0)
    nan = (bgr / 255.0).astype(np.float32)
    nan[0, 0, 0] = np.nan
    assert cv2.imwrite(str(tmp_path / "nan.tif"), nan)
    with pytest.raises(DataError, match=r"f255\.tiff: float32 image has values \d+\.\.255"):
        predictor(tmp_path / "f255.tiff")
    with pytest.raises(DataError, match=r"nan\.tif: float32 image has 1 NaN"):
        load_image(tmp_path / "nan.tif")
    assert (load_image(tmp_path / "f01.tiff") == rgb).all()  # float64 TIFF in [0, 1]
    r = predictor(tmp_path / "f01.tiff", samples=0)
    assert (r.mask == predictor(rgb, samples=0).mask).all()


def test_predict_refuses_a_float_tiff_of_0_255(
    tiny_ckpt: Path, real_image: Path, tmp_path: Path, capsys
) -> None:
    import cv2

    bad = tmp_path / "scan.tiff"
    assert cv2.imwrite(str(bad), read_image(real_image)[:, :, ::-1].astype(np.float32))
    out = tmp_path / "out"
    args = ["--ckpt", str(tiny_ckpt), "--input", str(bad), str(real_image), "--out", str(out)]
    assert predict_main([*args, "--samples", "2", "--quiet"]) == 2  # the input is the user's
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "scan.tiff" in x and "float" in x)
    assert "values 0..255; float pixels must be in [0, 1]" in line and "divide by 255" in line
    assert "Traceback" not in err
    assert not list(out.glob("scan_*"))  # nothing written for it ...
    assert (out / f"{real_image.stem}_mask.png").is_file()  # ... the good image is done
