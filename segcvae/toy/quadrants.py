"""Quadrant completion on MNIST (Sohn, Lee & Yan 2015, section 5.1): baseline, GSNN, CVAE, hybrid.

The input is 1, 2 or 3 quadrants of a binarised digit, the output the missing ones. Pixels are
binarised at a fixed threshold (intensity > 0.5). One network of each kind serves all three
settings (the paper trains one per setting): every training digit draws its number of visible
quadrants at random.

This module runs the experiment (:func:`run_quadrants`: training, the table, the figures,
``metrics.json``); the masks and networks are in :mod:`segcvae.toy.quadrant_models`, the
objectives and estimators in :mod:`segcvae.toy.quadrant_losses`, and their public names are
importable from here as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from segcvae.toy.common import (
    Stopwatch,
    load_digits,
    save_grid,
    train_adam,
    training_summary,
    write_json,
)
from segcvae.toy.quadrant_losses import (
    _OLD_NAMES,
    ESTIMATORS,
    OBJECTIVES,
    evaluate_quadrants,
    quadrant_log_likelihood,
    quadrant_loss,
)
from segcvae.toy.quadrant_models import (
    QUADRANT_ORDER,
    QuadrantCVAE,
    QuadrantNN,
    QuadrantOutput,
    quadrant_batch,
    quadrant_mask,
)

__all__ = [
    "ESTIMATORS",
    "OBJECTIVES",
    "QUADRANT_ORDER",
    "QuadrantCVAE",
    "QuadrantNN",
    "QuadrantOutput",
    "evaluate_quadrants",
    "quadrant_batch",
    "quadrant_log_likelihood",
    "quadrant_loss",
    "quadrant_mask",
    "quadrant_table",
    "run_quadrants",
]


def _completion_figure(
    models: dict[str, nn.Module], images: Tensor, k: int, path: Path, n_samples: int, seed: int
) -> None:
    """Rows: test digits. Columns: truth, input (hidden = grey), baseline, samples of each model."""
    torch.manual_seed(seed)
    x, missing = quadrant_batch(images, torch.full((len(images),), k, dtype=torch.long))
    visible = missing == 0
    shown = torch.where(visible, images, images.new_full((), 0.5))  # input with hidden in grey

    def paste(probs: Tensor) -> Tensor:  # visible pixels from the input, the rest predicted
        return torch.where(visible, images, probs)

    cols, labels = [images, shown], ["truth", "input"]
    with torch.no_grad():
        if "cnn" in models:
            cols.append(paste(torch.sigmoid(models["cnn"](x))))
            labels.append("baseline")
        for name in ("gsnn", "cvae", "hybrid"):
            if name in models:
                samples = models[name].sample(x, n_samples)  # (S, B, 784)
                cols.extend(paste(s) for s in samples)
                labels.extend(f"{name.upper()}" if i == 0 else "" for i in range(n_samples))
    save_grid(
        torch.stack(cols, 1),
        path,
        f"Quadrant completion, {k} quadrant{'s' if k > 1 else ''} given",
        col_labels=labels,
    )


def run_quadrants(
    data: str | Path,
    out: str | Path,
    *,
    models: tuple[str, ...] = OBJECTIVES,
    cnn_epochs: int = 12,
    epochs: int = 14,
    cnn_hidden: int = 1000,
    hidden: int = 500,
    latent_dim: int = 100,
    batch_size: int = 256,
    lr: float = 2e-3,
    alpha: float = 0.5,
    kl_warmup: float = 1.0,
    quadrant_weights: tuple[float, float, float] = (0.5, 0.3, 0.2),
    residual: bool = False,
    n_samples: int = 100,
    binarization: str = "threshold",
    train_size: int | None = None,
    test_size: int | None = None,
    baseline: str | Path | None = None,
    save: bool = False,
    seed: int = 0,
    log=print,
) -> dict:
    """Train the quadrant models, write the table, figures and ``metrics.json``; return metrics.

    The baseline (objective ``"cnn"``) is always trained first (or loaded from ``baseline``) and
    always reported: the latent models read its prediction. Every model is trained by Adam with a
    cosine decay.

    Args:
        data: MNIST folder. out: Output folder.
        models: Latent models to train after the baseline: any of ``"gsnn"``, ``"cvae"``,
            ``"hybrid"`` (``"cnn"``, or its old name ``"nn"``, may be listed and is ignored).
        cnn_epochs: Epochs of the baseline; epochs: epochs of each latent model.
        cnn_hidden: Width of the baseline's two hidden layers (the paper: 1000).
        hidden, latent_dim: Width of the latent models' MLPs and size of z.
        batch_size, lr, seed: Training settings; alpha: hybrid weight.
        kl_warmup: Epochs over which the KL weight rises linearly from 0 to 1 (0: none).
        quadrant_weights: How often a training digit shows 1, 2 or 3 quadrants (the 1-quadrant
            task is the hardest and gains most from extra examples).
        residual: The generation net corrects the baseline's logits instead of predicting them.
        n_samples: S for the MC / importance-sampled estimates.
        binarization: ``"threshold"`` (pixel > 0.5) or ``"dynamic"`` (one fixed draw per split).
        train_size, test_size: Use only the first digits of each split (None: all).
        baseline: A ``cnn.pt`` written by an earlier run with ``save=True``: skip training it.
        save: Write each model's ``state_dict`` to ``OUT/<name>.pt``.

    Raises:
        FloatingPointError: A model's negative CLL is not finite (then no table, figure or
            ``metrics.json`` is written).
    """
    latent = _latent_models(models)
    _check_quadrant_weights(quadrant_weights)
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    y_train = load_digits(data, "train", binarization, train_size).x
    y_test = load_digits(data, "test", binarization, test_size).x
    training = _QuadrantTraining(
        y_train, quadrant_weights, batch_size, lr, alpha, kl_warmup, seed, log
    )

    # the baseline, then each latent model on top of it (built in this order: same RNG draws)
    net = QuadrantNN(cnn_hidden)
    report = {
        "cnn": _fit_and_evaluate(
            "cnn", net, training, cnn_epochs, y_test, n_samples, out, save, load_from=baseline
        )
    }
    trained: dict[str, nn.Module] = {"cnn": net}
    net.requires_grad_(False)
    for name in latent:
        model = QuadrantCVAE(net, hidden, latent_dim, recognition=name != "gsnn", residual=residual)
        report[name] = _fit_and_evaluate(
            name, model, training, epochs, y_test, n_samples, out, save
        )
        trained[name] = model

    _check_finite(report)
    picks = torch.randperm(len(y_test), generator=torch.Generator().manual_seed(seed + 2))[:6]
    for k in (1, 2, 3):
        _completion_figure(trained, y_test[picks], k, out / f"completions_{k}q.png", 4, seed)
    table = quadrant_table(report, n_samples)
    (out / "table.md").write_text(table)
    metrics = {
        "experiment": "quadrants",
        "binarization": binarization,
        "cnn_hidden": cnn_hidden,
        "hidden": hidden,
        "latent_dim": latent_dim,
        "residual": residual,
        "alpha": alpha,
        "kl_warmup": kl_warmup,
        "quadrant_weights": list(quadrant_weights),
        "batch_size": batch_size,
        "lr": lr,
        "n_samples": n_samples,
        "train_size": len(y_train),
        "test_size": len(y_test),
        "models": report,
    }
    write_json(out / "metrics.json", metrics)
    log(table)
    return metrics


def _latent_models(models: tuple[str, ...]) -> tuple[str, ...]:
    """The latent models to train, in the table's order; raises KeyError for an unknown name."""
    names = {_OLD_NAMES.get(m, m) for m in models}
    unknown = names - set(OBJECTIVES)
    if unknown:
        raise KeyError(f"unknown quadrant models {sorted(unknown)}; valid: {list(OBJECTIVES)}")
    return tuple(m for m in ("gsnn", "cvae", "hybrid") if m in names)


