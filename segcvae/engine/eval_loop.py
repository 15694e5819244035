"""The evaluation loop: segmentation metrics, conditional log-likelihood, multi-rater metrics.

Used by the trainer on the validation split (cheap settings) and by ``tools/evaluate.py`` (the
paper's settings). The model is evaluated in ``eval`` mode under a forked, seeded RNG, so the same
model gives the same numbers and evaluating does not disturb the training RNG.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from segcvae.config import EvalConfig
from segcvae.engine.eval_metrics import (  # noqa: F401  (re-exported: part of this API)
    UNDEFINED_REASONS,
    Accumulator,
    EvalBatch,
    VisBatch,
)
from segcvae.engine.memory import check_memory
from segcvae.inference import decode_samples_chunked, hypothesis_labels
from segcvae.metrics import negative_log_likelihoods


@dataclass
class EvalResult:
    """Metrics (plain floats / lists), each image's own values, and when asked for a
    :class:`VisBatch`.

    Attributes:
        metrics: The metrics over the images (see :func:`evaluate`).
        per_image: One dict per image, in order: its ``id`` and its per-image metrics (``nll``,
            ``nll_mc``, ``ged``, ``hm_iou``, ... as computed; NaN where undefined), the values
            that ``metrics`` averages (and that cross-validation pools over folds).
        vis: The images kept for a sample grid.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    vis: VisBatch | None = None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def eval_settings(ev: EvalConfig, **changes: Any) -> EvalConfig:
    """``cfg.eval`` with the given settings changed, those that are None left as they are: the one
    mapping from a config (and command-line flags) to :func:`evaluate`'s settings.

    Example:
        ``eval_settings(cfg.eval, samples=args.samples, max_images=0)``
    """
    return dataclasses.replace(ev, **{k: v for k, v in changes.items() if v is not None})


def hypotheses_memory(
    batch: int, hypotheses: int, classes: int, height: int, width: int, chunk: int | None = None
) -> int:
    """Bytes the evaluation holds at once for ``hypotheses`` per image (a lower bound).

    Their logits and probabilities (B, S, K, H, W) float32, or with ``chunk`` those of ``chunk``
    hypotheses at a time; their label maps (B, S, H, W) int64; and for each image's metrics the
    one-hot maps (S, H * W, K - 1) and the S x S pairwise terms.
    """
    s, pixels, fg = hypotheses, height * width, max(classes - 1, 1)
    decoded = batch * min(s, chunk or s) * pixels * classes * 4 * 2
    labels = batch * s * pixels * 8
    return decoded + labels + 2 * s * pixels * fg * 4 + 5 * s * s * fg * 4


