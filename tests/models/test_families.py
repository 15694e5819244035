"""The Probabilistic U-Net and SSN behind the common interface: shapes, training, losses, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segcvae.api import Predictor
from segcvae.config import Config
from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from segcvae.losses import monte_carlo_nll
from segcvae.metrics import conditional_log_likelihood, negative_log_likelihoods
from segcvae.models import (
    SSN,
    BaselineCNN,
    DeterministicModel,
    ProbUNet,
    SegCVAE,
    build_objective,
    create_model,
)
from segcvae.registry import family_names
from tests.conftest import tiny_config


def family_config(arch: str) -> Config:
    cfg = tiny_config()
    cfg.model.arch = arch
    cfg.model.ssn.mc_samples = 8
    if arch == "sohn_categorical":  # tiny_config's latent is a spatial Gaussian
        cfg.model.latent, cfg.loss.objective = "categorical", "cvae"
    return cfg


class FamilyTester:
    """Generic checks every registered family passes (``arch`` is each ``family_names()``)."""

    # families whose likelihood draws its samples chunk by chunk (memory), so the draws differ
    CHUNK_VARIANT = ("ssn",)

    @pytest.fixture(autouse=True, params=family_names())
    def _arch(self, request):
        self.arch = request.param
        self.chunk_invariant = self.arch not in self.CHUNK_VARIANT

    def model(self, seed: int = 0):
        torch.manual_seed(seed)
        return create_model(family_config(self.arch), num_classes=3)

    def test_shapes(self, batch):
        x, y = batch
        model = self.model()
        assert model(x, y).logits.shape == (2, 3, 32, 32)
        ctx = model.encode(x)
        assert model.decode_mean(ctx).shape == (2, 3, 32, 32)
        assert model.decode_samples(ctx, 5).shape == (2, 5, 3, 32, 32)
        assert model.sample(x, 5).shape == (2, 5, 3, 32, 32)

    def test_hypotheses_differ_and_prediction_is_repeatable(self, batch):
        """A latent family's hypotheses differ (in eval mode too); a deterministic one's are its
        prediction repeated. The prediction is the same twice."""
        model = self.model().eval()
        s = model.sample(batch[0], 4)
        assert torch.allclose(s[:, 0], s[:, 1]) == isinstance(model, DeterministicModel)
        assert torch.equal(model.predict(batch[0]), model.predict(batch[0]))

    def test_loss_reaches_every_parameter(self, batch):
        """DDP runs with find_unused_parameters=False: no parameter may be left out of the loss."""
        x, y = batch
        model = self.model()
        terms = build_objective(family_config(self.arch))(model(x, y), y)
        assert all(torch.isfinite(v) for v in terms.values())
        terms["loss"].backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing

    def test_trains_a_few_steps(self, batch):
        x, y = batch
        model = self.model()
        objective = build_objective(family_config(self.arch))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for step in range(12):
            loss = objective(model(x, y), y, step)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert all(math.isfinite(v) for v in losses)
        assert np.mean(losses[-3:]) < np.mean(losses[:3])

    def test_no_state_kept_between_calls(self, batch):
        model = self.model()
        before = set(vars(model))
        model(*batch)
        assert set(vars(model)) == before

    def test_likelihood_is_finite_negative_and_chunk_invariant(self, batch):
        x, y = batch
        model = self.model().eval()
        torch.manual_seed(2)
        a = conditional_log_likelihood(model, x, y, n_samples=7, chunk_size=3)
        torch.manual_seed(2)
        b = conditional_log_likelihood(model, x, y, n_samples=7, chunk_size=7)
        assert a.shape == (2,) and (a < 0).all() and torch.isfinite(a).all()
        if self.chunk_invariant:
            assert torch.allclose(a, b, rtol=1e-5)

    def test_checkpoint_round_trip_and_predict(self, batch, tmp_path: Path):
        cfg = family_config(self.arch)
        model = self.model().eval()
        meta = {"num_classes": 3, "class_names": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3}
        save_checkpoint(tmp_path / "m.pt", model=model, step=1, config=cfg.to_dict(), meta=meta)
        rebuilt, cfg2 = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
        assert type(rebuilt) is type(model) and cfg2.model.arch == self.arch
        assert torch.equal(rebuilt.predict(batch[0]), model.predict(batch[0]))
        image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        pred = Predictor.from_checkpoint(tmp_path / "m.pt")(image, samples=3, seed=0)
        assert pred.mask.shape == (40, 50) and pred.hypotheses.shape == (3, 40, 50)
        assert pred.mask.max() < 3 and np.isfinite(pred.entropy).all()


class TestEveryFamily(FamilyTester):
    pass


def test_registry_picks_the_family():
    assert isinstance(create_model(family_config("prob_unet"), 3), ProbUNet)
    assert isinstance(create_model(family_config("ssn"), 3), SSN)
    assert isinstance(create_model(tiny_config("cnn"), 3), BaselineCNN)
    assert isinstance(create_model(tiny_config("hybrid"), 3), SegCVAE)
    cfg = family_config("ssn")
    cfg.model.arch = "unet++"  # bypassing the config loader, which already rejects it
    from segcvae.config import ConfigError

    with pytest.raises(ConfigError, match="prob_unet"):
        create_model(cfg, 3)


def test_unknown_arch_is_rejected_when_the_config_loads():
    from segcvae.config import ConfigError

    with pytest.raises(ConfigError, match="prob_unet"):
        Config.from_yaml(None, ["model.arch=punet"])


# ---------------------------------------------------------------------------- Probabilistic U-Net
def test_prob_unet_kl_equals_the_closed_form(batch):
    x, y = batch
    torch.manual_seed(0)
    cfg = family_config("prob_unet")
    out = create_model(cfg, 3)(x, y)
    terms = build_objective(cfg)(out, y)
    q, p = out.posterior.base_dist, out.prior.base_dist
    assert q.loc.shape == (2, 6)
    vq, vp = q.scale**2, p.scale**2
    kl = 0.5 * (vp.log() - vq.log() + (vq + (q.loc - p.loc) ** 2) / vp - 1).sum(1)  # (B,)
    assert torch.allclose(terms["kl"] * 32 * 32, kl.mean(), rtol=1e-4)
    assert terms["kl"] > 0
    nll = F.cross_entropy(out.logits, y, ignore_index=255)
    assert torch.allclose(terms["nll"], nll, rtol=1e-5)
    assert torch.allclose(terms["loss"], nll + terms["kl"], rtol=1e-5)  # beta = 1, no warm-up


def test_prob_unet_fcomb_equals_convolutions_of_the_concatenation():
    torch.manual_seed(0)
    model = create_model(family_config("prob_unet"), 3)
    fcomb = model.fcomb
    feature = torch.randn(2, fcomb.feature_channels, 8, 8)
    z = torch.randn(2, 3, 6)
    fast = fcomb(fcomb.context(feature), z)  # (B, S, K, H, W)
    for s in range(3):
        zmap = z[:, s, :, None, None].expand(-1, -1, 8, 8)
        h = fcomb.first(torch.cat([feature, zmap], dim=1))
        assert torch.allclose(fast[:, s], fcomb.rest(h), atol=1e-5)


def test_prob_unet_samples_rerun_only_fcomb(batch, monkeypatch):
    model = create_model(family_config("prob_unet"), 3).eval()
    ctx = model.encode(batch[0])

    def fail(*args, **kwargs):
        raise AssertionError("the U-Net or a Gaussian net ran again")

    for net in (model.unet, model.prior_net, model.recognition_net):
        monkeypatch.setattr(net, "forward", fail)
    monkeypatch.setattr(model.unet, "features", fail)
    assert model.decode_samples(ctx, 4).shape == (2, 4, 3, 32, 32)


def test_prob_unet_log_variance_is_bounded(batch):
    model = create_model(family_config("prob_unet"), 3)
    out = model(batch[0] * 1e4, batch[1])
    for dist in (out.prior, out.posterior):
        logvar = 2 * dist.base_dist.scale.log()
        assert logvar.min() >= -10 - 1e-4 and logvar.max() <= 4 + 1e-4


def test_prob_unet_is_with_the_prior_as_proposal_equals_mc(batch, monkeypatch):
    x, y = batch
    model = create_model(family_config("prob_unet"), 3).eval()
    assert model.likelihood_methods == ("is", "mc")
    monkeypatch.setattr(model, "posterior", lambda ctx, y: ctx.prior)
    torch.manual_seed(1)
    a = conditional_log_likelihood(model, x, y, n_samples=9, method="is")
    torch.manual_seed(1)
    b = conditional_log_likelihood(model, x, y, n_samples=9, method="mc")
    assert torch.allclose(a, b)


def test_prob_unet_objective_needs_the_posterior(batch):
    cfg = family_config("prob_unet")
    out = create_model(cfg, 3)(batch[0])
    with pytest.raises(ValueError, match="posterior"):
        build_objective(cfg)(out, batch[1])


# -------------------------------------------------------------------------------------------- SSN
def test_ssn_loss_equals_a_hand_computed_value():
    """-log((1/M) sum_m prod_pixels p(y | logits_m)) / labelled pixels, by products of probabilities."""
    logits = torch.tensor(
        [  # M = 2 samples of a 2-class, 1x2 image
            [[[0.0, 1.0]], [[1.0, 0.0]]],
            [[[2.0, 0.0]], [[0.0, 0.0]]],
        ]
    ).unsqueeze(0)  # (1, 2, 2, 1, 2)
    y = torch.tensor([[[1, 0]]])
    s = 1 / (1 + math.e)  # softmax of (0, 1) at its first entry
    p1 = (1 - s) * (1 - s)  # sample 1: p(class 1 | (0, 1)) * p(class 0 | (1, 0))
    p2 = (1 / (1 + math.e**2)) * 0.5  # sample 2: p(class 1 | (2, 0)) * p(class 0 | (0, 0))
    expected = -math.log((p1 + p2) / 2) / 2
    assert monte_carlo_nll(logits, y).item() == pytest.approx(expected, rel=1e-6)
    y_ignored = torch.tensor([[[1, 255]]])  # one labelled pixel: only its probabilities count
    expected = -math.log(((1 - s) + 1 / (1 + math.e**2)) / 2) / 1
    assert monte_carlo_nll(logits, y_ignored).item() == pytest.approx(expected, rel=1e-6)


def test_ssn_loss_is_stable_for_confident_wrong_samples():
    logits = torch.zeros(1, 3, 2, 8, 8)
    logits[:, :, 1] = 200.0  # every sample is sure of class 1
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    loss = monte_carlo_nll(logits, y)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0, rel=1e-4)


def test_ssn_objective_on_the_model_is_the_monte_carlo_nll_of_its_samples(batch):
    x, y = batch
    torch.manual_seed(0)
    cfg = family_config("ssn")
    out = create_model(cfg, 3)(x, y)
    assert out.logit_samples.shape == (2, 8, 3, 32, 32)
    per_image = []  # an explicit loop over images and samples
    for b in range(2):
        valid = y[b] != 255
        ll = torch.stack(
            [
                -F.cross_entropy(out.logit_samples[b, m][None], y[b][None], ignore_index=255)
                * valid.sum()
                for m in range(8)
            ]
        )
        per_image.append(-(torch.logsumexp(ll, 0) - math.log(8)) / valid.sum())
    terms = build_objective(cfg)(out, y)
    assert torch.allclose(terms["loss"], torch.stack(per_image).mean(), rtol=1e-5)


def test_ssn_samples_have_the_predicted_mean_and_variance(batch):
    torch.manual_seed(0)
    model = create_model(family_config("ssn"), 3).eval()
    with torch.no_grad():
        ctx = model.encode(batch[0][:1])
        samples = model.decode_samples(ctx, 3000)  # (1, S, K, H, W)
    dist = ctx.distribution
    var = (dist.cov_factor**2).sum(-1) + dist.cov_diag  # (1, K*H*W)
    assert dist.cov_factor.shape == (1, 3 * 32 * 32, 10)
    assert torch.allclose(samples.mean(1), model.decode_mean(ctx), atol=4 * var.max().sqrt() / 50)
    rel = (samples.var(1).flatten(1) / var - 1).abs()
    assert rel.mean() < 0.05


def test_ssn_diagonal_is_floored_and_bounded(batch):
    cfg = family_config("ssn")
    model = create_model(cfg, 3)
    d = model.encode(batch[0] * 1e4).distribution.cov_diag
    assert d.min() >= cfg.model.ssn.epsilon and d.max() <= math.exp(4) + 1e-3


def test_ssn_reports_one_estimator_and_it_equals_the_mc_estimate(batch):
    x, y = batch
    model = create_model(family_config("ssn"), 3).eval()
    assert model.likelihood_methods == ("mc",)
    torch.manual_seed(0)
    nll = negative_log_likelihoods(model, x, y, n_samples=5)
    assert torch.equal(nll["nll"], nll["nll_mc"])
    torch.manual_seed(0)
    assert torch.equal(conditional_log_likelihood(model, x, y, 5, "is"), -nll["nll"])


def test_ssn_samples_are_the_distributions_own_draws():
    """The hand-written sampler draws what LowRankMultivariateNormal.sample draws (same seed)."""
    from torch.distributions import LowRankMultivariateNormal

    from segcvae.models.ssn import SSNContext

    g = torch.Generator().manual_seed(0)
    loc, factor = torch.randn(2, 60, generator=g), torch.randn(2, 60, 4, generator=g)
    dist = LowRankMultivariateNormal(loc, factor, torch.rand(2, 60, generator=g) + 0.1)
    ctx = SSNContext(dist.loc, dist.cov_factor, dist.cov_diag, shape=(3, 4, 5))
    torch.manual_seed(3)
    ours = ctx.sample(7)
    torch.manual_seed(3)
    theirs = dist.sample((7,)).transpose(0, 1).unflatten(-1, (3, 4, 5))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not ours.requires_grad
