"""2-D priors for the adversarial autoencoder, each with ten "arms" a label can pick.

Every sampler maps ``(n, labels, generator) -> (n, 2)``; ``labels`` (n,) in 0..9 selects the arm
of each sample (for ``gaussian``, which has no arms, labels are an error), None draws the arm at
random. The registry is a plain dict: ``PRIORS[name]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

NUM_ARMS = 10


def _arms(n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if labels is None:
        return torch.randint(0, NUM_ARMS, (n,), generator=generator)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    return labels


def gaussian(n: int, labels: Tensor | None = None, generator: torch.Generator | None = None):
    """N(0, I) in 2-D."""
    if labels is not None:
        raise ValueError(
            "the 'gaussian' prior has no arms to put labels in; use mixture, swiss_roll or uniform"
        )
    return torch.randn(n, 2, generator=generator)


def mixture(n: int, labels: Tensor | None = None, generator: torch.Generator | None = None):
    """Ten Gaussians on a circle of radius 4, each stretched along its radius (std 0.6 x 0.15)."""
    arm = _arms(n, labels, generator)
    local = torch.randn(n, 2, generator=generator) * torch.tensor([0.6, 0.15]) + torch.tensor(
        [4.0, 0.0]
    )
    angle = 2 * math.pi * arm.float() / NUM_ARMS
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack(
        [cos * local[:, 0] - sin * local[:, 1], sin * local[:, 0] + cos * local[:, 1]], 1
    )


def swiss_roll(n: int, labels: Tensor | None = None, generator: torch.Generator | None = None):
    """A spiral of radius up to 4 cut into ten consecutive segments of equal probability."""
    arm = _arms(n, labels, generator)
    u = (arm.float() + torch.rand(n, generator=generator)) / NUM_ARMS  # position along the roll
    radius = 4.0 * torch.sqrt(u)
    angle = 3 * math.pi * torch.sqrt(u)
    point = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)
    return point + 0.05 * torch.randn(n, 2, generator=generator)


def uniform(n: int, labels: Tensor | None = None, generator: torch.Generator | None = None):
    """Uniform on the square [-2, 2]^2, cut into ten vertical strips (the arms)."""
    arm = _arms(n, labels, generator)
    u = torch.rand(n, 2, generator=generator)
    x = -2.0 + 4.0 * (arm.float() + u[:, 0]) / NUM_ARMS
    return torch.stack([x, -2.0 + 4.0 * u[:, 1]], 1)


PRIORS: dict[str, Callable[..., Tensor]] = {
    "gaussian": gaussian,
    "mixture": mixture,
    "swiss_roll": swiss_roll,
    "uniform": uniform,
}


def get_prior(name: str) -> Callable[..., Tensor]:
    """Look a sampler up by name; an unknown name raises ``KeyError`` listing the valid ones."""
    if name not in PRIORS:
        raise KeyError(f"unknown prior {name!r}; valid: {sorted(PRIORS)}")
    return PRIORS[name]