def check_eval_memory(
    settings: EvalConfig,
    num_classes: int,
    height: int,
    width: int,
    device: Any = None,
    names: dict[str, str] | None = None,
) -> None:
    """Refuse ``eval.hypotheses`` / ``eval.extra_ged_hypotheses`` that would not fit in memory.

    The likelihood's samples are not checked: they are decoded a chunk at a time and only their
    log-likelihoods are kept.

    Args:
        settings: The evaluation settings (``batch_size``, ``hypotheses``,
            ``extra_ged_hypotheses``, ``sample_chunk``).
        num_classes: K.
        height: Image height of the evaluated batches.
        width: Image width.
        device: Where the model runs.
        names: How the error names a setting (default ``eval.<key>``).

    Raises:
        segcvae.engine.memory.MemoryLimitError: naming the setting, the bytes and the limit.
    """
    b, k = settings.batch_size, num_classes
    for key, chunk in (("hypotheses", None), ("extra_ged_hypotheses", settings.sample_chunk)):
        n = getattr(settings, key)
        if n <= 0:
            continue
        what = f"{n} hypotheses for each of {b} images per batch of {height}x{width}, {k} classes,"
        need = hypotheses_memory(b, n, k, height, width, chunk)
        check_memory(need, (names or {}).get(key, f"eval.{key}"), n, what, device)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    settings: EvalConfig | None = None,
    *,
    ignore_index: int = 255,
    seed: int = 0,
    progress: bool = False,
    masks_are_modes: bool | None = None,
) -> EvalResult:
    """Evaluate a model on a loader of ``{"image", "mask", "masks", "num_masks"}`` batches.

    Every image is compared with all of its rater masks (``masks``, padded to the batch's largest
    R, ``num_masks`` real ones; a batch without ``masks`` has the one rater ``mask``). Only
    ``model.encode``, ``decode_mean``, ``decode_samples`` and the likelihood estimator are used.

    Args:
        model: A segcvae model (DDP is unwrapped).
        loader: Evaluation batches; ``image`` (B, 3, H, W), ``mask`` (B, H, W) the reference
            mask, optionally ``masks`` (B, R, H, W), ``num_masks`` (B,) and ``mask_probs``
            (B, R), the masks' probabilities.
        num_classes: K.
        settings: ``cfg.eval`` (or :func:`eval_settings` of it); None = the defaults of
            :class:`~segcvae.config.EvalConfig`. Read: ``samples`` (S for the likelihood
            estimates; 0 skips ``nll`` / ``nll_mc``), ``hypotheses`` (per image, for the
            multi-hypothesis metrics and the sample grid; 0 skips them), ``max_images`` (stop
            after this many images; 0 = all), ``num_vis`` (images kept for a sample grid),
            ``extra_ged_hypotheses`` (n > 0 also reports ``ged_<n>`` from n more hypotheses,
            decoded ``sample_chunk`` at a time), ``hypothesis_masks`` (how the hypotheses'
            probabilities become masks: :func:`segcvae.inference.hypothesis_labels`). The
            loader's settings (``batch_size``, ``omission``, ``split``) are the caller's.
        ignore_index: Label value left out of every metric (``data.ignore_index``).
        seed: Seed of the evaluation RNG (``train.seed``).
        progress: Show a progress bar.
        masks_are_modes: report ``mode_purity`` / ``mode_coverage`` (the masks are the complete
            set of plausible answers); None = the dataset's ``masks_are_modes`` attribute.

    Returns:
        :class:`EvalResult` with, against the reference mask, ``pixel_accuracy``, ``mean_iou``,
        ``per_class_iou``; against every rater (counts pooled over image-rater pairs)
        ``pixel_accuracy_raters`` / ``mean_iou_raters``, and against the raters' majority vote
        (ties to the foreground) ``pixel_accuracy_majority`` / ``mean_iou_majority``; ``nll`` (importance
        sampling when the model has a recognition net, exact for the CNN, Monte Carlo
        otherwise) and ``nll_mc``, in nats per image, each averaged over the image's raters;
        from the hypotheses ``ged``, ``hm_iou``, ``diversity`` (mean pairwise IoU between
        hypotheses), ``ncc`` (:func:`~segcvae.metrics.uncertainty_ncc`, over images where it is
        defined), ``soft_dice`` and ``ece`` (foreground probability = mean of the hypotheses'
        probabilities); for images with >= 2 raters ``rater_pairwise_iou``, the data's own
        references ``majority_ged`` and ``majority_soft_dice`` (the raters' majority mask, ties to
        the foreground, scored as one deterministic hypothesis with the model's definitions) and
        ``empty_share_error`` (mean over images of |share of empty hypotheses - share of empty
        raters|); ``mode_purity`` / ``mode_coverage`` for mode data; ``images``. A per-image
        metric undefined for every image (``ncc`` of a deterministic model, whose uncertainty map
        is flat; ``rater_pairwise_iou`` of one-rater data) is None (JSON null, "n/a" in the
        tables) and its reason is in ``metrics["undefined"]`` (``{name: reason}``).

        **Mask probabilities.** Where the batches carry ``mask_probs``, each image's masks are
        first made :func:`~segcvae.metrics.plausible_masks` (identical masks merged, their
        probabilities summed; probability-0 masks dropped), and then weighted by their
        probabilities: ``nll`` / ``nll_mc`` are the expectation over the masks, ``ged`` (and
        ``ged_<n>``) weights E[d(s, y)] and E[d(y, y')], ``hm_iou`` is the optimal transport of
        the hypotheses (1/S each) onto the masks (their probabilities), the rater frequency of
        ``soft_dice`` / ``ece``, the majority vote, ``ncc`` and ``empty_share_error`` are
        weighted, ``mode_purity`` / ``mode_coverage`` count the modes of probability > 0, the
        pixel counts against every rater leave out masks of probability 0, and
        ``mode_freq_error`` (:func:`~segcvae.metrics.mode_frequency_error`) is reported.
    """
    ev = settings if settings is not None else EvalConfig()
    samples, hypotheses, max_images = ev.samples, ev.hypotheses, ev.max_images
    num_vis, extra_ged_hypotheses, sample_chunk = (
        ev.num_vis,
        ev.extra_ged_hypotheses,
        ev.sample_chunk,
    )
    masks = ev.hypothesis_masks
    model = unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if masks_are_modes is None:
        masks_are_modes = bool(_dataset_attr(loader.dataset, "masks_are_modes", False))
    acc = Accumulator(num_classes, ignore_index)
    fork_devices = [device] if device.type == "cuda" else []
    total = len(loader.dataset) if max_images <= 0 else min(max_images, len(loader.dataset))  # type: ignore[arg-type]
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, leave=False)
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for batch in loader:
                keep = max_images - acc.seen if max_images > 0 else None
                b = EvalBatch.from_batch(batch, device, keep, first=acc.seen)
                if acc.seen == 0:  # before the first hypotheses are drawn
                    check_eval_memory(ev, num_classes, *b.x.shape[-2:], device=device)
                ctx = model.encode(b.x)  # image features once, shared by every estimate below
                pred = model.decode_mean(ctx).argmax(dim=1)  # (B, H, W)
                acc.add_predictions(pred, b)
                if samples > 0:
                    acc.add_likelihoods(*_batch_nll(model, b, ctx, samples))
                if hypotheses > 0:
                    probs = model.decode_samples(ctx, hypotheses).softmax(dim=2)  # (B, S, K, H, W)
                    hyps = hypothesis_labels(probs, masks)  # (B, S, H, W)
                    extra = _extra_hypotheses(model, ctx, extra_ged_hypotheses, sample_chunk, masks)
                    acc.add_hypotheses(probs, hyps, b, masks_are_modes, extra)
                    if acc.n_vis < num_vis:
                        acc.add_vis(min(num_vis - acc.n_vis, b.size), b, pred, probs, hyps)
                acc.seen += b.size
                bar.update(b.size)
                if max_images > 0 and acc.seen >= max_images:
                    break
    finally:
        bar.close()
        model.train(was_training)
    return EvalResult(metrics=acc.metrics(), per_image=acc.rows, vis=acc.vis())


