"""Quadrant completion on MNIST (Sohn, Lee & Yan 2015, section 5.1): baseline, GSNN, CVAE, hybrid.

The input is 1, 2 or 3 quadrants of a binarised digit, the output the missing ones. Quadrants become
visible in the paper's order: bottom-left, then top-left, then top-right (so "3 quadrants" asks for
the bottom-right one). Pixels are binarised at a fixed threshold (intensity > 0.5). A hidden input
pixel is set to -1, which also tells the networks which quadrants are given, so one network of each
kind serves all three settings (the paper trains one per setting): every training digit draws its
number of visible quadrants at random.

- ``QuadrantNN``: the deterministic baseline, x -> y_hat logits (a Bernoulli per pixel).
- ``QuadrantCVAE``: prior_net p(z|x, y_hat), recognition_net q(z|x, y), generation_net
  p(y|x, y_hat, z), with the paper's "recurrent connection": the frozen baseline's prediction y_hat
  feeds the prior and generation nets. Without ``recognition_net`` it is the GSNN.

The negative conditional log-likelihood of the missing pixels (nats per image) is exact for the baseline,
a Monte Carlo average over the prior for the GSNN and importance-sampled with the recognition net
for the CVAE / hybrid (``segcvae.metrics._functional``, the estimators of the segmentation toolkit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from segcvae.metrics._functional import importance_log_likelihood, monte_carlo_log_likelihood
from segcvae.toy.common import (
    Stopwatch,
    load_digits,
    save_grid,
    train_adam,
    training_summary,
    write_json,
)
from segcvae.toy.layers import GaussianHead, bernoulli_log_prob, mlp
from segcvae.toy.mnist import NUM_PIXELS, SIDE

QUADRANT_ORDER = ("bottom-left", "top-left", "top-right", "bottom-right")
OBJECTIVES = ("cnn", "gsnn", "cvae", "hybrid")
# How each model's conditional log-likelihood is estimated
ESTIMATORS = {"cnn": "exact", "gsnn": "mc", "cvae": "is", "hybrid": "is"}


def quadrant_mask(num_visible: int, side: int = SIDE) -> Tensor:
    """Which pixels are given as input when ``num_visible`` quadrants are shown.

    Args:
        num_visible: 1, 2 or 3 (or 0 / 4 for none / all), in the order of ``QUADRANT_ORDER``.
        side: Image side (even).

    Returns:
        bool (side, side), True where the pixel is visible.
    """
    if not 0 <= num_visible <= 4:
        raise ValueError(f"num_visible must be in 0..4, got {num_visible}")
    h = side // 2
    corners = {
        "bottom-left": (slice(h, side), slice(0, h)),
        "top-left": (slice(0, h), slice(0, h)),
        "top-right": (slice(0, h), slice(h, side)),
        "bottom-right": (slice(h, side), slice(h, side)),
    }
    mask = torch.zeros(side, side, dtype=torch.bool)
    for name in QUADRANT_ORDER[:num_visible]:
        mask[corners[name]] = True
    return mask


def quadrant_batch(images: Tensor, num_visible: Tensor) -> tuple[Tensor, Tensor]:
    """Make network inputs and output masks from binarised digits.

    Args:
        images: (B, 784) float in {0, 1}.
        num_visible: (B,) long in 1..3.

    Returns:
        ``x`` (B, 784): the digit with hidden pixels set to -1; ``missing`` (B, 784) float, 1 on
        the pixels to predict.
    """
    masks = torch.stack([quadrant_mask(k).flatten() for k in range(4)]).to(images.device)
    visible = masks[num_visible]  # (B, 784)
    x = torch.where(visible, images, images.new_full((), -1.0))
    return x, (~visible).to(images.dtype)


class QuadrantNN(nn.Module):
    """Deterministic baseline: an MLP from the masked digit to per-pixel Bernoulli logits.

    Args:
        hidden: Width of each hidden layer (the paper: 1000).
        num_layers: Number of hidden layers (the paper: 2).
        dropout: Dropout after each hidden layer (off by default; it did not help here).
    """

    def __init__(self, hidden: int = 1000, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = mlp([NUM_PIXELS] + [hidden] * num_layers + [NUM_PIXELS], dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, 784) in {-1, 0, 1}. Returns: y_hat logits (B, 784)."""
        return self.net(x)


