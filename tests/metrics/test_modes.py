"""Metrics with known mask probabilities: the mode-frequency error and the weighted GED / matched
IoU / mode purity and coverage / rater frequency."""

from __future__ import annotations

import pytest
import torch

from segcvae.data.raters import majority_vote
from segcvae.metrics import (
    empty_share_error,
    generalized_energy_distance,
    hungarian_matched_iou,
    mode_coverage,
    mode_frequency_error,
    mode_purity,
    plausible_masks,
    rater_frequency,
)


def _rect(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    m = torch.zeros(10, 10, dtype=torch.long)
    m[r0:r1, c0:c1] = 1
    return m


A = _rect(0, 5, 0, 10)  # top half, 50 px
B = _rect(0, 10, 0, 5)  # left half
C = _rect(7, 10, 7, 10)  # a corner
NONE = _rect(4, 6, 0, 10)  # a middle band: IoU < 0.9 with each of A, B, C


def _near(m: torch.Tensor) -> torch.Tensor:
    """``m`` with one more foreground pixel: IoU 50/51 > 0.9 with a 50-pixel mask."""
    out = m.clone()
    out[9, 9] = 1 - out[9, 9]
    return out


def test_mode_frequency_error_hand_case() -> None:
    # modes A, B, C with p = 0.6, 0.3, 0.1; 10 hypotheses: 5 match A (one only at IoU 0.98),
    # 4 match B, 1 matches nothing -> h = (0.5, 0.4, 0, 0.1), TV = (0.1 + 0.1 + 0.1 + 0.1) / 2
    modes = torch.stack([A, B, C])
    p = torch.tensor([0.6, 0.3, 0.1])
    hyps = torch.stack([A, A, A, A, _near(A), B, B, B, B, NONE])
    assert mode_frequency_error(hyps, modes, 2, p) == pytest.approx(0.2, abs=1e-6)
    # drawn exactly in proportion: 0; nothing plausible: 1
    exact = torch.stack([A] * 6 + [B] * 3 + [C])
    assert mode_frequency_error(exact, modes, 2, p) == pytest.approx(0.0, abs=1e-6)
    assert mode_frequency_error(NONE[None].repeat(4, 1, 1), modes, 2, p) == pytest.approx(1.0)
    # a stricter threshold puts the near-A hypothesis in the no-mode bin: h = (.4, .4, 0, .2)
    strict = mode_frequency_error(hyps, modes, 2, p, threshold=0.99)
    assert strict == pytest.approx(0.5 * (0.2 + 0.1 + 0.1 + 0.2), abs=1e-6)


def test_mode_frequency_error_best_iou_wins() -> None:
    a2 = _near(A)  # a second mode at IoU 0.98 of A
    modes = torch.stack([A, a2])
    p = torch.tensor([0.5, 0.5])
    # each hypothesis matches both at >= 0.9; it counts for the one it matches best
    hyps = torch.stack([A, a2])
    assert mode_frequency_error(hyps, modes, 2, p) == pytest.approx(0.0, abs=1e-9)
    assert mode_frequency_error(torch.stack([a2, a2]), modes, 2, p) == pytest.approx(0.5)


def test_identical_masks_are_merged_and_probability_0_never_counts() -> None:
    hyps = torch.stack([A, A, B])
    merged = mode_frequency_error(hyps, torch.stack([A, B]), 2, torch.tensor([2 / 3, 1 / 3]))
    assert merged == pytest.approx(0.0, abs=1e-6)
    # the same mode listed twice: its probabilities summed (0.3 + 0.3 + 0.4 -> A 0.6, B 0.4)
    listed = mode_frequency_error(hyps, torch.stack([A, B, A]), 2, torch.tensor([0.3, 0.4, 0.3]))
    assert listed == pytest.approx(0.5 * (abs(2 / 3 - 0.6) + abs(1 / 3 - 0.4)), abs=1e-6)
    # equally likely masks (no probabilities), A listed twice: A 2/3, B 1/3
    assert mode_frequency_error(hyps, torch.stack([A, A, B]), 2) == pytest.approx(0.0, abs=1e-9)
    # C has probability 0: hypotheses that draw it are in the no-mode bin, not C's
    p = torch.tensor([0.5, 0.5, 0.0])
    hyps = torch.stack([A, B, C, C])  # h = (0.25, 0.25, no mode 0.5), q = (0.5, 0.5, 0)
    assert mode_frequency_error(hyps, torch.stack([A, B, C]), 2, p) == pytest.approx(0.5)


def test_plausible_masks_merge_drop_and_keep_first_order() -> None:
    masks = torch.stack([B, A, B, C])
    modes, p = plausible_masks(masks, torch.tensor([0.2, 0.5, 0.3, 0.0]))
    assert modes.shape == (2, 10, 10)
    assert torch.equal(modes[0], B) and torch.equal(modes[1], A)
    assert p.tolist() == pytest.approx([0.5, 0.5])
    modes, p = plausible_masks(torch.stack([A, A, B]))  # equally likely
    assert p.tolist() == pytest.approx([2 / 3, 1 / 3])
    for bad in ([0.0, 0.0, 0.0], [-0.5, 1.0, 0.5], [float("nan"), 0.5, 0.5]):
        with pytest.raises(ValueError, match="mask probabilities"):
            plausible_masks(torch.stack([A, B, C]), torch.tensor(bad))
    with pytest.raises(ValueError, match="3 masks"):
        plausible_masks(torch.stack([A, B, C]), torch.tensor([0.5, 0.5]))


def test_weighted_ged_equals_the_masks_duplicated_in_proportion() -> None:
    hyps = torch.stack([A, B, C, _near(B), NONE])
    weighted = generalized_energy_distance(hyps, torch.stack([A, B]), 2, torch.tensor([2, 1.0]))
    duplicated = generalized_energy_distance(hyps, torch.stack([A, A, B]), 2)
    assert weighted == pytest.approx(duplicated, abs=1e-6)
    assert weighted != pytest.approx(generalized_energy_distance(hyps, torch.stack([A, B]), 2))
    # equal probabilities are the unweighted GED; probability 0 is a mask left out
    gts = torch.stack([A, B, C])
    plain = generalized_energy_distance(hyps, gts, 2)
    assert generalized_energy_distance(hyps, gts, 2, torch.ones(3)) == pytest.approx(plain)
    dropped = generalized_energy_distance(hyps, gts, 2, torch.tensor([0.5, 0.5, 0.0]))
    assert dropped == pytest.approx(generalized_energy_distance(hyps, gts[:2], 2), abs=1e-6)


def test_weighted_matched_iou_is_the_hungarian_matching_with_proportional_copies() -> None:
    hyps = torch.stack([A, _near(B), C, NONE, A, B])
    p = torch.tensor([0.5, 1 / 3, 1 / 6])  # S p = 3, 2, 1: whole copies
    weighted = hungarian_matched_iou(hyps, torch.stack([A, B, C]), 2, p)
    duplicated = hungarian_matched_iou(hyps, torch.stack([A, A, A, B, B, C]), 2)
    assert weighted == pytest.approx(duplicated, abs=1e-6)
    # hypotheses drawn exactly in proportion match perfectly
    exact = torch.stack([A, A, A, B, B, C])
    assert hungarian_matched_iou(exact, torch.stack([A, B, C]), 2, p) == pytest.approx(1.0)


def test_mode_purity_and_coverage_count_only_possible_modes() -> None:
    modes = torch.stack([A, B, C])
    p = torch.tensor([0.5, 0.5, 0.0])
    hyps = torch.stack([A, B, C, C])
    assert mode_purity(hyps, modes, 2) == 1.0
    assert mode_purity(hyps, modes, 2, probs=p) == 0.5  # C is not plausible
    two = torch.stack([A, B])
    assert mode_coverage(two, modes, 2) == 0.0
    assert mode_coverage(two, modes, 2, probs=p) == 1.0  # C need not be drawn


def test_weighted_frequency_majority_and_empty_share() -> None:
    empty = torch.zeros(10, 10, dtype=torch.long)
    gts = torch.stack([A, empty])
    freq, valid = rater_frequency(gts, 2, torch.tensor([0.8, 0.2]))
    assert valid.all() and freq[0, 0] == pytest.approx(0.8) and freq[9, 9] == 0.0
    assert torch.equal(majority_vote(gts, 2, probs=torch.tensor([0.4, 0.6])), empty)
    assert torch.equal(majority_vote(gts, 2, probs=torch.tensor([0.6, 0.4])), A)
    # a tie goes to the foreground, as with counted votes
    assert torch.equal(majority_vote(gts, 2, probs=torch.tensor([0.3, 0.3])), A)
    hyps = torch.stack([A, A, A, empty])  # a quarter empty
    share = empty_share_error(hyps, gts, 2, torch.tensor([0.8, 0.2]))
    assert share == pytest.approx(0.05, abs=1e-9)
    assert empty_share_error(hyps, gts, 2) == pytest.approx(0.25)
