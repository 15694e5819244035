"""Gaussian latent heads shared by the prior and recognition networks."""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, OneHotCategorical


class LowRankGaussian(Protocol):
    """The parameters of a low-rank Gaussian ``N(loc, P P^T + D)``: a
    ``torch.distributions.LowRankMultivariateNormal``, or SSN's context (which skips building one)."""

    loc: Tensor  # (B, E)
    cov_factor: Tensor  # P (B, E, R)
    cov_diag: Tensor  # D (B, E)


def bounded_logvar(raw: Tensor, logvar_min: float, logvar_max: float) -> Tensor:
    """Squash an unbounded output into [logvar_min, logvar_max] with a sigmoid.

    ``exp()`` of the result never overflows and KLs stay finite however long training runs.
    """
    return logvar_min + (logvar_max - logvar_min) * torch.sigmoid(raw)


def diagonal_gaussian(mu: Tensor, logvar: Tensor) -> Independent:
    """A diagonal Gaussian whose event is everything but the batch dimension.

    Args:
        mu: Means (B, Z, h, w).
        logvar: Log-variances, same shape.

    Returns:
        ``Independent(Normal)``: ``log_prob`` and ``kl_divergence`` give one value per image (B,).
    """
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), mu.dim() - 1)


def low_rank_draws(dist: LowRankGaussian, eps_w: Tensor, eps_d: Tensor) -> Tensor:
    """Draws ``mu + P eps_w + sqrt(D) eps_d`` of a low-rank Gaussian, batch first.

    One batched product per batch element; ``LowRankMultivariateNormal.rsample`` instead broadcasts
    the (B, E, R) factor to every sample, a copy of it per sample (335 MB for 16 samples of 8
    images with E = 4 x 128 x 128). Used by SSN's sampler and by the ONNX export's noise input.

    Args:
        dist: A low-rank Gaussian's parameters, batch shape (B,), event (E,), factor rank R.
        eps_w: Standard-normal noise (B, n, R).
        eps_d: Standard-normal noise (B, n, E).

    Returns:
        (B, n, E) draws.
    """
    mean_and_low_rank = torch.baddbmm(dist.loc.unsqueeze(1), eps_w, dist.cov_factor.transpose(1, 2))
    return torch.addcmul(mean_and_low_rank, dist.cov_diag.sqrt().unsqueeze(1), eps_d)


def systematic_draws(probs: Tensor, n: int) -> Tensor:
    """n codes per row of ``probs`` by systematic sampling, in random order.

    One uniform offset u per row and the n points (u + i) / n, i = 0..n-1, through the inverse
    CDF: code c is drawn floor(n p_c) or ceil(n p_c) times, never more or fewer, and each point is
    uniform over its stratum, so the draws are an unbiased sample set of ``probs`` with much
    less spread in the counts than n independent draws (with 16 draws from 3 equally likely codes,
    independent draws leave a code out or give it 9 of 16 now and then; systematic draws give
    5, 5 and 6). torch has no systematic sampler (``torch.multinomial`` draws independently).

    Args:
        probs: (B, Z) probabilities, rows summing to 1.
        n: Draws per row.

    Returns:
        (B, n) long code indices, shuffled within each row.
    """
    b, z = probs.shape
    u = (torch.rand(b, 1, device=probs.device) + torch.arange(n, device=probs.device)) / n
    cdf = probs.float().cumsum(-1)
    idx = torch.searchsorted(cdf, u.clamp(max=1.0 - 1e-6) * cdf[:, -1:]).clamp_(max=z - 1)
    order = torch.rand(b, n, device=probs.device).argsort(-1)
    return idx.gather(1, order)


def gumbel_max_codes(logits: Tensor, eps: Tensor) -> Tensor:
    """One-hot codes drawn from categorical ``logits`` by the Gumbel-max trick, with standard-normal
    noise mapped to uniforms by the normal CDF (so one noise input serves every family's export).

    Args:
        logits: (B, Z) unnormalised log-probabilities.
        eps: (S, B, Z) standard-normal noise.

    Returns:
        (S, B, Z) one-hot codes, ``argmax(logits + Gumbel(Phi(eps)))``: distributed as
        ``OneHotCategorical(logits=logits)``.
    """
    u = (0.5 * (1.0 + torch.erf(eps / math.sqrt(2.0)))).clamp(1e-6, 1.0 - 1e-6)
    idx = (logits + (-torch.log(-torch.log(u)))).argmax(-1, keepdim=True)  # (S, B, 1)
    codes = torch.arange(logits.shape[-1], device=eps.device)
    return (idx == codes).to(logits.dtype)