@dataclass
class QuadrantOutput:
    """What ``QuadrantCVAE.forward`` computed (logits are (B, 784); posterior ones need y)."""

    y_hat: Tensor
    prior: Normal
    posterior: Normal | None
    z_prior: Tensor
    z_posterior: Tensor | None
    logits_prior: Tensor
    logits_posterior: Tensor | None


class QuadrantCVAE(nn.Module):
    """CVAE / GSNN for quadrant completion, with the baseline's prediction as an extra input.

    Args:
        baseline: A trained ``QuadrantNN``; frozen by the trainer and always in eval mode.
        hidden: Width of the hidden layers of the three nets.
        latent_dim: Size of z (the paper: 100).
        recognition: Build ``recognition_net`` (CVAE / hybrid); False gives the GSNN.
        num_layers: Hidden layers per net.
        residual: The generation net predicts a correction added to the baseline's logits
            (else the logits themselves).
        dropout: Dropout after each hidden layer of the three nets.
    """

    def __init__(
        self,
        baseline: QuadrantNN,
        hidden: int = 500,
        latent_dim: int = 100,
        recognition: bool = True,
        num_layers: int = 2,
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.baseline = baseline
        self.residual = residual
        self.latent_dim = latent_dim
        body = [hidden] * num_layers

        def encoder() -> nn.Sequential:
            return nn.Sequential(
                mlp([2 * NUM_PIXELS] + body, final_activation=True, dropout=dropout),
                GaussianHead(hidden, latent_dim),
            )

        self.prior_net = encoder()
        self.recognition_net = encoder() if recognition else None
        # generation_net's first layer is split so that drawing S samples reruns only the z part
        self.generation_context = nn.Linear(2 * NUM_PIXELS, hidden)
        self.generation_latent = nn.Linear(latent_dim, hidden, bias=False)
        self.generation_net = nn.Sequential(
            nn.Dropout(dropout), mlp([hidden] + body[1:] + [NUM_PIXELS], dropout=dropout)
        )

    def train(self, mode: bool = True) -> QuadrantCVAE:
        """Set the training mode of the three nets; the frozen baseline always stays in eval."""
        super().train(mode)
        self.baseline.eval()
        return self

    def context(self, x: Tensor) -> tuple[Tensor, Tensor, Normal, Tensor]:
        """Everything that does not depend on z.

        Returns:
            ``y_hat`` logits (B, 784), ``inputs`` (B, 1568) = [x, sigmoid(y_hat)], the prior
            p(z|x, y_hat) with (B, latent_dim) parameters, and the generation context (B, hidden).
        """
        y_hat = self.baseline(x)
        inputs = torch.cat([x, torch.sigmoid(y_hat)], dim=-1)
        return y_hat, inputs, self.prior_net(inputs), self.generation_context(inputs)

    def generate(self, y_hat: Tensor, context: Tensor, z: Tensor) -> Tensor:
        """Logits of p(y | x, y_hat, z).

        Args:
            y_hat: (B, 784) baseline logits.
            context: (B, hidden) from :meth:`context`.
            z: (B, latent_dim) or (S, B, latent_dim).

        Returns:
            Logits with the leading shape of ``z`` and 784 pixels.
        """
        h = torch.relu(context + self.generation_latent(z))
        logits = self.generation_net(h)
        return y_hat + logits if self.residual else logits

    def posterior(self, x: Tensor, y: Tensor) -> Normal:
        """q(z | x, y) for inputs x (B, 784) and complete digits y (B, 784)."""
        if self.recognition_net is None:
            raise RuntimeError("this model has no recognition_net (GSNN)")
        return self.recognition_net(torch.cat([x, y], dim=-1))

    def forward(self, x: Tensor, y: Tensor | None = None) -> QuadrantOutput:
        """One reparameterised sample from the prior and, given y, from the posterior.

        Args:
            x: (B, 784) masked digits (-1 = hidden).
            y: (B, 784) complete binarised digits, or None.
        """
        y_hat, _, prior, context = self.context(x)
        z_prior = prior.rsample()  # (B, latent_dim)
        posterior = z_posterior = logits_posterior = None
        if y is not None and self.recognition_net is not None:
            posterior = self.posterior(x, y)
            z_posterior = posterior.rsample()
            logits_posterior = self.generate(y_hat, context, z_posterior)
        return QuadrantOutput(
            y_hat=y_hat,
            prior=prior,
            posterior=posterior,
            z_prior=z_prior,
            z_posterior=z_posterior,
            logits_prior=self.generate(y_hat, context, z_prior),
            logits_posterior=logits_posterior,
        )

    @torch.no_grad()
    def sample(self, x: Tensor, n: int) -> Tensor:
        """Draw ``n`` completions' probabilities (S, B, 784) with z ~ p(z|x, y_hat)."""
        y_hat, _, prior, context = self.context(x)
        return torch.sigmoid(self.generate(y_hat, context, prior.sample((n,))))


def quadrant_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    missing: Tensor,
    objective: str,
    alpha: float = 0.5,
    kl_weight: float = 1.0,
) -> dict[str, Tensor]:
    """Training terms (nats per image, lower is better) for one batch.

    Args:
        model: ``QuadrantNN`` for ``"cnn"``, else ``QuadrantCVAE``.
        x: (B, 784) inputs, y: (B, 784) complete digits, missing: (B, 784) pixels to predict.
        objective: ``"cnn"`` (the deterministic baseline), ``"gsnn"``, ``"cvae"`` or ``"hybrid"``
            (``alpha * cvae + (1 - alpha) * gsnn``).
        alpha: Hybrid weight.
        kl_weight: Factor on the KL term in ``loss`` (a warm-up from 0 to 1 keeps the decoder from
            learning to ignore z early on); the reported ``kl`` is unweighted.

    Returns:
        ``{"loss", "nll"}`` plus ``"kl"`` and ``"nll_prior"`` where they apply; ``nll`` is the
        reconstruction term of the objective's main path.
    """
    objective = _OLD_NAMES.get(objective, objective)
    if objective not in OBJECTIVES:
        raise KeyError(f"unknown objective {objective!r}; valid: {list(OBJECTIVES)}")
    if objective == "cnn":
        nll = -bernoulli_log_prob(model(x), y, missing).mean()
        return {"loss": nll, "nll": nll}
    out = model(x, y if objective != "gsnn" else None)
    nll_prior = -bernoulli_log_prob(out.logits_prior, y, missing).mean()
    if objective == "gsnn":
        return {"loss": nll_prior, "nll": nll_prior}
    nll = -bernoulli_log_prob(out.logits_posterior, y, missing).mean()
    kl = kl_divergence(out.posterior, out.prior).sum(-1).mean()
    cvae = nll + kl_weight * kl
    loss = cvae if objective == "cvae" else alpha * cvae + (1 - alpha) * nll_prior
    return {"loss": loss, "nll": nll, "kl": kl, "nll_prior": nll_prior}


