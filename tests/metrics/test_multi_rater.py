"""Multi-rater metrics on hand-computed examples: GED, pairwise IoU, modes, NCC, soft Dice, ECE,
the share of empty hypotheses and the majority mask's references (checked on QUBIQ as well)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segcvae.data import QUBIQDataset
from segcvae.data.raters import majority_vote
from segcvae.metrics import (
    diversity,
    ece,
    empty_masks,
    empty_share_error,
    expected_cross_entropy_map,
    ged,
    hm_iou,
    majority_ged,
    majority_soft_dice,
    mode_coverage,
    mode_purity,
    ncc,
    rater_frequency,
    rater_pairwise_iou,
    soft_dice,
    uncertainty_ncc,
)
from tests.conftest import SHARED_DATA


def _masks(*rows: str) -> torch.Tensor:
    """Masks of one row of pixels each: '0'/'1' characters."""
    return torch.tensor([[[int(c) for c in r]] for r in rows])  # (N, 1, W)


def test_ged_of_identical_sets_is_zero_and_a_known_pair_is_known() -> None:
    a = _masks("1100", "0110")
    assert ged(a, a, 2) == pytest.approx(0.0, abs=1e-12)
    # one sample "1100" vs one truth "0110": IoU 1/3, d = 2/3, D^2 = 2 * 2/3 - 0 - 0
    assert ged(_masks("1100"), _masks("0110"), 2) == pytest.approx(4 / 3)
    # empty vs empty counts as agreement (d = 0): an all-empty prediction of an empty truth
    assert ged(_masks("0000", "0000"), _masks("0000"), 2) == pytest.approx(0.0)
    assert hm_iou(a, a.flip(0), 2) == pytest.approx(1.0)


def test_pairwise_iou_of_hypotheses_and_raters() -> None:
    # IoU("1100", "1110") = 2/3, ("1100", "0011") = 0, ("1110", "0011") = 1/4
    m = _masks("1100", "1110", "0011")
    expected = (2 / 3 + 0 + 1 / 4) / 3
    assert diversity(m, 2) == pytest.approx(expected)
    assert rater_pairwise_iou(m, 2) == pytest.approx(expected)
    assert diversity(_masks("1100", "1100"), 2) == pytest.approx(1.0)
    assert math.isnan(rater_pairwise_iou(_masks("1100"), 2))


def test_mode_purity_and_coverage() -> None:
    modes = _masks("1111111111000", "1111111111110")  # IoU between the modes 10/12 < 0.9
    near = _masks("1111111110000")  # IoU 9/10 with the first mode: counts (>= 0.9)
    far = _masks("0000000000111")
    hyps = torch.cat([modes[:1], near, far, far])
    assert mode_purity(hyps, modes, 2) == pytest.approx(0.5)
    assert mode_coverage(hyps, modes, 2) == 0.0  # the second mode is never hit
    assert mode_coverage(torch.cat([hyps, modes[1:]]), modes, 2) == 1.0
    assert mode_purity(modes, modes, 2) == 1.0


def test_ncc_of_identical_and_opposite_maps() -> None:
    a = torch.rand(5, 7, generator=torch.Generator().manual_seed(0))
    assert ncc(a, a) == pytest.approx(1.0)
    assert ncc(a, 3 * a + 2) == pytest.approx(1.0)
    assert ncc(a, -a) == pytest.approx(-1.0)
    # hand example: a = [1, 2, 3], b = [1, 3, 2]: centred [-1, 0, 1], [-1, 1, 0] -> 1 / 2
    assert ncc(torch.tensor([1.0, 2, 3]), torch.tensor([1.0, 3, 2])) == pytest.approx(0.5)
    assert math.isnan(ncc(torch.ones(4), torch.rand(4)))


def _phiseg_variance_ncc(samples: np.ndarray, gts: np.ndarray, k: int) -> float:
    """A transcription of PHiSeg's utils.variance_ncc_dist (one-hot inputs, eps 1e-8)."""

    def xent(m_samp, m_gt, eps=1e-8):
        return -np.sum(m_gt * np.log(m_samp + eps), axis=-1)

    def ncc_np(a, v):
        a = (a - a.mean()) / (a.std() * a.size)
        v = (v - v.mean()) / v.std()
        return float(np.correlate(a.ravel(), v.ravel())[0])

    s, g = np.eye(k)[samples], np.eye(k)[gts]  # (N, X, Y, K)
    mean = s.mean(0)
    e_ss = np.mean([xent(si, mean) for si in s], axis=0)
    e_sy = [np.mean([xent(si, gj) for si in s], axis=0) for gj in g]
    return float(np.mean([ncc_np(e_ss, e) for e in e_sy]))


