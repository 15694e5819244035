"""Metrics: segmentation counts, conditional log-likelihood, multi-hypothesis distances."""

from segcvae.metrics._functional import (
    importance_log_likelihood,
    label_log_likelihood,
    log_mean_exp,
    monte_carlo_log_likelihood,
)
from segcvae.metrics.likelihood import (
    conditional_log_likelihood,
    cross_entropy_sum,
    negative_log_likelihoods,
)
from segcvae.metrics.multi_hypothesis import (
    generalized_energy_distance,
    hungarian_matched_iou,
    pairwise_iou,
)
from segcvae.metrics.segmentation import SegmentationMeter

__all__ = [
    "SegmentationMeter",
    "conditional_log_likelihood",
    "cross_entropy_sum",
    "generalized_energy_distance",
    "hungarian_matched_iou",
    "importance_log_likelihood",
    "label_log_likelihood",
    "log_mean_exp",
    "monte_carlo_log_likelihood",
    "negative_log_likelihoods",
    "pairwise_iou",
]