@torch.no_grad()
def quadrant_log_likelihood(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    missing: Tensor,
    n_samples: int = 100,
    method: str = "is",
) -> Tensor:
    """log p(y_missing | x) per image, in nats.

    Args:
        model: ``QuadrantNN`` (exact, ``method`` ignored) or ``QuadrantCVAE``.
        x, y, missing: (B, 784) as in :func:`quadrant_loss`.
        n_samples: S, the number of z samples.
        method: ``"is"`` (z ~ q(z|x, y), needs recognition_net), ``"mc"`` (z ~ p(z|x, y_hat)) or
            ``"elbo"`` (the lower bound E_q[log p(y|x,z)] - KL(q||p), averaged over S samples).

    Returns:
        (B,) log-likelihoods.
    """
    if isinstance(model, QuadrantNN):
        return bernoulli_log_prob(model(x), y, missing)
    if method == "mc":
        y_hat, _, prior, context = model.context(x)
        z = prior.sample((n_samples,))  # (S, B, d)
        log_lik = bernoulli_log_prob(model.generate(y_hat, context, z), y, missing)  # (S, B)
        return monte_carlo_log_likelihood(log_lik, dim=0)
    if method not in ("is", "elbo"):
        raise KeyError(f"unknown method {method!r}; valid: ['elbo', 'is', 'mc']")
    return _posterior_estimates(model, x, y, missing, n_samples)[method]


