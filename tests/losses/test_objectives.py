"""Loss functions and objectives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segcvae.losses import (
    CategoricalObjective,
    DeterministicObjective,
    GaussianObjective,
    kl_mean,
    multiscale_nll,
    soft_cross_entropy,
    soft_targets,
)
from segcvae.models import build_objective, create_model, diagonal_gaussian
from segcvae.outputs import CNNOutput
from tests.conftest import tiny_config


def test_full_resolution_soft_ce_equals_cross_entropy(batch):
    _, y = batch
    logits = torch.randn(2, 3, 32, 32)
    terms = multiscale_nll([logits[..., ::4, ::4], logits[..., ::2, ::2], logits], y, [0, 0, 1])
    expected = F.cross_entropy(logits, y, ignore_index=255)
    assert torch.allclose(terms["nll_1"], expected, atol=1e-5)
    assert torch.allclose(terms["nll"], expected, atol=1e-5)


def test_coarse_targets_are_pooled_distributions(batch):
    _, y = batch
    t, valid = soft_targets(y, 3, (8, 8))
    assert t.shape == (2, 3, 8, 8)
    assert torch.allclose(t.sum(1), valid)
    assert valid[0, 0, 0] == pytest.approx(12 / 16)  # the 2x2 ignored corner in a 4x4 cell
    assert torch.all(valid[:, 1:, 1:] == 1)
    assert ((t > 0) & (t < 1)).any()  # fractions, not a nearest-neighbour resize


def test_kl_of_a_distribution_with_itself_is_zero():
    q = diagonal_gaussian(torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2))
    assert kl_mean(q, q).abs() < 1e-6
    p = diagonal_gaussian(torch.zeros(3, 4, 2, 2), torch.zeros(3, 4, 2, 2))
    assert kl_mean(q, p) > 0


def test_free_bits_floor_each_channel():
    q = diagonal_gaussian(torch.full((2, 4, 1, 1), 0.01), torch.zeros(2, 4, 1, 1))
    p = diagonal_gaussian(torch.zeros(2, 4, 1, 1), torch.zeros(2, 4, 1, 1))
    assert kl_mean(q, p, free_bits=0.5) == pytest.approx(4 * 0.5)
    assert kl_mean(q, p) == pytest.approx(4 * 0.5 * 0.01**2, rel=1e-3)


@pytest.mark.parametrize("alpha, same_as", [(1.0, "cvae"), (0.0, "gsnn")])
def test_hybrid_endpoints_equal_cvae_and_gsnn(batch, alpha, same_as):
    x, y = batch
    torch.manual_seed(0)
    out = create_model(tiny_config("hybrid"), 3)(x, y)
    hybrid = GaussianObjective("hybrid", alpha=alpha)(out, y)["loss"]
    other = GaussianObjective(same_as)(out, y)["loss"]
    assert torch.equal(hybrid, other)


def test_hybrid_is_the_alpha_mix(batch):
    x, y = batch
    out = create_model(tiny_config("hybrid"), 3)(x, y)
    cvae, gsnn = (
        GaussianObjective("cvae", y_hat_weight=0)(out, y),
        GaussianObjective("gsnn", y_hat_weight=0)(out, y),
    )
    hybrid = GaussianObjective("hybrid", alpha=0.3, y_hat_weight=0)(out, y)
    assert torch.allclose(hybrid["loss"], 0.3 * cvae["loss"] + 0.7 * gsnn["loss"])


def test_kl_warmup_is_linear():
    obj = GaussianObjective("cvae", beta=2.0, kl_warmup_steps=100)
    assert [obj.kl_weight(s) for s in (0, 50, 100, 500)] == [0.0, 1.0, 2.0, 2.0]


def test_terms_are_named_finite_and_scalar(batch):
    x, y = batch
    out = create_model(tiny_config("hybrid"), 3)(x, y)
    terms = build_objective(tiny_config("hybrid"))(out, y)
    assert {"loss", "nll", "kl", "nll_4", "nll_2", "nll_1", "nll_cvae", "nll_gsnn"} <= set(terms)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())


def test_cvae_objective_needs_the_posterior(batch):
    x, y = batch
    out = create_model(tiny_config("cvae"), 3)(x)  # no y: no posterior
    with pytest.raises(ValueError, match="posterior"):
        GaussianObjective("cvae")(out, y)


def test_each_family_picks_the_objective_of_its_latent_kind():
    kinds = {
        "cnn": DeterministicObjective,
        "refine_cnn": DeterministicObjective,
        "prob_unet": GaussianObjective,
    }
    for arch, cls in kinds.items():
        cfg = tiny_config("hybrid")
        cfg.model.arch = arch
        assert type(build_objective(cfg)) is cls, arch
    assert type(build_objective(tiny_config("hybrid", "spatial"))) is GaussianObjective
    assert type(build_objective(tiny_config("cvae", "categorical"))) is CategoricalObjective
    with pytest.raises(KeyError, match="unknown objective"):
        GaussianObjective("cnn")


def test_deterministic_objective_with_a_second_stage(batch):
    """The refined CNN's loss: its prediction's NLL plus y_hat_weight times y_hat's."""
    _, y = batch
    g = torch.Generator().manual_seed(0)
    scales = [(8, 8), (16, 16), (32, 32)]
    y_hat = [torch.randn(2, 3, *s, generator=g) for s in scales]
    refined = [torch.randn(2, 3, *s, generator=g) for s in scales]
    w = [1.0, 0.5, 2.0]
    plain = DeterministicObjective(scale_weights=w)(CNNOutput(y_hat), y)
    assert torch.equal(plain["loss"], multiscale_nll(y_hat, y, w)["nll"])
    two = DeterministicObjective(scale_weights=w, y_hat_weight=0.25)(CNNOutput(y_hat, refined), y)
    expected = multiscale_nll(refined, y, w)["nll"] + 0.25 * multiscale_nll(y_hat, y, w)["nll"]
    assert torch.allclose(two["loss"], expected)
    assert torch.equal(two["nll"], multiscale_nll(refined, y, w)["nll"])
    assert CNNOutput(y_hat, refined).logits is refined[-1]