def _batch_nll(
    model: nn.Module, b: EvalBatch, ctx: Any, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """-log p(y | x) of each image, the mean over its real raters (the expectation over its
    masks where the batch gives their probabilities): (best estimator, Monte Carlo).

    Every mask of the batch is scored in one call (:func:`negative_log_likelihoods` with a set:
    the Monte Carlo samples are drawn once per image, not once per mask); padded masks are all
    ignore_index and score 0, and their weight is 0.

    Returns:
        Two (B,) tensors on the CPU.
    """
    if b.probs is not None:
        w = b.probs.float() * b.real  # (B, R), 0 on padding
        w = w / w.sum(1, keepdim=True)
    else:
        w = b.real.float() / b.num_masks.float().unsqueeze(1)
    nll = negative_log_likelihoods(model, b.x, b.masks, samples, ctx=ctx)  # each (B, R)
    # where, not a product: a zero-weight mask's estimate may be inf (a mask the model excludes)
    return tuple(  # type: ignore[return-value]
        torch.where(w > 0, nll[key].float() * w, 0.0).sum(1).cpu() for key in ("nll", "nll_mc")
    )


def _extra_hypotheses(
    model: nn.Module, ctx: Any, n: int, chunk: int, masks: str
) -> torch.Tensor | None:
    """``n`` more hypotheses as labels (B, n, H, W), drawn ``chunk`` at a time; None if n = 0."""
    if n <= 0:
        return None
    return decode_samples_chunked(model, ctx, n, chunk, labels=True, masks=masks).long()


def _dataset_attr(dataset: Any, name: str, default: Any) -> Any:
    """An attribute of the dataset, looked up through ``Subset`` (which does not forward it)."""
    while dataset is not None:
        value = None if isinstance(dataset, Subset) else getattr(dataset, name, None)
        if value is not None:
            return value
        dataset = getattr(dataset, "dataset", None)
    return default
