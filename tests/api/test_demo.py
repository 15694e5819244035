"""The demo page: what it shows for an upload, and the page itself in headless Chromium."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import segcvae
from segcvae import viz
from segcvae.demo import DemoError, segment, write_examples

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WHY_NOT = [
    why
    for why, missing in (
        ("gradio (pip install -e '.[demo]')", importlib.util.find_spec("gradio") is None),
        ("selenium (pip install -e '.[dev]')", importlib.util.find_spec("selenium") is None),
        (f"a browser at {CHROMIUM} (apt-get install chromium)", not os.path.isfile(CHROMIUM)),
        (f"{CHROMEDRIVER} (apt-get install chromium-driver)", not os.path.isfile(CHROMEDRIVER)),
    )
    if missing
]


def test_segment_shows_the_predictor_answer(tiny_ckpt: Path, real_image: Path) -> None:
    predictor = segcvae.load(tiny_ckpt)
    view = segment(predictor, str(real_image), 4)
    pred = predictor(real_image, samples=4)
    from segcvae.data import read_image

    image = read_image(real_image)
    expected = viz.overlay(image, pred.mask, predictor.palette)
    # 250 px reaches DISPLAY_SIZE // 2 only: shown 2x, every pixel a 2 x 2 block
    assert view.overlay.shape == (500, 500, 3) and (view.overlay[::2, ::2] == expected).all()
    assert (view.overlay[1::2, 1::2] == expected).all()
    assert (view.shown_image[::2, ::2] == image).all() and view.shown_image.shape == (500, 500, 3)
    assert view.entropy.shape == view.foreground.shape == (500, 500, 3)
    assert view.hypotheses.shape[0] > 250 and view.hypotheses.shape[1] > 250  # a 2 x 2 grid
    assert (view.image == image).all() and (view.prediction.mask == pred.mask).all()
    assert "4 hypotheses in" in view.status and "250x250" in view.status
    assert "enlarged 2x" in view.status


def test_small_images_are_enlarged_on_screen_not_in_the_files(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from segcvae.demo import DISPLAY_SIZE

    predictor = segcvae.load(tiny_ckpt)
    (small,) = write_examples(tmp_path, n=1, size=64)  # the model's size: a thumbnail before
    view = segment(predictor, small, 3)
    assert DISPLAY_SIZE == 256
    for picture in (view.shown_image, view.overlay, view.entropy, view.foreground):
        assert picture.shape == (256, 256, 3)  # 4x, nearest neighbour: 4 x 4 blocks
        assert (picture[::4, ::4] == picture[3::4, 3::4]).all()
    assert (
        view.overlay[::4, ::4] == viz.overlay(view.image, view.prediction.mask, predictor.palette)
    ).all()
    # 3 hypotheses, 2 columns of tiles enlarged from 64 to >= 128 px (2x)
    assert view.hypotheses.shape[1] == 2 * 128 + 2
    assert "enlarged 4x (nearest neighbour); the files below are 64x64" in view.status
    files = view.write_files(tmp_path / "files", predictor)
    assert [f.name for f in files] == [
        f"shapes_0_{k}.png" for k in ("mask", "overlay", "samples", "uncertainty", "foreground")
    ]
    for f in files[:2] + files[3:]:
        assert Image.open(f).size == (64, 64), f.name  # the downloads keep the image's size
    assert (np.asarray(Image.open(files[0])) == view.prediction.mask).all()
    w, h = Image.open(files[2]).size
    assert w == 2 * 64 + 2  # the samples grid at the image's size, not the screen's


def test_segment_refuses_bad_uploads(tiny_ckpt: Path, real_image: Path, tmp_path: Path) -> None:
    import cv2

    predictor = segcvae.load(tiny_ckpt)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(DemoError, match="notes.png is not a readable image"):
        segment(predictor, str(bad), 2)
    with pytest.raises(DemoError, match="megapixels; the demo accepts up to"):
        segment(predictor, str(real_image), 2, max_pixels=10_000)
    with pytest.raises(DemoError, match="no image"):
        segment(predictor, None, 2)
    scan = tmp_path / "scan.tiff"  # float pixels of 0..255: the predictor's rule, not clipped
    assert cv2.imwrite(str(scan), np.full((40, 30, 3), 200.0, np.float32))
    with pytest.raises(DemoError, match=r"^scan.tiff: float32 image has values 200\.\.200; "):
        segment(predictor, str(scan), 2)
    nan = tmp_path / "nan.tiff"
    assert cv2.imwrite(str(nan), np.full((40, 30), np.nan, np.float32))
    with pytest.raises(DemoError, match="nan.tiff: float32 image has 1200 NaN or infinite"):
        segment(predictor, str(nan), 2)


def test_segment_says_when_the_hypotheses_would_not_fit(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    import segcvae.engine.memory

    image = tmp_path / "im.png"
    viz.save_png(image, np.zeros((40, 30, 3), np.uint8))
    monkeypatch.setattr(segcvae.engine.memory, "available_memory", lambda device=None: 100_000)
    with pytest.raises(DemoError, match=r"^im.png: samples=8: 8 hypotheses .* would need about"):
        segment(segcvae.load(tiny_ckpt), str(image), 8)


def test_examples_are_shapes_images(tmp_path: Path) -> None:
    from PIL import Image

    paths = write_examples(tmp_path, n=2, size=64)
    assert [p.name for p in paths] == ["shapes_0.png", "shapes_1.png"]
    assert Image.open(paths[0]).size == (64, 64)
    assert np.asarray(Image.open(paths[0])).std() > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # a browser
@pytest.mark.skipif(bool(WHY_NOT), reason=f"browser test needs {'; '.join(WHY_NOT)}")
def test_demo_page_in_headless_chromium(tiny_ckpt: Path, real_image: Path, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from segcvae.demo import launch

    predictor = segcvae.load(tiny_ckpt)
    port = _free_port()
    demo = launch(predictor, port=port, examples_dir=tmp_path / "examples", block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # the page loads offline
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait = WebDriverWait(driver, 120)

        def upload(path: Path) -> None:
            driver.get(url)
            field = wait.until(
                ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
            )
            field.send_keys(str(path))

        def status_contains(text: str) -> None:
            wait.until(
                lambda d: text in d.find_element(By.CSS_SELECTOR, "#status").text,
                message=f"status never showed {text!r}",
            )

        bad = tmp_path / "broken.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        upload(bad)  # a bad upload: a message on the page ...
        status_contains("not a readable image")

        def natural_size(elem: str) -> list[int]:
            return driver.execute_script(
                "const i = document.querySelector(arguments[0]);"
                "return [i.naturalWidth, i.naturalHeight];",
                f"#{elem} img",
            )

        def pictures_loaded(width: int) -> None:
            for elem in ("input", "overlay", "hypotheses", "entropy", "foreground"):
                wait.until(
                    lambda d, elem=elem: d.execute_script(
                        "const i = document.querySelector(arguments[0]);"
                        "return i !== null && i.complete && (arguments[1] === null ?"
                        " i.naturalWidth > 0 : i.naturalWidth == arguments[1]);",
                        f"#{elem} img",
                        None if elem == "hypotheses" else width,
                    ),
                    message=f"no {elem} picture {width} px wide on the page",
                )

        def downloads() -> dict[str, str]:
            return driver.execute_script(
                "const out = {};"
                "document.querySelectorAll('#files a[download]').forEach("
                "a => { out[a.getAttribute('download')] = a.href; });"
                "return out;"
            )

        def files_listed(stem: str) -> dict[str, str]:
            kinds = ("mask", "overlay", "samples", "uncertainty", "foreground")
            names = {f"{stem}_{k}.png" for k in kinds}
            wait.until(
                lambda d: set(downloads()) == names,
                message=f"the files of {stem} are not offered",
            )
            return downloads()

        upload(real_image)  # ... and the server still answers the next one
        status_contains("hypotheses in")
        pictures_loaded(500)  # 250 px: shown 2x
        assert natural_size("input") == natural_size("overlay") == [500, 500]
        assert "250x250" in driver.find_element(By.CSS_SELECTOR, "#status").text
        files_listed(real_image.stem)

        (small,) = write_examples(tmp_path / "small", n=1, size=64)  # the model's size
        upload(small)
        status_contains("the files below are 64x64")
        pictures_loaded(256)  # 64 px: shown 4x, not as a thumbnail
        assert natural_size("entropy") == natural_size("foreground") == [256, 256]
        mask_url = files_listed("shapes_0")["shapes_0_mask.png"]
        from urllib.request import urlopen

        from PIL import Image

        with urlopen(mask_url, timeout=30) as r:  # the download is at the image's size
            assert Image.open(io.BytesIO(r.read())).size == (64, 64)
        time.sleep(0.5)  # let the images paint
        shot = tmp_path / "demo.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        target = os.environ.get("SEGCVAE_DEMO_SCREENSHOT")
        if target:
            shutil.copy(shot, target)
    finally:
        driver.quit()
        demo.close()


@pytest.mark.skipif(importlib.util.find_spec("gradio") is not None, reason="gradio is installed")
def test_demo_command_without_gradio_says_what_to_install(tiny_ckpt: Path, capsys) -> None:
    from segcvae.cli import main

    assert main(["demo", "--ckpt", str(tiny_ckpt)]) == 2
    assert "pip install -e '.[demo]'" in capsys.readouterr().err


@pytest.mark.slow  # starts a server
@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="needs gradio")
def test_a_port_in_use_is_one_line_and_exit_2(tiny_ckpt: Path, capsys) -> None:
    from segcvae.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--ckpt", str(tiny_ckpt), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert f"--port {port}: cannot serve there (Cannot find empty port" in err
    assert err.strip().endswith("choose another --port")
