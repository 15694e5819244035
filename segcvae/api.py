"""One-call Python API: ``segcvae.load(ckpt)(image)`` -> masks, hypotheses and uncertainty.

::

    import segcvae

    predictor = segcvae.load("runs/default/best.pt", device="auto")
    result = predictor("face.jpg", samples=16)
    result.mask                # (H, W) uint8 class indices at the image's original size
    result.hypotheses          # (16, H, W) uint8 sampled label maps
    result.entropy             # (H, W) float32 uncertainty in nats

Every image is resized to the model's input size (``data.image_size`` of the checkpoint's
config), predicted there, and the probabilities are resized back (bilinear) to the image's own
size before taking the arg-max, so any size and aspect ratio works. ``tools/predict.py``,
``segcvae demo`` and the ONNX check all go through :class:`Predictor`.

Pixel values: integer images are 0..255 (uint16: 0..65535, scaled to 8 bits); **float images
must hold values in [0, 1]** (a float array, a float TIFF, a PIL image of mode ``F``), as the
exported ONNX graphs expect. Float values outside [0, 1] (e.g. ``np.asarray(img, np.float32)``
of an 8-bit image, 0..255) and NaN or infinite values are an error that names the range found
and how to convert, never clipped: see :func:`check_float_pixels`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segcvae.data.pixels import (  # re-exported: the inputs every prediction path accepts
    FLOAT_RANGE,
    check_float_file,
    check_float_pixels,
    load_image,
    to_rgb,
)
from segcvae.inference import BACKGROUND, PredictionResult  # re-exported: segcvae.api's result

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from segcvae.data.pixels import ImageLike
    from segcvae.engine.predict import FilesPrediction


class Predictor:
    """A trained model ready to segment images of any size.

    Build one with :meth:`from_checkpoint` (or ``segcvae.load``); call it on an image or a list.

    Args:
        model: A segcvae model (any family: ``encode`` / ``decode_mean`` / ``decode_samples``),
            in eval mode, on the device to run on.
        transform: The evaluation transform (``build_transforms(cfg.data, "test")``): resize to
            the model's input size, normalise, to tensor.
        class_names: The K class names.
        palette: One RGB colour per class (for pictures).
        config: The checkpoint's :class:`segcvae.config.Config`, if known.
        batch_size: Images per forward pass when called on a list.
    """

    def __init__(
        self,
        model: nn.Module,
        transform: Any,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        config: Any = None,
        batch_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.transform = transform
        self.class_names = [str(n) for n in class_names]
        self.palette = [[int(c) for c in rgb] for rgb in palette]
        self.config = config
        # eval.hypothesis_masks of the checkpoint's config: how hypotheses become masks
        self.hypothesis_masks = getattr(getattr(config, "eval", None), "hypothesis_masks", "mode")
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | dict[str, Any],
        device: str = "cpu",
        overrides: Sequence[str] | None = None,
        batch_size: int = 8,
    ) -> Predictor:
        """Load a checkpoint written by training.

        Args:
            path: ``best.pt`` / ``last.pt`` of a run folder, or a checkpoint dict already read
                with :func:`segcvae.engine.checkpoint.load_checkpoint`.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
            overrides: ``section.key=value`` changes to the stored config.
            batch_size: Images per forward pass for lists.

        Raises:
            segcvae.engine.checkpoint.CheckpointError: The file is missing or not a checkpoint.
            RuntimeError: ``device`` asks for CUDA and none is available.
        """
        from segcvae.data import build_transforms
        from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
        from segcvae.engine.distributed import resolve_device

        target = resolve_device(device, key="device")
        ckpt = path if isinstance(path, dict) else load_checkpoint(path)
        model, cfg = model_from_checkpoint(ckpt, target, list(overrides or []))
        meta = ckpt["meta"]
        return cls(
            model,
            build_transforms(cfg.data, "test"),
            meta["class_names"],
            meta["palette"],
            config=cfg,
            batch_size=batch_size,
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.class_names)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB images -> the model's input batch (B, 3, s, s) on the device."""
        import torch

        x = torch.stack([self.transform(image=im)["image"] for im in images])
        return x.to(self.device)

    def __call__(
        self,
        image: ImageLike | Sequence[ImageLike],
        samples: int = 16,
        seed: int | None = None,
    ) -> PredictionResult | list[PredictionResult]:
        """Segment one image or a list of images.

        Args:
            image: One image (NumPy array, path or PIL image; see :func:`to_rgb`) or a list.
            samples: S, hypotheses drawn per image (0: only the deterministic prediction).
            seed: Seed of the hypotheses (the global torch RNG is left as it was); None draws
                from the global torch RNG.

        Returns:
            A :class:`PredictionResult` for one image, a list of them for a list.
        """
        if isinstance(image, (list, tuple)):
            arrays = [to_rgb(im) for im in image]
            return self.predict_arrays(arrays, samples=samples, seed=seed)
        return self.predict_arrays([to_rgb(image)], samples=samples, seed=seed)[0]

    def predict_arrays(
        self, images: Sequence[np.ndarray], samples: int = 16, seed: int | None = None
    ) -> list[PredictionResult]:
        """Segment (H, W, 3) uint8 RGB images (sizes may differ), ``batch_size`` at a time.

        Raises:
            segcvae.engine.memory.MemoryLimitError: The hypotheses would not fit in memory (a
                ConfigError naming ``samples``), before any is drawn.
        """
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        self._check_memory(images, samples)
        results: list[PredictionResult] = []
        with self.seeded(seed):
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                results += self._predict_batch(chunk, samples)
        return results

    def predict_files(
        self,
        inputs: Sequence[str | Path],
        out_dir: str | Path,
        samples: int = 8,
        seed: int | None = 0,
        on_error: Callable[[Path, str], None] | None = None,
    ) -> FilesPrediction:
        """Segment image files and write their pictures to ``out_dir`` (what ``segcvae predict``
        does): ``<stem>_mask.png``, ``_overlay.png``, ``_samples.png``, ``_uncertainty.png`` and
        ``_foreground.png`` per image, and NIfTI files for a NIfTI input.

        Args:
            inputs: Files, folders (their images) or glob patterns.
            out_dir: Output folder (made if missing).
            samples: Hypotheses per image (>= 1).
            seed: Seed of the hypotheses (None: the global torch RNG).
            on_error: Called with each input that cannot be read and the reason, as it happens.

        Returns:
            :class:`~segcvae.engine.predict.FilesPrediction`: the files written for each input,
            and the inputs that could not be read (the others are still done).
        """
        from segcvae.engine.predict import predict_files

        return predict_files(self, inputs, out_dir, samples=samples, seed=seed, on_error=on_error)

    def _check_memory(self, images: Sequence[np.ndarray], samples: int) -> None:
        """Refuse ``samples`` hypotheses that would not fit in memory, before any is drawn: a
        batch's sampled probabilities at the model's size and every image's (S, H, W) masks."""
        from segcvae.engine.memory import check_memory

        if samples < 1 or not images:
            return
        h, w = self.transform(image=images[0])["image"].shape[-2:]  # the model's input size
        batch = min(len(images), self.batch_size)
        decoded = batch * samples * self.num_classes * h * w * 4 * 4  # logits, probs, entropy
        held = samples * sum(int(im.shape[0]) * int(im.shape[1]) for im in images)  # uint8
        what = f"{samples} hypotheses for each of {len(images)} image(s) ({batch} at a time)"
        check_memory(decoded + held, "samples", samples, what, self.device)

    @contextlib.contextmanager
    def seeded(self, seed: int | None) -> Iterator[None]:
        """Within the block, torch's RNG (CPU and this device) starts from ``seed``; the previous
        state is restored afterwards. ``None``: the global RNG is used as it is."""
        import torch

        device = self.device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            yield

    def _predict_batch(self, images: Sequence[np.ndarray], samples: int) -> list[PredictionResult]:
        import torch
        import torch.nn.functional as F

        from segcvae.inference import entropy, hypothesis_uniforms, uncertainty

        with torch.inference_mode():
            x = self.preprocess(images)  # (B, 3, s, s)
            ctx = self.model.encode(x)
            probs = self.model.decode_mean(ctx).float().softmax(dim=1)  # (B, K, s, s)
            sampled = None
            if samples > 0:
                sampled = self.model.decode_samples(ctx, samples).float().softmax(dim=2)
                maps = uncertainty(sampled)  # each (B, s, s)
                ent, mutual = maps["entropy"], maps["mutual_information"]
                if self.hypothesis_masks == "level_set":  # one level per hypothesis
                    levels = hypothesis_uniforms(len(images), samples, sampled.device)
                else:
                    levels = None
            else:
                ent = entropy(probs, dim=1)
                mutual = torch.zeros_like(ent)
            out = []
            for i, image in enumerate(images):
                size = tuple(image.shape[:2])

                def up(t: torch.Tensor, size: tuple[int, ...] = size) -> torch.Tensor:
                    # (N, C, s, s) -> (N, C, H, W), bilinear as for the mask
                    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

                p_full = up(probs[i : i + 1])[0]  # (K, H, W)
                mask = p_full.max(dim=0).indices.to(torch.uint8)  # = argmax, 10x faster on CPU
                if sampled is not None:
                    # one hypothesis at a time keeps the memory at K x H x W floats
                    hyps = torch.stack(
                        [_mask(up(sampled[i, j : j + 1])[0], levels, i, j) for j in range(samples)]
                    )  # (S, H, W)
                    fg = (hyps != BACKGROUND).float().mean(dim=0)
                else:
                    hyps = mask.new_zeros((0, *size))
                    fg = (mask != BACKGROUND).float()
                maps2 = up(torch.stack([ent[i], mutual[i]])[:, None])[:, 0].clamp_min(0)
                out.append(
                    PredictionResult(
                        mask=mask.cpu().numpy(),
                        probs=p_full.cpu().numpy().astype(np.float32, copy=False),
                        hypotheses=hyps.cpu().numpy(),
                        entropy=maps2[0].cpu().numpy(),
                        mutual_information=maps2[1].cpu().numpy(),
                        foreground_frequency=fg.cpu().numpy(),
                        class_names=list(self.class_names),
                    )
                )
        return out


def _mask(probs: Any, levels: Any, i: int, j: int) -> Any:
    """Hypothesis j of image i as a uint8 mask from its probabilities (K, H, W): the likeliest
    class per pixel, or with ``levels`` (B, S) its level set at ``levels[i, j]``."""
    import torch

    from segcvae.inference import level_set_labels

    if levels is None:
        return probs.max(dim=0).indices.to(torch.uint8)  # = argmax, 10x faster on CPU
    return level_set_labels(probs, levels[i, j]).to(torch.uint8)


def load(path: str | Path, device: str = "cpu", **kwargs: Any) -> Predictor:
    """``Predictor.from_checkpoint(path, device, ...)``: a checkpoint ready to segment images."""
    return Predictor.from_checkpoint(path, device=device, **kwargs)


__all__ = [
    "BACKGROUND",
    "FLOAT_RANGE",
    "PredictionResult",
    "Predictor",
    "check_float_file",
    "check_float_pixels",
    "load",
    "load_image",
    "to_rgb",
]
