"""The two-stage interface every model family shares: encode once, then decode."""

from __future__ import annotations

from torch import Tensor, nn


class TwoStageModel(nn.Module):
    """``predict`` and ``sample`` from a family's ``encode`` / ``decode_mean`` / ``decode_samples``.

    A family implements ``encode(x) -> ctx`` (the image-only work, done once),
    ``decode_mean(ctx) -> (B, K, H, W)`` and ``decode_samples(ctx, n) -> (B, n, K, H, W)``.
    """

    def predict(self, x: Tensor) -> Tensor:
        """Deterministic logits (B, K, H, W) for images x (B, C, H, W)."""
        return self.decode_mean(self.encode(x))

    def sample(self, x: Tensor, n: int) -> Tensor:
        """n hypotheses as logits (B, n, K, H, W) for images x (B, C, H, W)."""
        return self.decode_samples(self.encode(x), n)
