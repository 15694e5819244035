"""Segmentation counts, likelihood estimators and multi-hypothesis metrics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segcvae.metrics import (
    SegmentationMeter,
    conditional_log_likelihood,
    generalized_energy_distance,
    hungarian_matched_iou,
    importance_log_likelihood,
    log_mean_exp,
    monte_carlo_log_likelihood,
    pairwise_iou,
)
from segcvae.models import create_model
from tests.conftest import tiny_config


def test_meter_counts_match_hand_computation():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 0, 1]]])
    meter = SegmentationMeter(3)
    meter.update(pred, target)
    r = meter.compute()
    assert r["pixel_accuracy"] == pytest.approx(5 / 7)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 3, fp 1 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    assert r["per_class_iou"] == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert r["mean_iou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_meter_absent_class_is_nan_and_left_out():
    meter = SegmentationMeter(3)
    meter.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    r = meter.compute()
    assert r["mean_iou"] == 1.0 and math.isnan(r["per_class_iou"][2])


def test_meter_class_absent_from_the_targets_but_predicted_is_0_not_nan():
    """All-background masks (the warning of engine/checks.py check_labels): 0 once predicted."""
    target = torch.zeros(1, 2, 2, dtype=torch.long)  # class 1 never in the targets
    never = SegmentationMeter(2)
    never.update(torch.zeros(1, 2, 2, dtype=torch.long), target)
    assert math.isnan(never.compute()["per_class_iou"][1])  # never predicted either: null
    once = SegmentationMeter(2)
    pred = target.clone()
    pred[0, 0, 0] = 1  # one false positive
    once.update(pred, target)
    r = once.compute()
    assert r["per_class_iou"] == pytest.approx([3 / 4, 0.0])  # 0, and counted in the mean
    assert r["mean_iou"] == pytest.approx(3 / 8)


def test_meter_never_reports_a_perfect_score_for_nothing():
    """The 0/255 failure: every foreground pixel ignored, a background-only model."""
    meter = SegmentationMeter(2, ignore_index=255)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 255  # the "foreground"
    meter.update(torch.zeros(1, 4, 4, dtype=torch.long), target)
    r = meter.compute()
    assert r["per_class_iou"][0] == 1.0 and math.isnan(r["per_class_iou"][1])  # null, never 1.0
    assert r["ignored_fraction"] == pytest.approx(4 / 16)  # and the report says what was ignored
    empty = SegmentationMeter(2, ignore_index=255)
    empty.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    r = empty.compute()
    assert math.isnan(r["mean_iou"]) and math.isnan(r["pixel_accuracy"])  # not 1.0, not 0.0
    assert all(math.isnan(v) for v in r["per_class_iou"]) and r["ignored_fraction"] == 1.0
    assert all(
        math.isnan(v) for v in SegmentationMeter(2).compute().values() if isinstance(v, float)
    )


def test_log_mean_exp_is_stable():
    x = torch.tensor([[-1000.0, -1000.0], [1000.0, 1000.0]])
    assert torch.allclose(log_mean_exp(x), torch.tensor([-1000.0, 1000.0]))


def test_is_with_q_equal_p_is_mc():
    log_lik, log_p = torch.randn(3, 50), torch.randn(3, 50)
    assert torch.allclose(
        importance_log_likelihood(log_lik, log_p, log_p), monte_carlo_log_likelihood(log_lik)
    )


def test_cnn_cll_is_minus_summed_cross_entropy(batch):
    x, y = batch
    model = create_model(tiny_config("cnn"), 3).eval()
    ll = conditional_log_likelihood(model, x, y)
    ce = F.cross_entropy(model.predict(x), y, ignore_index=255, reduction="none").flatten(1).sum(1)
    assert torch.allclose(ll, -ce, rtol=1e-5)


def test_model_is_estimate_with_prior_as_proposal_equals_mc(batch, monkeypatch):
    x, y = batch
    model = create_model(tiny_config("hybrid"), 3).eval()
    monkeypatch.setattr(model, "posterior", lambda ctx, y: ctx.prior)
    torch.manual_seed(1)
    is_est = conditional_log_likelihood(model, x, y, n_samples=20, method="is")
    torch.manual_seed(1)
    mc_est = conditional_log_likelihood(model, x, y, n_samples=20, method="mc")
    assert torch.allclose(is_est, mc_est)


def test_likelihood_is_chunk_invariant_and_bounded(batch):
    x, y = batch
    model = create_model(tiny_config("hybrid"), 3).eval()
    torch.manual_seed(2)
    a = conditional_log_likelihood(model, x, y, n_samples=12, chunk_size=5)
    torch.manual_seed(2)
    b = conditional_log_likelihood(model, x, y, n_samples=12, chunk_size=12)
    assert torch.allclose(a, b, rtol=1e-5)
    assert (a < 0).all() and a.shape == (2,)


def test_gsnn_is_falls_back_to_mc(batch):
    model = create_model(tiny_config("gsnn"), 3).eval()
    torch.manual_seed(0)
    a = conditional_log_likelihood(model, *batch, n_samples=4, method="is")
    torch.manual_seed(0)
    b = conditional_log_likelihood(model, *batch, n_samples=4, method="mc")
    assert torch.equal(a, b)


def test_pairwise_iou_and_empty_rule():
    a = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    iou = pairwise_iou(a, a, 2)
    assert iou.tolist() == [[1.0, 0.0], [0.0, 1.0]]  # empty vs empty = 1


def test_ged_zero_for_identical_sets_and_positive_otherwise():
    g = torch.tensor([[[1, 1], [0, 0]], [[0, 1], [0, 1]]])
    assert generalized_energy_distance(g, g, 2) == pytest.approx(0.0, abs=1e-6)
    collapsed = g[:1].repeat(2, 1, 1)
    assert generalized_energy_distance(collapsed, g, 2) > 0.1


def test_hungarian_iou_rewards_covering_every_mode():
    g = torch.tensor([[[1, 1], [0, 0]], [[0, 1], [0, 1]]])
    assert hungarian_matched_iou(g.flip(0), g, 2) == pytest.approx(1.0)
    assert hungarian_matched_iou(g[:1].repeat(2, 1, 1), g, 2) < 1.0


def test_precomputed_context_gives_the_same_estimate(batch):
    x, y = batch
    model = create_model(tiny_config("hybrid"), 3).eval()
    torch.manual_seed(3)
    a = conditional_log_likelihood(model, x, y, n_samples=6)
    ctx = model.encode(x)
    torch.manual_seed(3)
    b = conditional_log_likelihood(model, x, y, n_samples=6, ctx=ctx)
    assert torch.allclose(a, b)


def test_a_set_of_masks_is_scored_against_one_draw_of_samples(batch):
    """Monte Carlo and exact estimators score R masks against the same samples (each mask's
    estimate is the one it gets alone under the same seed); importance sampling draws per mask."""
    x, y = batch
    other = y.clone()
    other[:, :2] = 255  # a second mask with unlabelled rows
    pad = torch.full_like(y, 255)  # padding: nothing labelled, log-likelihood 0
    masks = torch.stack([y, other, pad], dim=1)  # (B, 3, H, W)
    model = create_model(tiny_config("hybrid"), 3).eval()
    for r in range(2):
        torch.manual_seed(4)
        alone = conditional_log_likelihood(model, x, masks[:, r], n_samples=6, method="mc")
        torch.manual_seed(4)
        together = conditional_log_likelihood(model, x, masks, n_samples=6, method="mc")
        assert together.shape == (2, 3)
        assert torch.allclose(together[:, r], alone, rtol=1e-5)
    assert torch.equal(together[:, 2], torch.zeros(2))
    torch.manual_seed(5)
    is_set = conditional_log_likelihood(model, x, masks[:, :2], n_samples=6, method="is")
    torch.manual_seed(5)
    is_each = [conditional_log_likelihood(model, x, masks[:, r], n_samples=6) for r in range(2)]
    assert torch.allclose(is_set, torch.stack(is_each, dim=1))
    assert torch.equal(conditional_log_likelihood(model, x, masks, 6, "is")[:, 2], torch.zeros(2))
    ragged = masks.clone()
    ragged[1, 2] = y[1]  # image 1 has a third mask, image 0 only padding there
    torch.manual_seed(6)
    is_ragged = conditional_log_likelihood(model, x, ragged, 6, "is")
    assert is_ragged[0, 2] == 0 and is_ragged[1, 2] != 0  # q's weights alone are not 0
    cnn = create_model(tiny_config("cnn"), 3).eval()
    exact = conditional_log_likelihood(cnn, x, masks[:, :2])
    assert torch.allclose(exact[:, 1], conditional_log_likelihood(cnn, x, other), rtol=1e-5)
