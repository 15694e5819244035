"""ONNX export of any segcvae model: the deterministic predictor and the hypothesis sampler.

Two files are written, each by ``torch.onnx.export`` with the dynamo exporter (torch's default,
which needs ``onnxscript`` and works offline; the older TorchScript exporter fails on the prior
net's area pooling with dynamic sizes):

* ``model.onnx``: ``image`` (B, 3, H, W) float32 RGB in [0, 1] -> ``logits`` (B, K, H, W), the
  deterministic prediction (z = E[z | x]);
* ``model_sampler.onnx``: ``image`` and ``noise`` (S, B, ...) standard normal -> ``samples``
  (B, S, K, H, W), S hypotheses.

The sampler takes its noise as an input rather than drawing it inside the graph: ONNX's random
operators cannot be seeded portably and differ from torch's generator, so with an input the
exported model is deterministic given the noise, can be checked against PyTorch number for number,
and the caller chooses S and the seed at run time (S is a dynamic axis). What the noise means is
the family's noise contract (``noise_shape(H, W)``, ``decode_noise(ctx, eps)``, see
:class:`segcvae.models.ModelFamily`): the standard-normal ``eps`` of the reparameterisation, each
hypothesis ``generate(prior.mean + prior.stddev * eps)`` for a Gaussian latent, the Gumbel-max code
of ``Phi(eps)`` for a categorical one, ``loc + W eps_r + sqrt(D) eps_d`` for SSN's low-rank
Gaussian; a family without a latent (the CNN) takes ``noise`` (S, B, 1) and uses only its length S.
Its shape is the family's ``noise_shape(H, W)``, asked once with symbols for the sides
(:func:`noise_formula`), and stored in the files' metadata (``noise_shape``, e.g.
``S,B,32,H/16,W/16``; see :func:`noise_shape`).

Normalisation (the checkpoint's ``data.mean`` / ``data.std``) is inside the graphs; resizing is
the caller's: H and W must be multiples of 32 (``data.image_size`` is what the model was trained
at). Batch, H, W and S are dynamic. The wrappers only call ``encode`` / ``decode_mean`` /
``decode_noise`` (the model-family interface).
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

MULTIPLE = 32  # image sides must be multiples of this (the encoder's total stride)


class ExportError(RuntimeError):
    """The model cannot be exported (unsupported layout or missing package); says which and why."""


class _Normalised(nn.Module):
    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def encode(self, image: Tensor) -> Any:
        return self.model.encode((image - self.mean) / self.std)


class DeterministicModule(_Normalised):
    """``image in [0, 1] -> logits``: ``decode_mean(encode(x))`` of any model family.

    Args:
        model: Any segcvae model (``encode`` / ``decode_mean`` / ``decode_samples``), eval mode.
        mean: Per-channel normalisation mean (the checkpoint's ``data.mean``).
        std: Per-channel normalisation std.
    """

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1], H and W multiples of 32 -> logits (B, K, H, W)."""
        return self.model.decode_mean(self.encode(image))


class SamplerModule(_Normalised):
    """``(image in [0, 1], noise) -> samples``: the family's ``decode_noise``.

    Args: as :class:`DeterministicModule`.
    """

    def forward(self, image: Tensor, noise: Tensor) -> Tensor:
        """Args:
            image: (B, 3, H, W) RGB in [0, 1], H and W multiples of 32.
            noise: (S, B, *model.noise_shape(H, W)) standard normal.

        Returns:
            Logits of the S hypotheses (B, S, K, H, W).
        """
        return self.model.decode_noise(self.encode(image), noise)


@contextlib.contextmanager
def _no_validation() -> Iterator[None]:
    """Tracing mode for the distributions in a model's context: argument checks are data-dependent
    branches that ``torch.export`` rejects, so they are off, and restored afterwards."""
    old = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(old)


Coefficients = tuple[Fraction, Fraction, Fraction, Fraction]


def _noise_axes(model: nn.Module) -> list[Coefficients]:
    """The family's noise shape as polynomials ``a + b H + c W + e H W``, one per axis.

    ``model.noise_shape`` is called once with symbols for the sides (H = 32 h, W = 32 w, h and w
    positive integers: the graphs' sides are multiples of 32), so ``H // 16`` is exactly ``H/16``.

    Raises:
        ExportError: an axis that is not such a polynomial (``H // 64``: 0 at H = 32), or a
            ``noise_shape`` that cannot take symbols (``int(height)``, ``max(...)``).
    """
    import sympy

    h, w = sympy.symbols("h w", integer=True, positive=True)
    try:
        axes = [sympy.sympify(d) for d in model.noise_shape(MULTIPLE * h, MULTIPLE * w)]
    except (TypeError, ValueError, sympy.SympifyError) as e:
        raise ExportError(
            f"{type(model).__name__}.noise_shape(height, width) must be written with +, * and // "
            f"of the sides and integers to be exported ({e})"
        ) from None
    coefficients = []
    for i, axis in enumerate(axes):
        poly = sympy.Poly(axis, h, w) if axis.is_polynomial(h, w) else None
        if poly is None or any(a > 1 or b > 1 for a, b in poly.monoms()):
            raise ExportError(
                f"noise axis {i} of {type(model).__name__} is {axis} for H = {MULTIPLE}*h, "
                f"W = {MULTIPLE}*w; expected a + b H + c W + e H W"
            )

        def coef(a: int, b: int, poly: Any = poly) -> Fraction:
            c = sympy.Rational(poly.coeff_monomial(h**a * w**b))
            return Fraction(int(c.p), int(c.q)) / MULTIPLE ** (a + b)

        coefficients.append((coef(0, 0), coef(1, 0), coef(0, 1), coef(1, 1)))
    return coefficients


def _term(coef: Fraction, var: str) -> str:
    if coef == 1:
        return var
    if coef.numerator == 1:
        return f"{var}/{coef.denominator}"
    return (
        f"{coef}*{var}" if coef.denominator == 1 else f"{coef.numerator}*{var}/{coef.denominator}"
    )


def _formula(a: Fraction, b: Fraction, c: Fraction, e: Fraction) -> str:
    parts = [_term(k, v) for k, v in ((b, "H"), (c, "W"), (e, "H*W")) if k != 0]
    if a != 0 or not parts:
        parts.insert(0, str(a))
    return "+".join(parts)


def noise_formula(model: nn.Module) -> list[str]:
    """The family's noise shape (``model.noise_shape(H, W)``) as formulas of the image size, e.g.
    ``["4", "H/16", "W/16"]``, for the ONNX files' metadata (no model runs)."""
    return [_formula(*axis) for axis in _noise_axes(model)]


_TERM = re.compile(r"^(?:(\d+)\*)?(H\*W|H|W)(?:/(\d+))?$")
_CONST = re.compile(r"^(-?\d+)(?:/(\d+))?$")


def _evaluate(formula: str, height: int, width: int) -> Fraction:
    """Value of a :func:`noise_formula` entry (``4``, ``H/16``, ``3*H*W``, ``8+3*H*W``...)."""
    value = Fraction(0)
    for part in formula.split("+"):
        if m := _TERM.match(part):
            var = {"H": height, "W": width, "H*W": height * width}[m.group(2)]
            value += Fraction(int(m.group(1) or 1), int(m.group(3) or 1)) * var
        elif m := _CONST.match(part):
            value += Fraction(int(m.group(1)), int(m.group(2) or 1))
        else:
            raise ExportError(f"cannot read noise axis {formula!r} (term {part!r})")
    return value


def noise_shape(
    formula: Sequence[str], samples: int, batch: int, height: int, width: int
) -> tuple[int, ...]:
    """The sampler's ``noise`` shape (S, B, ...) for images of (height, width).

    Args:
        formula: :func:`noise_formula`, or the ``noise_shape`` metadata of the ONNX files split at
            commas, without its leading ``S,B``.
        samples: S.
        batch: B.
        height: H of the images (a multiple of 32).
        width: W.
    """
    dims = []
    for f in formula:
        value = _evaluate(f, height, width)
        if value.denominator != 1 or value < 1:
            raise ExportError(
                f"noise axis {f} is {value} at {height}x{width}; expected a whole size"
            )
        dims.append(int(value))
    return (samples, batch, *(dims or [1]))


def _dynamic_dim(axis: Coefficients, h32: Any, w32: Any) -> Any:
    """The torch.export dimension of one noise axis: static, a multiple of H/32 or W/32, or AUTO."""
    from torch.export import Dim

    a, b, c, e = axis
    if b == c == e == 0:
        return None  # static
    if e == 0 and (b == 0) != (c == 0) and a.denominator == 1:
        k = (b or c) * MULTIPLE
        if k.denominator == 1:
            return int(k) * (h32 if b else w32) + int(a)
    return Dim.AUTO


def _metadata(cfg: Any, meta: dict[str, Any], formula: list[str], kind: str) -> dict[str, str]:
    from segcvae import __version__

    return {
        "segcvae_version": __version__,
        "graph": kind,
        "class_names": json.dumps(list(meta["class_names"])),
        "palette": json.dumps([list(c) for c in meta["palette"]]),
        "image_size": str(cfg.data.image_size),
        "input": "image: (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 32",
        "mean": json.dumps(list(cfg.data.mean)),
        "std": json.dumps(list(cfg.data.std)),
        "noise_shape": ",".join(["S", "B", *(formula or ["1"])]),
        "noise": "standard normal; a Gaussian prior draws mean + stddev * noise, a categorical one the Gumbel-max code of Phi(noise)",
        "family": str(cfg.model.arch),
    }


def export_onnx(
    model: nn.Module,
    cfg: Any,
    meta: dict[str, Any],
    out: str | Path,
    example: Tensor | None = None,
    samples: int = 4,
) -> tuple[Path, Path]:
    """Export the deterministic predictor and the sampler.

    Args:
        model: A segcvae model in eval mode (CPU).
        cfg: Its config (normalisation, image size, family for the metadata).
        meta: The checkpoint's ``meta`` (class names, palette).
        out: Path of the deterministic graph; the sampler goes beside it as ``<stem>_sampler.onnx``.
        example: Example images (B >= 2, 3, H, W) in [0, 1] with H, W >= 64 multiples of 32 (sizes
            of 1 would be fixed by the exporter); default random images at the model's size.
        samples: S of the example noise (>= 2; S stays dynamic).

    Returns:
        ``(deterministic path, sampler path)``.

    Raises:
        ExportError: ``onnx`` / ``onnxscript`` missing, or the model's context cannot take noise.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - needed by torch's dynamo exporter
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs onnx and onnxscript ({e}); pip install -e '.[export]'"
        ) from e
    from torch.export import Dim

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sampler_path = out.with_name(f"{out.stem}_sampler{out.suffix or '.onnx'}")
    model = model.eval()
    if example is None:
        side = max(64, -(-int(cfg.data.image_size) // MULTIPLE) * MULTIPLE)
        example = torch.rand(
            2, 3, side, side + MULTIPLE, generator=torch.Generator().manual_seed(0)
        )
    b, _, h, w = example.shape
    if b < 2 or h < 64 or w < 64 or h % MULTIPLE or w % MULTIPLE or samples < 2:
        raise ExportError(
            f"example batch {tuple(example.shape)} / samples {samples}: need B >= 2, S >= 2 and "
            f"H, W >= 64 multiples of {MULTIPLE}"
        )
    axes = _noise_axes(model)
    formula = [_formula(*axis) for axis in axes]
    noise = torch.randn(
        noise_shape(formula, samples, b, h, w), generator=torch.Generator().manual_seed(0)
    )
    batch = Dim("batch", min=1, max=4096)
    h32, w32 = Dim("h32", min=1, max=512), Dim("w32", min=1, max=512)
    noise_dims: dict[int, Any] = {0: Dim("samples", min=1, max=4096), 1: batch}
    for i, axis in enumerate(axes):
        d = _dynamic_dim(axis, h32, w32)
        if d is not None:
            noise_dims[2 + i] = d
    image_dims = {0: batch, 2: MULTIPLE * h32, 3: MULTIPLE * w32}
    # Two exports: one graph holding both outputs cannot be split afterwards, as the exporter
    # takes shared sizes (B, H / 16, ...) from either input.
    jobs = (
        (DeterministicModule, (example,), out, ["image"], ["logits"], {"image": image_dims}),
        (
            SamplerModule,
            (example, noise),
            sampler_path,
            ["image", "noise"],
            ["samples"],
            {"image": image_dims, "noise": noise_dims},
        ),
    )
    for module, inputs, path, in_names, out_names, dynamic in jobs:
        wrapper = module(model, cfg.data.mean, cfg.data.std).eval()
        with _no_validation(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
            torch.onnx.export(
                wrapper,
                inputs,
                path,
                input_names=in_names,
                output_names=out_names,
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
        graph = onnx.load(path)
        kind = "deterministic" if module is DeterministicModule else "sampler"
        for key, value in _metadata(cfg, meta, formula, kind).items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, path)
    return out, sampler_path


def onnx_inputs(images: Sequence[np.ndarray], size: tuple[int, int]) -> Tensor:
    """Images (H, W, 3) uint8 -> the graphs' input (B, 3, h, w) float32 in [0, 1], resized as the
    evaluation transform resizes (bilinear, OpenCV)."""
    import cv2

    arrays = [
        cv2.resize(im, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        / 255.0
        for im in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def check_onnx(
    model: nn.Module,
    cfg: Any,
    paths: tuple[Path, Path],
    images: Sequence[np.ndarray],
    sizes: Sequence[tuple[int, int]],
    samples: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Run both graphs with onnxruntime (CPU) and the model in PyTorch on the same inputs.

    Args:
        model: The exported model (CPU, eval mode).
        cfg: Its config.
        paths: From :func:`export_onnx`.
        images: (H, W, 3) uint8 RGB images, resized to each of ``sizes``.
        sizes: (h, w) input sizes to check (multiples of 32; several check the dynamic axes).
        samples: S.
        seed: Seed of the noise.

    Returns:
        ``{"logits": max |diff|, "samples": max |diff|, "images": n, "sizes": n}``; the PyTorch side
        is ``model.decode_mean(model.encode(x))`` and ``decode_samples`` fed the same noise.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError(f"the check needs onnxruntime ({e}); pip install -e '.[export]'") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    det = ort.InferenceSession(str(paths[0]), options, providers=["CPUExecutionProvider"])
    samp = ort.InferenceSession(str(paths[1]), options, providers=["CPUExecutionProvider"])
    formula = noise_formula(model)
    mean_net = DeterministicModule(model, cfg.data.mean, cfg.data.std).eval()
    sampler_net = SamplerModule(model, cfg.data.mean, cfg.data.std).eval()
    generator = torch.Generator().manual_seed(seed)
    worst = {"logits": 0.0, "samples": 0.0}
    for size in sizes:
        x = onnx_inputs(images, size)
        noise = torch.randn(noise_shape(formula, samples, len(images), *size), generator=generator)
        with torch.no_grad(), _no_validation():
            ref_logits, ref_samples = mean_net(x), sampler_net(x, noise)
        got_logits = det.run(["logits"], {"image": x.numpy()})[0]
        got_samples = samp.run(["samples"], {"image": x.numpy(), "noise": noise.numpy()})[0]
        if got_samples.shape != tuple(ref_samples.shape):
            raise ExportError(
                f"sampler output {got_samples.shape}, expected {tuple(ref_samples.shape)}"
            )
        worst["logits"] = max(worst["logits"], float(np.abs(got_logits - ref_logits.numpy()).max()))
        worst["samples"] = max(
            worst["samples"], float(np.abs(got_samples - ref_samples.numpy()).max())
        )
    return {**worst, "images": float(len(images)), "sizes": float(len(sizes))}


__all__ = [
    "DeterministicModule",
    "ExportError",
    "SamplerModule",
    "check_onnx",
    "export_onnx",
    "noise_formula",
    "noise_shape",
]
