"""A local web page for a trained model (gradio): upload an image, see masks, hypotheses, uncertainty.

``segcvae demo --ckpt best.pt`` serves it on http://127.0.0.1:7860. The page calls the same
:class:`segcvae.api.Predictor` as ``segcvae predict`` and the Python API. Nothing is sent off the
machine: gradio's analytics are switched off before it is imported, no share link is made, and
the page uses the fonts gradio ships.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segcvae import viz
from segcvae.api import PredictionResult, Predictor

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


DISPLAY_SIZE = 256  # on the page, pictures shorter than this on their long side are enlarged
TILE_SIZE = (128, 192)  # hypothesis tiles on the page: enlarged to >= 128, shrunk to <= 192 px
KEEP_DOWNLOADS = 8  # the files of this many recent uploads stay downloadable


@dataclass
class DemoView:
    """What the page shows for one upload.

    The pictures are for the screen: enlarged by a whole factor (nearest neighbour, so every
    pixel of the model's answer stays a sharp square) until the long side reaches
    :data:`DISPLAY_SIZE`. The files offered for download are written from ``image`` and
    ``prediction`` at the image's own size (:meth:`write_files`), as ``segcvae predict`` does.

    Attributes:
        image: (H, W, 3) uint8, the uploaded image as read.
        prediction: Its :class:`~segcvae.api.PredictionResult` (H, W).
        name: The upload's file name.
        shown_image: The input picture, (f H, f W, 3) uint8.
        overlay: The mask blended on the image, (f H, f W, 3) uint8.
        hypotheses: The grid of hypotheses, (h, w, 3) uint8.
        entropy: The entropy heat map, (f H, f W, 3) uint8.
        foreground: The foreground-frequency heat map, (f H, f W, 3) uint8.
        status: Markdown: size, time, class shares, mean uncertainty.
    """

    image: np.ndarray
    prediction: PredictionResult
    name: str
    shown_image: np.ndarray
    overlay: np.ndarray
    hypotheses: np.ndarray
    entropy: np.ndarray
    foreground: np.ndarray
    status: str

    def pictures(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(input, overlay, entropy, foreground, hypotheses)``, the page's image order."""
        return self.shown_image, self.overlay, self.entropy, self.foreground, self.hypotheses

    def write_files(self, folder: Path, predictor: Predictor) -> list[Path]:
        """Write the prediction's files at the image's size into ``folder`` (created), named
        after the upload: ``<stem>_mask.png``, ``_overlay.png``, ``_samples.png``,
        ``_uncertainty.png``, ``_foreground.png`` (see
        :func:`segcvae.engine.predict.write_prediction`)."""
        from segcvae.engine.predict import write_prediction

        folder.mkdir(parents=True, exist_ok=True)
        return write_prediction(
            folder,
            Path(self.name).stem or "image",
            self.image,
            self.prediction,
            predictor.palette,
            predictor.num_classes,
        )


def segment(
    predictor: Predictor,
    path: str | Path | None,
    samples: int,
    max_pixels: int = MAX_PIXELS,
    display_size: int = DISPLAY_SIZE,
) -> DemoView:
    """What the page shows for one upload.

    Args:
        predictor: The model.
        path: The uploaded file.
        samples: S, hypotheses to draw (1..MAX_SAMPLES).
        max_pixels: Largest accepted image (H * W).
        display_size: Pictures shorter than this on their long side are enlarged (by a whole
            factor, nearest neighbour) for the screen.

    Returns:
        A :class:`DemoView`.

    Raises:
        DemoError: No file, not an image, float pixels outside [0, 1] (the predictor's rule,
            :func:`segcvae.api.check_float_pixels`), or too large (the message says which and
            the limit), or its hypotheses would not fit in memory.
    """
    from segcvae.api import check_float_file
    from segcvae.data import DataError, read_image
    from segcvae.engine.memory import MemoryLimitError
    from segcvae.engine.predict import hypotheses_grid

    if not path:
        raise DemoError("no image: upload one or pick an example")
    path = Path(path)
    mb = path.stat().st_size / 2**20 if path.is_file() else 0.0
    if mb > MAX_FILE_MB:
        raise DemoError(
            f"{path.name} is {mb:.0f} MB; the demo accepts files up to {MAX_FILE_MB} MB"
        )
    try:
        with np.errstate(invalid="ignore"):  # NaN pixels of a float file: refused just below
            image = read_image(path)
    except DataError as e:
        raise DemoError(f"{path.name} is not a readable image: {str(e).split(': ', 1)[-1]}") from e
    try:
        check_float_file(path)
    except DataError as e:
        raise DemoError(f"{path.name}: {str(e).split(': ', 1)[-1]}") from e
    h, w = image.shape[:2]
    if h * w > max_pixels:
        raise DemoError(
            f"{path.name} is {w}x{h} = {h * w / 1e6:.1f} megapixels; the demo accepts up to "
            f"{max_pixels / 1e6:.0f}"
        )
    samples = int(min(max(samples, 1), MAX_SAMPLES))
    start = time.perf_counter()
    try:
        pred = predictor(image, samples=samples)
    except MemoryLimitError as e:  # S hypotheses of this size would not fit: say so on the page
        raise DemoError(f"{path.name}: {e}") from e
    seconds = time.perf_counter() - start

    palette = predictor.palette
    k = max(predictor.num_classes, 2)

    def shown(picture: np.ndarray) -> np.ndarray:
        return viz.enlarge(picture, display_size)

    shown_image = shown(image)
    factor = shown_image.shape[0] // h  # the whole factor viz.enlarge used
    names = ", ".join(
        f"{n} {100 * float((pred.mask == i).mean()):.0f}%" for i, n in enumerate(pred.class_names)
    )
    status = (
        f"**{path.name}**: {w}x{h}, {samples} hypotheses in **{seconds:.2f} s** on "
        f"{predictor.device.type}. Mask: {names}. Mean entropy {float(pred.entropy.mean()):.3f} "
        f"nats, mutual information {float(pred.mutual_information.mean()):.3f} nats."
        + (
            f" Shown enlarged {factor}x (nearest neighbour); the files below are {w}x{h}."
            if factor > 1
            else ""
        )
    )
    return DemoView(
        image=image,
        prediction=pred,
        name=path.name,
        shown_image=shown_image,
        overlay=shown(viz.overlay(image, pred.mask, palette)),
        hypotheses=hypotheses_grid(pred, palette, max_tile=TILE_SIZE[1], min_tile=TILE_SIZE[0]),
        entropy=shown(viz.heatmap(pred.entropy, vmax=float(np.log(k)))),
        foreground=shown(viz.heatmap(pred.foreground_frequency, vmax=1.0, cmap="viridis")),
        status=status,
    )


def build_demo(
    predictor: Predictor,
    examples: Sequence[Path] = (),
    title: str = "segcvae",
    downloads_dir: Path | None = None,
) -> Any:
    """The gradio page (a ``gradio.Blocks``; call ``.launch`` on it).

    Args:
        predictor: The model.
        examples: Image files offered as examples.
        title: Page title.
        downloads_dir: Where each upload's files are written for download (one subfolder per
            upload, the last :data:`KEEP_DOWNLOADS` kept); default a new temporary folder.
            ``launch`` must allow gradio to serve it.
    """
    offline_environment()
    import gradio as gr

    downloads = downloads_dir or Path(tempfile.mkdtemp(prefix="segcvae-demo-files-"))
    counter = itertools.count()
    legend = ", ".join(
        f"<span style='color:rgb({c[0]},{c[1]},{c[2]})'>&#9632;</span> {n}"
        for n, c in zip(predictor.class_names, predictor.palette, strict=True)
    )

    def run(path: str | None, samples: float) -> tuple[Any, ...]:
        try:
            view = segment(predictor, path, int(samples))
        except DemoError as e:
            return None, None, None, None, None, f"**error:** {e}", None
        folder = downloads / f"{next(counter):06d}"
        files = view.write_files(folder, predictor)
        for old in sorted(p for p in downloads.iterdir() if p.is_dir())[:-KEEP_DOWNLOADS]:
            shutil.rmtree(old, ignore_errors=True)
        return (*view.pictures(), view.status, [str(f) for f in files])

    def picture(label: str, elem_id: str) -> Any:
        # no download button: the enlarged picture is for the eyes; the files are downloads
        return gr.Image(label=label, elem_id=elem_id, format="png", buttons=["fullscreen"])

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"## {title}\nUpload an image (any size) or pick an example; the model draws S "
            f"hypotheses from its prior. Classes: {legend}. Uncertainty: entropy of the mean "
            "prediction (dark 0, bright log K nats); foreground frequency: the fraction of "
            "hypotheses that are not background (dark 0, bright 1). Small pictures are shown "
            f"enlarged (nearest neighbour, to {DISPLAY_SIZE} px); the files are at the image's "
            "size."
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
            with gr.Column(scale=3):
                with gr.Row():
                    shown = picture("input", "input")
                    overlay = picture("mask overlay", "overlay")
                with gr.Row():
                    entropy = picture("uncertainty (entropy)", "entropy")
                    foreground = picture("foreground frequency", "foreground")
                grid = picture("hypotheses", "hypotheses")
                files = gr.File(
                    label="the files at the image's size (as segcvae predict writes them)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="files",
                )
        outputs = [shown, overlay, entropy, foreground, grid, status, files]
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
        examples_dir: Where to write the example images and, in ``files/``, each upload's
            files for download (default: a new temporary folder).
        block: Serve until interrupted; False returns the running ``Blocks`` (``.close()`` it).
    """
    folder = examples_dir or Path(tempfile.mkdtemp(prefix="segcvae-demo-"))
    examples = write_examples(folder)
    demo = build_demo(predictor, examples, downloads_dir=folder / "files")
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


__all__ = [
    "DISPLAY_SIZE",
    "DemoError",
    "DemoView",
    "build_demo",
    "launch",
    "offline_environment",
    "segment",
    "write_examples",
]
