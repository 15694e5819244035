"""Quadrant completion's data and networks (Sohn, Lee & Yan 2015, section 5.1).

The input is 1, 2 or 3 quadrants of a binarised digit, the output the missing ones. Quadrants become
visible in the paper's order: bottom-left, then top-left, then top-right (so "3 quadrants" asks for
the bottom-right one). A hidden input pixel is set to -1, which also tells the networks which
quadrants are given, so one network of each kind serves all three settings.

- :func:`quadrant_mask`, :func:`quadrant_batch`: which pixels are given, and the network inputs.
- ``QuadrantNN``: the deterministic baseline, x -> y_hat logits (a Bernoulli per pixel).
- ``QuadrantCVAE``: prior_net p(z|x, y_hat), recognition_net q(z|x, y), generation_net
  p(y|x, y_hat, z), with the paper's "recurrent connection": the frozen baseline's prediction y_hat
  feeds the prior and generation nets. Without ``recognition_net`` it is the GSNN.

The objectives and estimators are in :mod:`segcvae.toy.quadrant_losses`, the experiment in
:mod:`segcvae.toy.quadrants`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from segcvae.toy.layers import GaussianHead, mlp
from segcvae.toy.mnist import NUM_PIXELS, SIDE

QUADRANT_ORDER = ("bottom-left", "top-left", "top-right", "bottom-right")


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
