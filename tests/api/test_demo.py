"""The demo page: what it shows for an upload, and the page itself in headless Chromium."""

from __future__ import annotations

import importlib.util
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
    overlay, grid, entropy, foreground, status = segment(predictor, str(real_image), 4)
    pred = predictor(real_image, samples=4)
    from segcvae.data import read_image

    expected = viz.overlay(read_image(real_image), pred.mask, predictor.palette)
    assert overlay.shape == (250, 250, 3) and (overlay == expected).all()
    assert entropy.shape == foreground.shape == (250, 250, 3)
    assert grid.shape[0] > 250 and grid.shape[1] > 250  # a 2 x 2 grid
    assert "4 hypotheses in" in status and "250x250" in status


def test_segment_refuses_bad_uploads(tiny_ckpt: Path, real_image: Path, tmp_path: Path) -> None:
    predictor = segcvae.load(tiny_ckpt)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(DemoError, match="notes.png is not a readable image"):
        segment(predictor, str(bad), 2)
    with pytest.raises(DemoError, match="megapixels; the demo accepts up to"):
        segment(predictor, str(real_image), 2, max_pixels=10_000)
    with pytest.raises(DemoError, match="no image"):
        segment(predictor, None, 2)


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

        upload(real_image)  # ... and the server still answers the next one
        status_contains("hypotheses in")
        for elem in ("overlay", "hypotheses", "entropy", "foreground"):
            wait.until(
                lambda d, elem=elem: d.execute_script(
                    "const i = document.querySelector(arguments[0]);"
                    "return i !== null && i.complete && i.naturalWidth > 0;",
                    f"#{elem} img",
                ),
                message=f"no {elem} image on the page",
            )
        size = driver.execute_script(
            "const i = document.querySelector('#overlay img'); return [i.naturalWidth, i.naturalHeight];"
        )
        assert size == [250, 250]
        assert "250x250" in driver.find_element(By.CSS_SELECTOR, "#status").text
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
