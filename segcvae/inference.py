"""Prediction modes and uncertainty maps for any segcvae model, and the per-image result that
``segcvae.api.Predictor``, ``tools/predict.py`` and the demo page share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

BACKGROUND = 0  # class index counted as "not foreground" (class 0 is background in every dataset)


@dataclass
class PredictionResult:
    """One image's prediction at its original size (H, W).

    Attributes:
        mask: (H, W) uint8 class indices of the deterministic prediction (z = E[z | x]).
        probs: (K, H, W) float32 class probabilities of the deterministic prediction.
        hypotheses: (S, H, W) uint8 label maps of S samples from the prior (S = ``samples``),
            made as the checkpoint's ``eval.hypothesis_masks`` says (:func:`hypothesis_labels`).
        entropy: (H, W) float32 entropy of the mean sampled prediction, in nats (total
            uncertainty; the deterministic prediction's entropy when ``samples=0``).
        mutual_information: (H, W) float32 entropy minus the mean entropy of the samples, in nats
            (how much the hypotheses disagree; zeros when ``samples=0``).
        foreground_frequency: (H, W) float32 in [0, 1], for each pixel the fraction of the S
            hypotheses that are not background (class 0); ``mask != 0`` when ``samples=0``.
        class_names: The K class names, index order.
    """

    mask: np.ndarray
    probs: np.ndarray
    hypotheses: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    foreground_frequency: np.ndarray
    class_names: list[str]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])


@torch.no_grad()
def predict_probs(model: nn.Module, x: Tensor, mode: str = "deterministic", n: int = 16) -> Tensor:
    """Class probabilities (B, K, H, W).

    Args:
        model: A segcvae model in eval mode.
        x: Images (B, C, H, W).
        mode: ``"deterministic"`` (z = E[z | x]) or ``"mean"`` (average of the probabilities of
            ``n`` prior samples).
        n: Samples for ``"mean"``.
    """
    if mode == "deterministic":
        return model.predict(x).softmax(dim=1)
    if mode == "mean":
        return sample_probs(model, x, n).mean(dim=1)
    raise ValueError(f"mode must be 'deterministic' or 'mean', got {mode!r}")


@torch.no_grad()
def sample_probs(model: nn.Module, x: Tensor, n: int) -> Tensor:
    """n hypotheses as probabilities (B, n, K, H, W); take ``argmax(2)`` for label maps."""
    return model.sample(x, n).softmax(dim=2)


HYPOTHESIS_MASKS = ("mode", "level_set")


def hypothesis_uniforms(batch: int, n: int, device: torch.device | str = "cpu") -> Tensor:
    """One uniform per hypothesis for ``level_set`` masks: (batch, n), stratified within a row.

    The n values of a row are (v + i) / n, i = 0..n-1, for one uniform v, in random order: each is
    uniform on [0, 1), and n hypotheses spread over the levels as evenly as they can (systematic
    sampling, as the codes of a categorical latent are drawn).
    """
    u = (torch.rand(batch, 1, device=device) + torch.arange(n, device=device)) / n
    return torch.gather(u, 1, torch.rand(batch, n, device=device).argsort(dim=1))


def level_set_labels(probs: Tensor, u: Tensor) -> Tensor:
    """Labels where each pixel's class CDF (classes in index order) first reaches ``u``.

    All pixels of a map share their u, so a pixel is labelled c for the fraction p_c of the u's
    (its marginal is exactly ``probs``) and the masks of increasing u are nested level sets of the
    probability maps (with two classes: foreground where p_fg >= 1 - u): coherent regions, not the
    speckle that independent per-pixel draws give.

    Args:
        probs: Class probabilities (..., K, H, W).
        u: Uniforms in [0, 1), shape ``probs.shape[:-3]``.

    Returns:
        Labels (..., H, W) long.
    """
    cdf = probs.float().cumsum(dim=-3)
    below = cdf < u.to(cdf.dtype)[..., None, None, None]
    return below.sum(dim=-3).clamp_(max=probs.shape[-3] - 1)


def hypothesis_labels(probs: Tensor, masks: str = "mode") -> Tensor:
    """Label maps (B, n, H, W) long of n hypotheses' class probabilities (B, n, K, H, W).

    Args:
        probs: Probabilities (or logits with ``masks="mode"``) of the hypotheses.
        masks: ``mode``: the likeliest class of each pixel; ``level_set``: one uniform per
            hypothesis (:func:`hypothesis_uniforms`) through :func:`level_set_labels`, from
            torch's RNG.
    """
    if masks == "mode":
        return probs.argmax(dim=2)
    if masks == "level_set":
        u = hypothesis_uniforms(probs.shape[0], probs.shape[1], probs.device)
        return level_set_labels(probs, u)
    raise ValueError(f"hypothesis masks must be one of {HYPOTHESIS_MASKS}, got {masks!r}")


def decode_samples_chunked(
    model: nn.Module,
    ctx: object,
    n: int,
    chunk: int = 16,
    labels: bool = False,
    masks: str = "mode",
) -> Tensor:
    """``model.decode_samples(ctx, n)`` computed ``chunk`` hypotheses at a time.

    Only one chunk's logits (B, chunk, K, H, W) and the generation head's intermediates for it
    exist at once. With ``labels`` each chunk is reduced to its label maps before the next one is
    drawn, so the peak memory of many hypotheses at a large size is bounded by ``chunk``
    (``eval.sample_chunk``), not by n.

    Args:
        model: Any segcvae model.
        ctx: ``model.encode(x)``.
        n: Hypotheses.
        chunk: Hypotheses per call (>= 1).
        labels: Return label maps (B, n, H, W) (uint8 for K <= 256 classes) instead of logits
            (B, n, K, H, W).
        masks: How label maps are made (:func:`hypothesis_labels`).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    parts = []
    for start in range(0, n, chunk):
        logits = model.decode_samples(ctx, min(chunk, n - start))
        if labels:  # uint8 holds up to 256 classes; more keep int64
            maps = hypothesis_labels(logits if masks == "mode" else logits.softmax(dim=2), masks)
            logits = maps.to(torch.uint8 if logits.shape[2] <= 256 else torch.long)
        parts.append(logits)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def entropy(probs: Tensor, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """Entropy in nats of the categorical distributions along ``dim`` of ``probs``.

    Args:
        probs: Probabilities, e.g. (B, K, H, W) with ``dim=1``.
        dim: The class dimension (removed).
        eps: Added inside the log, so a zero probability contributes 0.
    """
    return -(probs * (probs + eps).log()).sum(dim=dim)


def uncertainty(probs: Tensor, eps: float = 1e-12) -> dict[str, Tensor]:
    """Per-pixel uncertainty from sampled probabilities.

    Args:
        probs: (B, S, K, H, W) probabilities of S hypotheses.

    Returns:
        ``entropy``: entropy of the mean prediction (total uncertainty), (B, H, W);
        ``expected_entropy``: mean entropy of the samples (aleatoric part);
        ``mutual_information``: their difference (the spread between hypotheses), >= 0.
    """
    mean = probs.mean(dim=1)  # (B, K, H, W)
    total = entropy(mean, dim=1, eps=eps)  # (B, H, W)
    expected = entropy(probs, dim=2, eps=eps).mean(dim=1)
    return {
        "entropy": total,
        "expected_entropy": expected,
        "mutual_information": (total - expected).clamp_min(0),
    }
