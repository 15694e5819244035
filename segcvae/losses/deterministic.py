"""The objective of a family without a latent: the multi-scale NLL of its prediction."""

from __future__ import annotations

from torch import Tensor, nn

from segcvae.losses._functional import multiscale_nll
from segcvae.outputs import CNNOutput


class DeterministicObjective(nn.Module):
    """Multi-scale NLL of a :class:`~segcvae.outputs.CNNOutput`.

    The baseline CNN's loss is the NLL of y_hat. With a second stage (``out.refined``, the
    ``RefinedCNN``) it is the refined prediction's NLL plus ``y_hat_weight`` times y_hat's, as for
    the latent models (whose y_hat is kept an initial guess the same way).

    Args:
        scale_weights: NLL weight of the 1/4, 1/2 and 1 scales.
        y_hat_weight: Weight of y_hat's NLL when a second stage refines it.
    """

    def __init__(
        self,
        *,
        scale_weights: tuple[float, ...] | list[float] = (1.0, 1.0, 1.0),
        y_hat_weight: float = 0.5,
    ) -> None:
        super().__init__()
        self.scale_weights = list(scale_weights)
        self.y_hat_weight = y_hat_weight

    def forward(self, out: CNNOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch.
            y: Labels (B, H, W) long; or a set of masks per image (B, M, H, W), scored as the mean
                over the (image, mask) pairs.
            step: Unused (the common signature).

        Returns:
            ``loss``, ``nll`` and ``nll_4/2/1`` (of the prediction); with a second stage also
            ``nll_y_hat``.
        """
        baseline = multiscale_nll(out.y_hat, y, self.scale_weights)
        if out.refined is None:
            return {"loss": baseline["nll"], **baseline}
        refined = multiscale_nll(out.refined, y, self.scale_weights)
        loss = refined["nll"] + self.y_hat_weight * baseline["nll"]
        terms = {k: v.detach() for k, v in refined.items()}
        return {**terms, "nll_y_hat": baseline["nll"].detach(), "loss": loss}
