"""VAE on MNIST (Kingma & Welling 2014): MLP Gaussian encoder, Bernoulli or Gaussian decoder.

``python -m segcvae.toy vae --data DIR --out DIR`` trains it and writes reconstructions, a 2-D latent
scatter coloured by digit, a decoded manifold grid, a denoising figure and ``metrics.json`` with the
test negative ELBO and an importance-sampled negative log-likelihood (nats per digit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from segcvae.metrics._functional import importance_log_likelihood
from segcvae.toy.common import (
    Stopwatch,
    finish_run,
    load_digits,
    save_grid,
    save_scatter,
    train_adam,
    training_summary,
)
from segcvae.toy.layers import GaussianHead, bernoulli_log_prob, mlp, standard_normal
from segcvae.toy.mnist import NUM_PIXELS

DECODERS = ("bernoulli", "gaussian")


@dataclass
class VAEOutput:
    """``posterior`` q(z|x) with (B, latent_dim) parameters, one sample ``z`` and the decoder's
    output ``logits`` (B, 784): Bernoulli logits, or the Gaussian mean before its sigmoid."""

    posterior: Normal
    z: Tensor
    logits: Tensor


class VAE(nn.Module):
    """MLP VAE with analytic KL to N(0, I).

    Args:
        latent_dim: Size of z (2 for the scatter and manifold figures).
        hidden: Width of the two hidden layers of encoder and decoder.
        decoder: ``"bernoulli"`` (binarised pixels) or ``"gaussian"`` (intensities; one learned,
            bounded pixel log-variance).
    """

    def __init__(self, latent_dim: int = 2, hidden: int = 512, decoder: str = "bernoulli") -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise KeyError(f"unknown decoder {decoder!r}; valid: {list(DECODERS)}")
        self.latent_dim, self.decoder_kind = latent_dim, decoder
        self.encoder = nn.Sequential(
            mlp([NUM_PIXELS, hidden, hidden], final_activation=True),
            GaussianHead(hidden, latent_dim),
        )
        self.decoder = mlp([latent_dim, hidden, hidden, NUM_PIXELS])
        # Gaussian decoder only: raw log-variance, squashed into (-8, 2) in pixel_log_prob
        self.raw_logvar = nn.Parameter(torch.zeros(()), requires_grad=decoder == "gaussian")

    def forward(self, x: Tensor) -> VAEOutput:
        """Args: x (B, 784). Returns: the posterior, a reparameterised z and decoder logits."""
        posterior = self.encoder(x)
        z = posterior.rsample()
        return VAEOutput(posterior, z, self.decoder(z))

    def mean(self, logits: Tensor) -> Tensor:
        """Expected pixel values in [0, 1] for decoder logits (..., 784)."""
        return torch.sigmoid(logits)

    def pixel_log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        """log p(x | z) summed over pixels: (..., 784) -> (...)."""
        if self.decoder_kind == "bernoulli":
            return bernoulli_log_prob(logits, x)
        logvar = -3.0 + 5.0 * torch.tanh(self.raw_logvar / 5.0)  # in (-8, 2)
        return Normal(torch.sigmoid(logits), torch.exp(0.5 * logvar)).log_prob(x).sum(-1)


def vae_loss(model: VAE, x: Tensor, x_input: Tensor | None = None) -> dict[str, Tensor]:
    """Negative ELBO per digit (nats): ``{"loss", "nll", "kl"}``.

    Args:
        model: The VAE.
        x: (B, 784) digits to explain.
        x_input: Optional corrupted copy of ``x`` for the encoder (denoising training). The loss
            is still an upper bound on -log p(x): q(z | x_input) is just another proposal.
    """
    out = model(x if x_input is None else x_input)
    nll = -model.pixel_log_prob(out.logits, x).mean()
    kl = kl_divergence(out.posterior, standard_normal(out.z)).sum(-1).mean()
    return {"loss": nll + kl, "nll": nll, "kl": kl}


@torch.no_grad()
def vae_log_likelihood(model: VAE, x: Tensor, n_samples: int = 100) -> Tensor:
    """Importance-sampled log p(x) with q(z|x) as proposal: (B, 784) -> (B,) nats."""
    posterior = model.encoder(x)
    z = posterior.sample((n_samples,))  # (S, B, d)
    log_lik = model.pixel_log_prob(model.decoder(z), x)  # (S, B)
    log_prior = standard_normal(z).log_prob(z).sum(-1)
    return importance_log_likelihood(log_lik, log_prior, posterior.log_prob(z).sum(-1), dim=0)


def _codes_2d(mu: Tensor) -> Tensor:
    """The codes themselves when 2-D, else their projection on the two principal axes."""
    if mu.shape[1] == 2:
        return mu
    centred = mu - mu.mean(0)
    return centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T


def run_vae(
    data: str | Path,
    out: str | Path,
    *,
    epochs: int = 20,
    latent_dim: int = 2,
    hidden: int = 512,
    decoder: str = "bernoulli",
    batch_size: int = 128,
    lr: float = 1e-3,
    binarization: str = "threshold",
    train_size: int | None = None,
    test_size: int | None = None,
    n_samples: int = 200,
    noise: float = 0.1,
    train_noise: float = 0.0,
    seed: int = 0,
    log=print,
) -> dict:
    """Train a VAE, write figures and ``metrics.json`` to ``out`` and return the metrics.

    Args:
        data: MNIST folder. out: Output folder.
        epochs, latent_dim, hidden, decoder, batch_size, lr, seed: Model and training settings.
        binarization: ``"threshold"`` or ``"dynamic"`` (Bernoulli decoder only).
        train_size, test_size: Use only the first digits of each split (None: all).
        n_samples: Importance samples per test digit for the log-likelihood.
        noise: Corruption of the denoising figure: the fraction of pixels flipped (Bernoulli
            decoder) or the standard deviation of added noise (Gaussian decoder).
        train_noise: The same corruption applied to the encoder's input during training
            (0: a plain VAE).
    """
    torch.manual_seed(seed)
    out = Path(out)
    pixels = binarization if decoder == "bernoulli" else None
    train_set = load_digits(data, "train", pixels, train_size)
    test_set = load_digits(data, "test", pixels, test_size)
    model = VAE(latent_dim, hidden, decoder)
    corrupt_gen = torch.Generator().manual_seed(seed + 1)

    def corrupt(x: Tensor, level: float, generator: torch.Generator) -> Tensor:
        if decoder == "bernoulli":
            return torch.where(torch.rand(x.shape, generator=generator) < level, 1.0 - x, x)
        return (x + level * torch.randn(x.shape, generator=generator)).clamp(0, 1)

    def loss(idx: Tensor) -> dict[str, Tensor]:
        x = train_set.x[idx]
        return vae_loss(model, x, corrupt(x, train_noise, corrupt_gen) if train_noise else None)

    clock = Stopwatch()
    history = train_adam(
        model,
        loss,
        len(train_set),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        log=log,
        name="vae",
    )
    timing = clock.read()

    with torch.no_grad():
        chunks = test_set.x.split(500)
        neg_elbo = sum(vae_loss(model, x)["loss"].item() * len(x) for x in chunks) / len(test_set)
        nll = -torch.cat([vae_log_likelihood(model, x, n_samples) for x in test_set.x.split(100)])
        mu = model.encoder(test_set.x).loc

        x = test_set.x[:10]
        recon = model.mean(model.decoder(model.encoder(x).loc))
        save_grid(
            torch.stack([x, recon]),
            out / "reconstructions.png",
            "VAE: test digits (top), reconstructions (bottom)",
        )
        save_scatter(
            _codes_2d(mu),
            test_set.labels,
            out / "latent.png",
            "VAE: test codes E[z|x]" + ("" if latent_dim == 2 else " (first two principal axes)"),
        )
        # manifold: decode a grid of Gaussian quantiles over the first two latent dims
        q = torch.linspace(0.05, 0.95, 15)
        axis = Normal(0.0, 1.0).icdf(q)
        grid = torch.zeros(15, 15, latent_dim)
        grid[..., 0] = axis[None, :]
        grid[..., 1] = axis.flip(0)[:, None]
        save_grid(
            model.mean(model.decoder(grid)),
            out / "manifold.png",
            "VAE: decoded manifold (z1, z2 over N(0,1) quantiles)",
        )
        noisy = corrupt(x, noise, torch.Generator().manual_seed(seed))
        denoised = model.mean(model.decoder(model.encoder(noisy).loc))
        save_grid(
            torch.stack([x, noisy, denoised]),
            out / "denoising.png",
            f"VAE denoising: clean, noisy ({noise:.0%}), output",
            row_labels=["clean", "noisy", "output"],
        )

    metrics = {
        "model": "vae",
        "decoder": decoder,
        "latent_dim": latent_dim,
        "epochs": epochs,
        "binarization": pixels,
        "train_noise": train_noise,
        "train_size": len(train_set),
        "test_size": len(test_set),
        "test_neg_elbo": round(neg_elbo, 3),
        "test_nll_is": round(nll.mean().item(), 3),
        "is_samples": n_samples,
        **training_summary(history, timing),
    }
    return finish_run("vae", metrics, out, "test_nll_is", log)
