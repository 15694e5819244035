"""Label-conditioned VAE on MNIST (the supervised "M2" form, Kingma et al. 2014).

Encoder q(z | x, y) and decoder p(x | z, y) both read the one-hot digit label y; the prior is
N(0, I), so z is free to carry what the label does not: the handwriting style.
``python -m segcvae.toy cvae --data DIR --out DIR`` writes a fixed-label style figure (each row one
digit, each column one z ~ N(0, I)), an analogies figure (the z of a test digit decoded with all ten
labels) and ``metrics.json`` with the test negative conditional ELBO and an importance-sampled
-log p(x | y) (nats per digit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from segcvae.metrics._functional import importance_log_likelihood
from segcvae.toy.common import (
    Stopwatch,
    finish_run,
    load_digits,
    save_grid,
    train_adam,
    training_summary,
)
from segcvae.toy.layers import GaussianHead, bernoulli_log_prob, mlp, standard_normal
from segcvae.toy.mnist import NUM_CLASSES, NUM_PIXELS


@dataclass
class CVAEOutput:
    """``posterior`` q(z|x, y) with (B, latent_dim) parameters, a sample ``z``, logits (B, 784)."""

    posterior: Normal
    z: Tensor
    logits: Tensor


class LabelCVAE(nn.Module):
    """MLP CVAE conditioned on the digit label.

    Args:
        latent_dim: Size of z.
        hidden: Width of the two hidden layers of encoder and decoder.
    """

    def __init__(self, latent_dim: int = 16, hidden: int = 512) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            mlp([NUM_PIXELS + NUM_CLASSES, hidden, hidden], final_activation=True),
            GaussianHead(hidden, latent_dim),
        )
        self.decoder = mlp([latent_dim + NUM_CLASSES, hidden, hidden, NUM_PIXELS])

    def encode(self, x: Tensor, labels: Tensor) -> Normal:
        """q(z | x, y): x (B, 784), labels (B,) int64 -> Normal (B, latent_dim)."""
        return self.encoder(torch.cat([x, F.one_hot(labels, NUM_CLASSES).to(x.dtype)], -1))

    def decode(self, z: Tensor, labels: Tensor) -> Tensor:
        """p(x | z, y) logits: z (..., latent_dim), labels broadcastable to z[..., 0] -> (..., 784)."""
        shape = torch.broadcast_shapes(z.shape[:-1], labels.shape)
        y = F.one_hot(labels, NUM_CLASSES).to(z.dtype).expand(*shape, NUM_CLASSES)
        return self.decoder(torch.cat([z.expand(*shape, z.shape[-1]), y], -1))

    def forward(self, x: Tensor, labels: Tensor) -> CVAEOutput:
        """Args: x (B, 784) binarised digits, labels (B,). Returns: posterior, z, logits."""
        posterior = self.encode(x, labels)
        z = posterior.rsample()
        return CVAEOutput(posterior, z, self.decode(z, labels))


def cvae_loss(model: LabelCVAE, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Negative conditional ELBO per digit (nats): ``{"loss", "nll", "kl"}``."""
    out = model(x, labels)
    nll = -bernoulli_log_prob(out.logits, x).mean()
    kl = kl_divergence(out.posterior, standard_normal(out.z)).sum(-1).mean()
    return {"loss": nll + kl, "nll": nll, "kl": kl}


@torch.no_grad()
def cvae_log_likelihood(
    model: LabelCVAE, x: Tensor, labels: Tensor, n_samples: int = 100
) -> Tensor:
    """Importance-sampled log p(x | y) with q(z | x, y) as proposal: (B,) nats."""
    posterior = model.encode(x, labels)
    z = posterior.sample((n_samples,))  # (S, B, d)
    log_lik = bernoulli_log_prob(model.decode(z, labels), x)  # (S, B)
    log_prior = standard_normal(z).log_prob(z).sum(-1)
    return importance_log_likelihood(log_lik, log_prior, posterior.log_prob(z).sum(-1), dim=0)


def run_cvae(
    data: str | Path,
    out: str | Path,
    *,
    epochs: int = 20,
    latent_dim: int = 16,
    hidden: int = 512,
    batch_size: int = 128,
    lr: float = 1e-3,
    binarization: str = "threshold",
    train_size: int | None = None,
    test_size: int | None = None,
    n_samples: int = 200,
    seed: int = 0,
    log=print,
) -> dict:
    """Train a label CVAE, write figures and ``metrics.json`` to ``out``; return the metrics.

    Args are as in :func:`segcvae.toy.vae.run_vae`.
    """
    torch.manual_seed(seed)
    out = Path(out)
    train_set = load_digits(data, "train", binarization, train_size)
    test_set = load_digits(data, "test", binarization, test_size)
    model = LabelCVAE(latent_dim, hidden)
    clock = Stopwatch()
    history = train_adam(
        model,
        lambda idx: cvae_loss(model, train_set.x[idx], train_set.labels[idx]),
        len(train_set),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        log=log,
        name="cvae",
    )
    timing = clock.read()

    with torch.no_grad():
        pairs = list(zip(test_set.x.split(100), test_set.labels.split(100), strict=True))
        neg_elbo = sum(cvae_loss(model, x, y)["loss"].item() * len(y) for x, y in pairs)
        neg_elbo /= len(test_set)
        nll = -torch.cat([cvae_log_likelihood(model, x, y, n_samples) for x, y in pairs])

        digits = torch.arange(NUM_CLASSES)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(12, latent_dim, generator=gen)  # one style per column
        styles = torch.sigmoid(model.decode(z[None], digits[:, None]))  # (10, 12, 784)
        save_grid(
            styles,
            out / "styles.png",
            "CVAE: one label per row, one z ~ N(0, I) per column",
            row_labels=[str(d) for d in range(NUM_CLASSES)],
        )

        # analogies: the style z = E[z | x, y] of one test digit per row, decoded with every label
        rows = torch.stack([(test_set.labels == d).nonzero()[0, 0] for d in range(8)])
        style = model.encode(test_set.x[rows], test_set.labels[rows]).loc  # (8, d)
        decoded = torch.sigmoid(model.decode(style[:, None], digits[None, :]))  # (8, 10, 784)
        save_grid(
            torch.cat([test_set.x[rows][:, None], decoded], 1),
            out / "analogies.png",
            "CVAE analogies: test digit, then its style z with labels 0-9",
            col_labels=["input"] + [str(d) for d in range(10)],
        )

    metrics = {
        "model": "cvae",
        "latent_dim": latent_dim,
        "epochs": epochs,
        "binarization": binarization,
        "train_size": len(train_set),
        "test_size": len(test_set),
        "test_neg_elbo": round(neg_elbo, 3),
        "test_nll_is": round(nll.mean().item(), 3),
        "is_samples": n_samples,
        **training_summary(history, timing),
    }
    return finish_run("cvae", metrics, out, "test_nll_is", log)