def test_uncertainty_ncc_matches_the_phiseg_code() -> None:
    g = torch.Generator().manual_seed(1)
    gts = (torch.rand(4, 6, 6, generator=g) > 0.5).long()
    gts[:, :2] = 0  # raters agree on part of the image
    samples = gts[torch.tensor([0, 1, 2, 3, 0, 2])].clone()
    samples[0, 3, 3] = 1 - samples[0, 3, 3]
    ours = uncertainty_ncc(samples, gts, 2)
    assert ours == pytest.approx(_phiseg_variance_ncc(samples.numpy(), gts.numpy(), 2), rel=1e-6)
    assert 0.0 < ours <= 1.0
    # all hypotheses alike: the model's uncertainty is flat, the correlation undefined
    assert math.isnan(uncertainty_ncc(gts[:1].repeat(3, 1, 1), gts, 2))


def test_expected_cross_entropy_is_zero_where_hypotheses_agree() -> None:
    u = expected_cross_entropy_map(_masks("1100", "1010"), 2)[0]
    assert u[0] == pytest.approx(0.0, abs=1e-6) and u[3] == pytest.approx(0.0, abs=1e-6)
    assert u[1] > 1.0 and u[1] == pytest.approx(u[2])  # half/half: 0.5 * -log(1e-8)
    assert u[1] == pytest.approx(0.5 * -math.log(1e-8), rel=1e-6)


def test_soft_dice_hand_example() -> None:
    freq = torch.tensor([0.0, 0.5, 1.0])
    assert soft_dice(freq, freq) == pytest.approx(1.0)
    # t = 0.1..0.4: both {1, 2} -> 1; t = 0.5..0.9: prob {1, 2}, freq {2} -> 2/3
    prob = torch.tensor([0.0, 1.0, 1.0])
    assert soft_dice(prob, freq) == pytest.approx((4 + 5 * 2 / 3) / 9)
    assert soft_dice(torch.zeros(3), torch.zeros(3)) == 1.0  # nothing anywhere: agreement


def test_ece_hand_example() -> None:
    prob = torch.tensor([0.05, 0.95, 0.95])
    freq = torch.tensor([0.0, 1.0, 0.0])
    # bin 0: |0.05 - 0| * 1/3; bin 9: |0.95 - 0.5| * 2/3
    assert ece(prob, freq) == pytest.approx(0.05 / 3 + 0.45 * 2 / 3)
    assert ece(freq, freq) == pytest.approx(0.0)
    assert ece(torch.ones(2), torch.ones(2)) == pytest.approx(0.0)  # p = 1 falls in the last bin


def test_rater_frequency_and_majority_vote() -> None:
    gts = torch.tensor([[[0, 1, 1, 255]], [[0, 1, 0, 255]], [[1, 1, 0, 255]], [[0, 0, 1, 255]]])
    freq, valid = rater_frequency(gts, 2)
    assert freq[0, :3].tolist() == [0.25, 0.75, 0.5] and valid[0].tolist() == [1, 1, 1, 0]
    vote = majority_vote(gts, 2)
    assert vote[0].tolist() == [0, 1, 1, 255]  # 2 of 4 (a tie) goes to the foreground
    three = torch.tensor([[[1, 2, 0]], [[2, 1, 0]], [[0, 0, 2]]])
    assert majority_vote(three, 3)[0].tolist() == [1, 1, 0]  # tied foreground: lowest index
    one = torch.tensor([[[0, 2, 255]]])
    assert torch.equal(majority_vote(one, 3), one[0])


