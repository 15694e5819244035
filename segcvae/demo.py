"""A local web page for a trained model (gradio): upload an image, see masks, hypotheses, uncertainty.

``segcvae demo --ckpt best.pt`` serves it on http://127.0.0.1:7860. The page calls the same
:class:`segcvae.api.Predictor` as ``segcvae predict`` and the Python API. Nothing is sent off the
machine: gradio's analytics are switched off before it is imported, no share link is made, and
the page uses the fonts gradio ships.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segcvae import viz
from segcvae.api import Predictor

MAX_PIXELS = 40_000_000  # larger uploads are refused with a message (memory of the full-size maps)
MAX_FILE_MB = 50
MAX_SAMPLES = 64

OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "GRADIO_SSR_MODE": "False",
}


def offline_environment() -> None:
    """Switch off gradio's analytics and hub look-ups (call before importing gradio)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def write_examples(folder: Path, n: int = 3, size: int = 128) -> list[Path]:
    """Render ``n`` test images of the embedded shapes data to ``folder`` as PNGs."""
    from segcvae.data.shapes import ShapesDataset

    folder.mkdir(parents=True, exist_ok=True)
    data = ShapesDataset("test", n, image_size=size)
    paths = []
    for i in range(n):
        path = folder / f"shapes_{i}.png"
        viz.save_png(path, data.render(i).image)
        paths.append(path)
    return paths


class DemoError(ValueError):
    """An upload the page cannot use; the message is shown on the page."""


def segment(
    predictor: Predictor,
    path: str | Path | None,
    samples: int,
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """What the page shows for one upload.

    Args:
        predictor: The model.
        path: The uploaded file.
        samples: S, hypotheses to draw (1..MAX_SAMPLES).
        max_pixels: Largest accepted image (H * W).

    Returns:
        ``(overlay, hypotheses grid, entropy map, foreground frequency map, status text)``, each
        picture (h, w, 3) uint8.

    Raises:
        DemoError: No file, not an image, or too large (the message says which and the limit).
    """
    from segcvae.data import DataError, read_image

    if not path:
        raise DemoError("no image: upload one or pick an example")
    path = Path(path)
    mb = path.stat().st_size / 2**20 if path.is_file() else 0.0
    if mb > MAX_FILE_MB:
        raise DemoError(
            f"{path.name} is {mb:.0f} MB; the demo accepts files up to {MAX_FILE_MB} MB"
        )
    try:
        image = read_image(path)
    except DataError as e:
        raise DemoError(f"{path.name} is not a readable image: {str(e).split(': ', 1)[-1]}") from e
    h, w = image.shape[:2]
    if h * w > max_pixels:
        raise DemoError(
            f"{path.name} is {w}x{h} = {h * w / 1e6:.1f} megapixels; the demo accepts up to "
            f"{max_pixels / 1e6:.0f}"
        )
    samples = int(min(max(samples, 1), MAX_SAMPLES))
    start = time.perf_counter()
    pred = predictor(image, samples=samples)
    seconds = time.perf_counter() - start
    from segcvae.engine.predict import hypotheses_grid

    palette = predictor.palette
    k = max(predictor.num_classes, 2)
    overlay = viz.overlay(image, pred.mask, palette)
    grid = hypotheses_grid(pred, palette, max_tile=160)
    entropy = viz.heatmap(pred.entropy, vmax=float(np.log(k)))
    foreground = viz.heatmap(pred.foreground_frequency, vmax=1.0, cmap="viridis")
    names = ", ".join(
        f"{n} {100 * float((pred.mask == i).mean()):.0f}%" for i, n in enumerate(pred.class_names)
    )
    status = (
        f"**{path.name}**: {w}x{h}, {samples} hypotheses in **{seconds:.2f} s** on "
        f"{predictor.device.type}. Mask: {names}. Mean entropy {float(pred.entropy.mean()):.3f} "
        f"nats, mutual information {float(pred.mutual_information.mean()):.3f} nats."
    )
    return overlay, grid, entropy, foreground, status


def build_demo(predictor: Predictor, examples: Sequence[Path] = (), title: str = "segcvae") -> Any:
    """The gradio page (a ``gradio.Blocks``; call ``.launch`` on it).

    Args:
        predictor: The model.
        examples: Image files offered as examples.
        title: Page title.
    """
    offline_environment()
    import gradio as gr

    legend = ", ".join(
        f"<span style='color:rgb({c[0]},{c[1]},{c[2]})'>&#9632;</span> {n}"
        for n, c in zip(predictor.class_names, predictor.palette, strict=True)
    )

    def run(path: str | None, samples: float) -> tuple[Any, Any, Any, Any, str]:
        try:
            return segment(predictor, path, int(samples))
        except DemoError as e:
            return None, None, None, None, f"**error:** {e}"

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"## {title}\nUpload an image (any size) or pick an example; the model draws S "
            f"hypotheses from its prior. Classes: {legend}. Uncertainty: entropy of the mean "
            "prediction (dark 0, bright log K nats); foreground frequency: the fraction of "
            "hypotheses that are not background (dark 0, bright 1)."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    label="image", file_types=["image"], type="filepath", elem_id="upload"
                )
                samples = gr.Slider(
                    1, MAX_SAMPLES, value=8, step=1, label="hypotheses S", elem_id="samples"
                )
                button = gr.Button("Segment", variant="primary", elem_id="run")
                status = gr.Markdown("", elem_id="status")
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[upload], label="examples")
            with gr.Column(scale=2):
                with gr.Row():
                    overlay = gr.Image(label="mask overlay", elem_id="overlay", format="png")
                    entropy = gr.Image(
                        label="uncertainty (entropy)",
                        elem_id="entropy",
                        format="png",
                    )
                    foreground = gr.Image(
                        label="foreground frequency",
                        elem_id="foreground",
                        format="png",
                    )
                grid = gr.Image(label="hypotheses", elem_id="hypotheses", format="png")
        outputs = [overlay, grid, entropy, foreground, status]
        button.click(run, inputs=[upload, samples], outputs=outputs)
        upload.upload(run, inputs=[upload, samples], outputs=outputs)
    return demo


def launch(
    predictor: Predictor,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples_dir: Path | None = None,
    block: bool = True,
) -> Any:
    """Serve the page.

    Args:
        predictor: The model.
        host: Address to bind (127.0.0.1: this machine only).
        port: TCP port.
        examples_dir: Where to write the example images (default: a new temporary folder).
        block: Serve until interrupted; False returns the running ``Blocks`` (``.close()`` it).
    """
    import tempfile

    folder = examples_dir or Path(tempfile.mkdtemp(prefix="segcvae-demo-"))
    examples = write_examples(folder)
    demo = build_demo(predictor, examples)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        allowed_paths=[str(folder)],
        max_file_size=f"{MAX_FILE_MB}mb",
        ssr_mode=False,
        quiet=not block,
        show_error=True,
    )
    return demo


__all__ = ["DemoError", "build_demo", "launch", "offline_environment", "segment", "write_examples"]