def _check_quadrant_weights(weights: tuple[float, ...]) -> None:
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"quadrant_weights must be 3 non-negative numbers, got {weights}")


class _QuadrantTraining:
    """The training set and settings every quadrant model is trained with.

    Every model draws its number of visible quadrants from one shared generator (seeded
    ``seed + 1``), so the models of a run see the draws one after another, as they are trained.
    """

    def __init__(
        self,
        y_train: Tensor,
        quadrant_weights: tuple[float, ...],
        batch_size: int,
        lr: float,
        alpha: float,
        kl_warmup: float,
        seed: int,
        log: Callable[[str], None],
    ) -> None:
        self.y_train = y_train  # (N, 784) binarised digits
        self.weights = torch.tensor(quadrant_weights, dtype=torch.float)
        self.draw = torch.Generator().manual_seed(seed + 1)
        self.batch_size, self.lr, self.alpha, self.seed, self.log = batch_size, lr, alpha, seed, log
        self.kl_warmup = kl_warmup
        # what the KL warm-up counts as an epoch: ceil(N / B) steps (the loop may drop a last
        # small batch; kept so that results stay those of the recorded runs)
        self.steps_per_epoch = -(-len(y_train) // batch_size)

    def loss_fn(self, model: nn.Module, name: str) -> Callable[[Tensor], dict[str, Tensor]]:
        """The terms of ``model`` on a batch of digit indices, with the KL warm-up of its steps."""
        step = 0

        def terms(idx: Tensor) -> dict[str, Tensor]:
            nonlocal step
            step += 1
            y = self.y_train[idx]
            k = 1 + torch.multinomial(self.weights, len(y), replacement=True, generator=self.draw)
            x, missing = quadrant_batch(y, k)
            warm = self.kl_weight(step)
            return quadrant_loss(model, x, y, missing, name, self.alpha, kl_weight=warm)

        return terms

    def kl_weight(self, step: int) -> float:
        """Linear KL warm-up from 0 to 1 over ``kl_warmup`` epochs (1 throughout when it is 0)."""
        if self.kl_warmup <= 0:
            return 1.0
        return min(1.0, step / (self.kl_warmup * self.steps_per_epoch))

    def fit(self, model: nn.Module, name: str, epochs: int) -> list[dict[str, float]]:
        """Train ``model`` with the package's toy epoch loop; returns the per-epoch history."""
        return train_adam(
            model,
            self.loss_fn(model, name),
            len(self.y_train),
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            cosine=True,
            log=self.log,
            name=f"quadrants/{name}",
        )


def _fit_and_evaluate(
    name: str,
    model: nn.Module,
    training: _QuadrantTraining,
    epochs: int,
    y_test: Tensor,
    n_samples: int,
    out: Path,
    save: bool,
    load_from: str | Path | None = None,
) -> dict:
    """Train (or load) one model, save it if asked, and report its negative CLL and timings."""
    clock = Stopwatch()
    history = None
    if load_from is not None:
        model.load_state_dict(torch.load(load_from, map_location="cpu", weights_only=True))
        model.eval()
    else:
        history = training.fit(model, name, epochs)
    train_time = clock.read()
    if save:
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("baseline.")}
        torch.save(state, out / f"{name}.pt")
    clock = Stopwatch()
    method = ESTIMATORS[name]
    estimates = evaluate_quadrants(model, y_test, method, n_samples)
    row = {
        "estimator": method,
        "neg_cll": estimates[method],
        **({"neg_elbo": estimates["elbo"]} if "elbo" in estimates else {}),
        **{f"eval_{k}": v for k, v in clock.read().items()},
    }
    if history is None:
        row["loaded_from"] = str(load_from)
    else:
        row.update(epochs=len(history), **training_summary(history, train_time))
    training.log(f"quadrants/{name}: {row}")
    return row