def _posterior_estimates(
    model: QuadrantCVAE, x: Tensor, y: Tensor, missing: Tensor, n_samples: int
) -> dict[str, Tensor]:
    """The importance-sampled log-likelihood and the ELBO from the same S posterior samples."""
    y_hat, _, prior, context = model.context(x)
    posterior = model.posterior(x, y)
    z = posterior.sample((n_samples,))  # (S, B, d)
    log_lik = bernoulli_log_prob(model.generate(y_hat, context, z), y, missing)  # (S, B)
    log_prior = prior.log_prob(z).sum(-1)
    log_proposal = posterior.log_prob(z).sum(-1)
    return {
        "is": importance_log_likelihood(log_lik, log_prior, log_proposal, dim=0),
        "elbo": log_lik.mean(0) - kl_divergence(posterior, prior).sum(-1),
    }


@torch.no_grad()
def evaluate_quadrants(
    model: nn.Module,
    images: Tensor,
    method: str,
    n_samples: int = 100,
    batch_size: int = 100,
) -> dict[str, dict[int, float]]:
    """Mean negative conditional log-likelihood of the missing pixels for 1 / 2 / 3 quadrants.

    Args:
        model: ``QuadrantNN`` (exact) or ``QuadrantCVAE``.
        images: (N, 784) binarised test digits.
        method: ``"exact"`` (the baseline), ``"mc"`` (GSNN) or ``"is"`` (CVAE / hybrid; the ELBO from the
            same samples is returned as well).
        n_samples: S.
        batch_size: Digits per forward pass (memory grows as S * batch_size).

    Returns:
        ``{estimate: {num_visible: nats per image}}``, e.g. ``{"is": {1: 63.2, ...}, "elbo": ...}``.
    """
    results: dict[str, dict[int, float]] = {}
    for k in (1, 2, 3):
        sums: dict[str, float] = {}
        for y in images.split(batch_size):
            x, missing = quadrant_batch(y, torch.full((len(y),), k, dtype=torch.long))
            if method == "exact":
                estimates = {"exact": quadrant_log_likelihood(model, x, y, missing)}
            elif method == "mc":
                estimates = {"mc": quadrant_log_likelihood(model, x, y, missing, n_samples, "mc")}
            elif method == "is":
                estimates = _posterior_estimates(model, x, y, missing, n_samples)
            else:
                raise KeyError(f"unknown method {method!r}; valid: ['exact', 'is', 'mc']")
            for name, ll in estimates.items():
                sums[name] = sums.get(name, 0.0) - ll.sum().item()
        for name, total in sums.items():
            results.setdefault(name, {})[k] = round(total / len(images), 3)
    return results


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


# the baseline's name before it was "cnn" everywhere, still accepted
_OLD_NAMES = {"nn": "cnn"}


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