def test_empty_share_error_hand_example() -> None:
    hyps = _masks("0000", "1100", "0000", "0110")  # 2 of 4 empty
    raters = _masks("0000", "1100", "1110", "0100")  # 1 of 4 empty
    assert empty_masks(hyps, 2).tolist() == [True, False, True, False]
    assert empty_share_error(hyps, raters, 2) == pytest.approx(0.25)
    assert empty_share_error(raters, hyps, 2) == pytest.approx(0.25)  # symmetric
    # 2 of 8 hypotheses empty and 1 of 4 raters: equal shares
    assert empty_share_error(torch.cat([hyps, raters[1:3].repeat(2, 1, 1)]), raters, 2) == 0.0
    # the ignore index is not foreground; every class but 0 is
    assert empty_masks(torch.tensor([[[0, 255]], [[0, 2]], [[0, 0]]]), 3).tolist() == [1, 0, 1]
    assert empty_share_error(_masks("0000", "0000"), _masks("1000", "0100"), 2) == 1.0


def test_majority_references_hand_example() -> None:
    raters = _masks("1100", "1110", "0100")
    majority = majority_vote(raters, 2)
    assert majority[0].tolist() == [1, 1, 0, 0]
    # d(m, y) = 0, 1/3, 1/2 -> mean 5/18; d(y, y') over all 9 pairs: 2 (1/3 + 1/2 + 2/3) / 9 = 1/3
    assert majority_ged(majority, raters, 2) == pytest.approx(2 * 5 / 18 - 1 / 3)
    # the same as the GED of one hypothesis
    assert majority_ged(majority, raters, 2) == pytest.approx(ged(majority[None], raters, 2))
    # frequency (2/3, 1, 1/3, 0): t = 0.1-0.3 Dice({0,1}, {0,1,2}) = 4/5; t = 0.4-0.6 1; t >= 0.7
    # Dice({0,1}, {1}) = 2/3
    expected = (3 * 4 / 5 + 3 * 1 + 3 * 2 / 3) / 9
    assert majority_soft_dice(majority, raters, 2) == pytest.approx(expected)
    # the model's soft Dice of a probability equal to the majority gives the same number
    freq, valid = rater_frequency(raters, 2)
    assert soft_dice(majority[0].double(), freq[0], valid[0]) == pytest.approx(expected)
    # a column no rater labels is left out of both
    ignored = torch.cat([raters, torch.full((3, 1, 1), 255)], dim=2)
    vote = majority_vote(ignored, 2)
    assert vote[0, 4] == 255
    assert majority_ged(vote, ignored, 2) == pytest.approx(2 / 9)
    assert majority_soft_dice(vote, ignored, 2) == pytest.approx(expected)
    # raters who agree: the majority is every rater, a perfect reference
    same = _masks("0110", "0110")
    assert majority_ged(majority_vote(same, 2), same, 2) == 0.0
    assert majority_soft_dice(majority_vote(same, 2), same, 2) == 1.0


QUBIQ = SHARED_DATA / "qubiq_brain_growth"


@pytest.mark.skipif(not QUBIQ.is_dir(), reason=f"QUBIQ brain growth not found at {QUBIQ}")
def test_qubiq_references_over_all_39_cases() -> None:
    """The numbers issue 22 quotes from the data alone, over all 39 cases at 128x128."""
    refs = []
    for split in ("train", "val", "test"):
        ds = QUBIQDataset(QUBIQ, split)
        for i in range(len(ds)):
            gts = torch.from_numpy(ds[i]["masks"])  # (7, 128, 128)
            vote = majority_vote(gts, 2)
            refs.append(
                (
                    majority_ged(vote, gts, 2),
                    majority_soft_dice(vote, gts, 2),
                    rater_pairwise_iou(gts, 2),
                )
            )
    assert len(refs) == 39
    mean = np.mean(refs, axis=0)
    assert mean[0] == pytest.approx(0.111, abs=0.001)  # measured 0.1105
    assert mean[1] == pytest.approx(0.920, abs=0.001)  # 0.9202
    assert mean[2] == pytest.approx(0.751, abs=0.001)  # 0.7507
