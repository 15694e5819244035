"""The demo page's screenshot in the README (docs/figures/demo.png), taken in headless Chromium.

Serves ``segcvae demo`` for a checkpoint on a free local port, uploads one test image of the
embedded shapes data at the model's image size, waits until every picture is on the page and
saves the browser window. Needs ``pip install -e ".[demo]"`` and ``apt-get install chromium
chromium-driver``; nothing leaves the machine.

Usage (the README's figure, the default job's model):

    python tools/results/demo_screenshot.py --ckpt runs/default/best.pt --out docs/figures/demo.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import segcvae  # noqa: E402
from segcvae.demo import launch, write_examples  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--example", type=int, default=0, help="which shapes test image")
    p.add_argument("--window", default="1400,1300", help="browser window WIDTH,HEIGHT")
    args = p.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    predictor = segcvae.load(args.ckpt)
    size = int(predictor.config.data.image_size)
    tmp = Path(tempfile.mkdtemp(prefix="segcvae-shot-"))
    image = write_examples(tmp / "upload", n=args.example + 1, size=size)[args.example]
    port = _free_port()
    demo = launch(predictor, port=port, examples_dir=tmp / "examples", block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={args.window}",
    ):
        options.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        wait = WebDriverWait(driver, 300)
        driver.get(f"http://127.0.0.1:{port}/")
        field = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]"))
        )
        field.send_keys(str(image))
        wait.until(lambda d: "hypotheses in" in d.find_element(By.CSS_SELECTOR, "#status").text)
        for elem in ("input", "overlay", "hypotheses", "entropy", "foreground"):
            wait.until(
                lambda d, e=elem: d.execute_script(
                    "const i = document.querySelector(arguments[0]);"
                    "return i !== null && i.complete && i.naturalWidth > 0;",
                    f"#{e} img",
                )
            )
        time.sleep(1.0)  # let the images paint
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out} ({size}x{size} model, {image.name})")
    finally:
        driver.quit()
        demo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