def _check_finite(report: dict[str, dict]) -> None:
    """Refuse a run whose headline numbers (each model's negative CLL) are not all finite."""
    bad = {
        name: row["neg_cll"]
        for name, row in report.items()
        if not all(math.isfinite(v) for v in row["neg_cll"].values())
    }
    if bad:
        raise FloatingPointError(f"quadrants: non-finite negative CLL: {bad}")


def quadrant_table(report: dict[str, dict], n_samples: int) -> str:
    """Markdown table of negative CLL (nats per test digit) for 1 / 2 / 3 given quadrants."""
    names = {
        "cnn": "baseline (cnn), exact",
        "gsnn": f"GSNN, Monte Carlo (S={n_samples})",
        "cvae": f"CVAE, importance sampling (S={n_samples})",
        "hybrid": f"hybrid, importance sampling (S={n_samples})",
    }
    lines = [
        "| model | 1 quadrant | 2 quadrants | 3 quadrants |",
        "|---|---|---|---|",
    ]
    for name, row in report.items():
        cells = " | ".join(f"{row['neg_cll'][k]:.2f}" for k in (1, 2, 3))
        lines.append(f"| {names[name]} | {cells} |")
        if "neg_elbo" in row:
            cells = " | ".join(f"({row['neg_elbo'][k]:.2f})" for k in (1, 2, 3))
            lines.append(f"| {name} negative ELBO (upper bound) | {cells} |")
    return "\n".join(lines) + "\n"