class LatentNet(nn.Module):
    """Image features plus a label map -> a distribution over z: a diagonal Gaussian, or with
    ``categorical`` a categorical over codes. The body of :class:`~segcvae.models.PriorNet` and
    :class:`~segcvae.models.RecognitionNet`.

    The label map (class probabilities or one-hot, full resolution) enters by two paths, both joined
    with the encoder feature at the latent stride:

    * a parameter-free path: the map area-pooled straight to the latent stride (exact class
      fractions per cell), so the label always reaches ``joint`` however the convolutions train;
    * a learned path: area-pooled to stride 4, then strided convolutions with LeakyReLU down to the
      latent stride, which see the label's shape inside each cell.

    Both exist because with a single ReLU path the prior's branch died in training (93-95 % of its
    activations exactly zero on LFW), leaving p(z|x, y_hat) blind to y_hat.

    Args:
        feature_channels: Channels of the encoder feature at ``latent_stride``.
        label_channels: Channels of the label map (the number of classes K).
        latent_channels: Z.
        latent_stride: Stride of the z map (4, 8, 16 or 32).
        hidden_channels: Width of the convolutions.
        global_latent: One z vector per image (shape (B, Z, 1, 1)) instead of a z map.
        logvar_min: Lower bound of the log-variance.
        logvar_max: Upper bound of the log-variance.
        categorical: Output a categorical distribution over ``latent_channels`` codes (one per
            image, one-hot events) instead of a Gaussian; implies a global latent. Its logits are
            bounded to [-logit_bound, logit_bound], so every code keeps a probability above
            about exp(-2 * logit_bound) / Z and KL terms stay finite.
        logit_bound: Bound of the categorical logits.
    """

    def __init__(
        self,
        feature_channels: int,
        label_channels: int,
        latent_channels: int = 8,
        latent_stride: int = 16,
        hidden_channels: int = 32,
        global_latent: bool = False,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
        categorical: bool = False,
        logit_bound: float = 8.0,
    ) -> None:
        super().__init__()
        n_down = int(math.log2(latent_stride)) - 2
        if latent_stride < 4 or 2 ** (n_down + 2) != latent_stride:
            raise ValueError(f"latent_stride must be a power of two >= 4, got {latent_stride}")
        if not logvar_min < logvar_max:
            raise ValueError(f"need logvar_min < logvar_max, got {logvar_min}, {logvar_max}")
        layers: list[nn.Module] = []
        c = label_channels
        for _ in range(n_down):
            layers += [
                nn.Conv2d(c, hidden_channels, 3, stride=2, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            c = hidden_channels
        self.label_net = nn.Sequential(*layers)
        # At stride 4 the learned path is the identity, so the direct path would only repeat it.
        self.direct_labels = n_down > 0
        joint_in = feature_channels + c + (label_channels if self.direct_labels else 0)
        self.joint = nn.Sequential(
            nn.Conv2d(joint_in, hidden_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.categorical = categorical
        self.logit_bound = logit_bound
        n_params = latent_channels if categorical else 2 * latent_channels
        self.to_params = nn.Conv2d(hidden_channels, n_params, 1)
        self.label_channels = label_channels
        self.global_latent = global_latent or categorical
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max

    def forward(self, features: Tensor, labels: Tensor) -> Distribution:
        """Return the distribution over z.

        Args:
            features: Encoder feature at the latent stride (B, C, h, w).
            labels: Class probabilities or one-hot (B, K, H, W) at full resolution.

        Returns:
            A Gaussian with batch shape (B,) and event shape (Z, h, w) (or (Z, 1, 1) if global);
            with ``categorical``, a ``OneHotCategorical`` with batch shape (B,) and event (Z,).
        """
        size = features.shape[-2:]
        quarter = F.interpolate(labels, scale_factor=0.25, mode="area")  # (B, K, H/4, W/4)
        lab = self.label_net(quarter)  # (B, hidden, h, w)
        if lab.shape[-2:] != size:
            lab = F.interpolate(lab, size=size, mode="area")
        parts = [features, lab]
        if self.direct_labels:
            parts.append(F.interpolate(labels, size=size, mode="area"))  # (B, K, h, w)
        h = self.joint(torch.cat(parts, dim=1))
        if self.global_latent:
            h = h.mean(dim=(2, 3), keepdim=True)  # (B, hidden, 1, 1)
        params = self.to_params(h).float()  # distributions in float32 (mixed precision too)
        if self.categorical:
            raw = params.flatten(1)  # (B, Z)
            return OneHotCategorical(logits=self.logit_bound * torch.tanh(raw / self.logit_bound))
        mu, raw = params.chunk(2, dim=1)
        logvar = bounded_logvar(raw, self.logvar_min, self.logvar_max)
        return diagonal_gaussian(mu, logvar)


GaussianNet = LatentNet
"""The former name of :class:`LatentNet` (it outputs a categorical too), kept for old imports."""
