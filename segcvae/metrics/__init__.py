"""Metrics: segmentation counts, conditional log-likelihood, multi-hypothesis and multi-rater
metrics, and the mode-frequency error of data with known mode probabilities."""

from segcvae.metrics._functional import (
    importance_log_likelihood,
    label_log_likelihood,
    log_mean_exp,
    monte_carlo_log_likelihood,
)
from segcvae.metrics.likelihood import (
    conditional_log_likelihood,
    negative_log_likelihoods,
)
from segcvae.metrics.modes import mode_frequency_error, plausible_masks
from segcvae.metrics.multi_hypothesis import (
    diversity,
    ged,
    generalized_energy_distance,
    hm_iou,
    hungarian_matched_iou,
    mean_pairwise_iou,
    mode_coverage,
    mode_purity,
    normalized_probs,
    pairwise_iou,
    rater_pairwise_iou,
)
from segcvae.metrics.multi_rater import (
    calibration_bins,
    ece,
    ece_from_bins,
    empty_masks,
    empty_share_error,
    expected_cross_entropy_map,
    majority_ged,
    majority_soft_dice,
    ncc,
    rater_frequency,
    soft_dice,
    uncertainty_ncc,
)
from segcvae.metrics.segmentation import SegmentationMeter

__all__ = [
    "SegmentationMeter",
    "calibration_bins",
    "conditional_log_likelihood",
    "diversity",
    "ece",
    "ece_from_bins",
    "empty_masks",
    "empty_share_error",
    "expected_cross_entropy_map",
    "ged",
    "generalized_energy_distance",
    "hm_iou",
    "hungarian_matched_iou",
    "importance_log_likelihood",
    "label_log_likelihood",
    "log_mean_exp",
    "majority_ged",
    "majority_soft_dice",
    "mean_pairwise_iou",
    "mode_coverage",
    "mode_frequency_error",
    "mode_purity",
    "monte_carlo_log_likelihood",
    "negative_log_likelihoods",
    "ncc",
    "normalized_probs",
    "pairwise_iou",
    "plausible_masks",
    "rater_frequency",
    "rater_pairwise_iou",
    "soft_dice",
    "uncertainty_ncc",
]
