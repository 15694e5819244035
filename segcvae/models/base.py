"""The two-stage interface every model family shares: encode once, then decode."""

from __future__ import annotations

from collections.abc import Iterator

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


class DeterministicModel(TwoStageModel):
    """A family without a latent: its hypotheses are the one prediction, its likelihood is exact.

    A subclass implements ``encode`` and ``decode_mean``.
    """

    #: Estimators of log p(y | x) this model supports (see ``segcvae.metrics``): the exact one.
    likelihood_methods: tuple[str, ...] = ("exact",)

    def decode_samples(self, ctx, n: int) -> Tensor:
        """The deterministic prediction repeated n times: (B, n, K, H, W)."""
        return self.decode_mean(ctx).unsqueeze(1).expand(-1, n, -1, -1, -1)

    def likelihood_samples(
        self, ctx, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """The logits to score labels against: the one prediction (B, 1, K, H, W).

        The model-side half of ``segcvae.metrics.conditional_log_likelihood``; ``n``, ``method``
        and ``chunk_size`` are accepted for the common interface (the likelihood is exact).
        """
        yield self.decode_mean(ctx).unsqueeze(1), None