def test_gaussian_objective_without_a_baseline_is_the_prob_unet_elbo(batch):
    """No y_hat (the Probabilistic U-Net): cross-entropy with z ~ q + beta * KL / (H W)."""
    x, y = batch
    cfg = tiny_config("hybrid")
    cfg.model.arch = "prob_unet"
    cfg.loss.beta = 3.0
    torch.manual_seed(0)
    out = create_model(cfg, 3)(x, y)
    terms = build_objective(cfg)(out, y, step=10**6)
    t, v = soft_targets(y, 3, (32, 32))
    expected = (
        soft_cross_entropy(out.logits, t, v) + 3.0 * kl_mean(out.posterior, out.prior) / 32**2
    )
    assert torch.allclose(terms["loss"], expected)
    assert "nll_y_hat" not in terms and terms["kl"] > 0


def test_wrong_scale_weights():
    with pytest.raises(ValueError, match="scale_weights"):
        multiscale_nll([torch.zeros(1, 2, 4, 4)], torch.zeros(1, 4, 4, dtype=torch.long), [1, 1])


# ------------------------------------------------ a set of masks per image (train.rater: all)
def _sets(y: torch.Tensor, m: int) -> torch.Tensor:
    """(B, H, W) -> (B, m, H, W): the labels and m - 1 variants (one class swapped per mask)."""
    out = [y]
    for i in range(1, m):
        v = y.clone()
        v[(y == i % 3)] = (i + 1) % 3
        out.append(v)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("objective", ["cvae", "gsnn", "hybrid"])
def test_a_set_of_masks_scores_as_the_images_repeated_once_per_mask(batch, objective):
    x, y = batch
    sets = _sets(y, 3)  # (2, 3, 32, 32)
    torch.manual_seed(0)
    model = create_model(tiny_config(objective, "categorical"), 3).eval()  # BN: fixed statistics
    loss_fn = CategoricalObjective(objective)
    one_pass = loss_fn(model(x, sets), sets)
    grads = torch.autograd.grad(one_pass["loss"], list(model.parameters()), allow_unused=True)
    repeated = loss_fn(model(x.repeat_interleave(3, dim=0), sets.flatten(0, 1)), sets.flatten(0, 1))
    expected = torch.autograd.grad(repeated["loss"], list(model.parameters()), allow_unused=True)
    for key, value in repeated.items():
        assert torch.allclose(one_pass[key], value, rtol=1e-4, atol=1e-6), key
    for g, e in zip(grads, expected, strict=True):
        assert (g is None) == (e is None)
        if g is not None:
            assert torch.allclose(g, e, rtol=1e-3, atol=1e-6)


def test_a_set_of_one_mask_is_the_mask_and_padding_masks_count_for_nothing(batch):
    x, y = batch
    torch.manual_seed(0)
    model = create_model(tiny_config("cvae", "categorical"), 3).eval()
    loss_fn = CategoricalObjective("cvae")
    plain = loss_fn(model(x, y), y)
    as_set = loss_fn(model(x, y[:, None]), y[:, None])
    padded = torch.cat([y[:, None], torch.full_like(y[:, None], 255)], dim=1)  # a padded rater
    with_padding = loss_fn(model(x, padded), padded)
    for key, value in plain.items():
        assert torch.allclose(as_set[key], value, rtol=1e-5, atol=1e-7), key
        assert torch.allclose(with_padding[key], value, rtol=1e-5, atol=1e-7), key


def test_a_set_of_masks_needs_a_categorical_latent(batch):
    x, y = batch
    model = create_model(tiny_config("cvae", "spatial"), 3)
    assert not model.scores_target_sets
    with pytest.raises(ValueError, match="labels for a spatial latent"):
        model(x, _sets(y, 2))
    out = model(x, y)
    with pytest.raises(ValueError, match="one mask per image"):
        GaussianObjective("cvae")(out, _sets(y, 2))
    with pytest.raises(ValueError, match="code_logits"):
        CategoricalObjective("cvae")(out, y)
