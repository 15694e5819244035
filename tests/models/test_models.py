"""Shapes, gradient flow, sampling behaviour and robustness of every model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segcvae.config import ConfigError
from segcvae.models import BaselineCNN, SegCVAE, build_objective, create_model, systematic_draws
from tests.conftest import tiny_config


class BaseModelTester:
    """Generic checks; a subclass names the objective and latent type (smp's BaseModelTester)."""

    objective = "hybrid"
    latent = "spatial"
    generation = "quarter"

    def config(self):
        cfg = tiny_config(self.objective, self.latent)
        cfg.model.generation = self.generation
        return cfg

    def model(self, seed: int = 0):
        torch.manual_seed(seed)
        return create_model(self.config(), num_classes=3)

    def test_shapes_at_every_scale(self, batch):
        x, y = batch
        out = self.model()(x, y)
        for s, logits in zip((4, 2, 1), out.y_hat, strict=True):
            assert logits.shape == (2, 3, 32 // s, 32 // s)
        assert out.logits.shape == (2, 3, 32, 32)
        paths = ("logits_prior", "logits_posterior", "refined")
        for path in (getattr(out, p, None) for p in paths):
            if path is not None:
                assert [tuple(t.shape) for t in path] == [
                    (2, 3, 8, 8),
                    (2, 3, 16, 16),
                    (2, 3, 32, 32),
                ]

    def test_loss_backward_reaches_every_network(self, batch):
        x, y = batch
        model = self.model()
        terms = build_objective(self.config())(model(x, y), y)
        assert torch.isfinite(terms["loss"])
        terms["loss"].backward()
        nets = {"baseline": model}
        if isinstance(model, SegCVAE):
            nets = {n: getattr(model, n) for n in ("baseline", "prior_net", "generation_net")}
            if model.recognition_net is not None:
                nets["recognition_net"] = model.recognition_net
        for name, net in nets.items():
            grads = [p.grad for p in net.parameters()]
            assert any(g is not None and g.abs().sum() > 0 for g in grads), name

    def test_deterministic_prediction_is_repeatable(self, batch):
        model = self.model().eval()
        x, _ = batch
        assert torch.equal(model.predict(x), model.predict(x))

    def test_sample_shape(self, batch):
        model = self.model().eval()
        assert model.sample(batch[0], 5).shape == (2, 5, 3, 32, 32)

    def test_no_state_kept_between_calls(self, batch):
        model = self.model()
        before = set(vars(model))
        model(*batch)
        assert set(vars(model)) == before


class TestCNN(BaseModelTester):
    objective = "cnn"


class TestGSNN(BaseModelTester):
    objective = "gsnn"


class TestCVAE(BaseModelTester):
    objective = "cvae"


class TestHybrid(BaseModelTester):
    objective = "hybrid"


class TestHybridGlobalLatent(BaseModelTester):
    objective = "hybrid"
    latent = "global"


class TestHybridFullResolutionGeneration(BaseModelTester):
    objective = "hybrid"
    generation = "full"


class TestCVAECategorical(BaseModelTester):
    objective = "cvae"
    latent = "categorical"
    generation = "full"


class TestCVAECategoricalSharedHead(BaseModelTester):  # z enters after a per-image layer
    objective = "cvae"
    latent = "categorical"
    generation = "full"

    def config(self):
        cfg = super().config()
        cfg.model.shared_head_layers = 1
        cfg.model.code_channels = 8
        return cfg


class TestHybridSpatialSharedHead(BaseModelTester):
    objective = "hybrid"

    def config(self):
        cfg = super().config()
        cfg.model.shared_head_layers = 1
        return cfg


class TestHybridCategorical(BaseModelTester):
    objective = "hybrid"
    latent = "categorical"


class TestGSNNCategorical(BaseModelTester):
    objective = "gsnn"
    latent = "categorical"


class TestHybridRefine(BaseModelTester):
    objective = "hybrid"
    generation = "refine"


class TestCNNRefine(BaseModelTester):  # the refinement experiment's no-latent control
    objective = "cnn"
    generation = "refine"


class TestCVAECategoricalRefine(BaseModelTester):
    objective = "cvae"
    latent = "categorical"
    generation = "refine"


def test_model_types_follow_objective():
    assert isinstance(create_model(tiny_config("cnn"), 3), BaselineCNN)
    assert create_model(tiny_config("gsnn"), 3).recognition_net is None
    assert create_model(tiny_config("cvae"), 3).recognition_net is not None


def test_hypotheses_differ(batch):
    torch.manual_seed(0)
    model = create_model(tiny_config("hybrid"), 3).eval()
    s = model.sample(batch[0], 4)
    assert not torch.allclose(s[:, 0], s[:, 1])


def test_global_latent_is_one_vector_per_image(batch):
    model = create_model(tiny_config("hybrid", "global"), 3)
    out = model(*batch)
    assert out.prior.event_shape == (4, 1, 1)


def test_log_variance_is_bounded_under_extreme_inputs(batch):
    model = create_model(tiny_config("hybrid"), 3)
    out = model(batch[0] * 1e4, batch[1])
    for dist in (out.prior, out.posterior):
        logvar = 2 * dist.base_dist.scale.log()
        assert logvar.min() >= -10 - 1e-4 and logvar.max() <= 4 + 1e-4


def test_long_random_training_stays_finite():
    torch.manual_seed(0)
    cfg = tiny_config("hybrid")
    model = create_model(cfg, 3)
    objective = build_objective(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        x = torch.randn(2, 3, 32, 32) * (1 + 10 * (step % 3))
        y = torch.randint(0, 3, (2, 32, 32))
        terms = objective(model(x, y), y, step)
        assert all(torch.isfinite(v) for v in terms.values()), (step, terms)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v2", "tu-test_resnet"])
def test_any_smp_encoder(encoder, batch):
    cfg = tiny_config("hybrid")
    cfg.model.encoder_name = encoder
    out = create_model(cfg, 3)(*batch)
    assert out.logits.shape == (2, 3, 32, 32)


def test_wrong_encoder_name_lists_valid_names():
    cfg = tiny_config("cnn")
    cfg.model.encoder_name = "resnet_does_not_exist"
    with pytest.raises(KeyError, match="resnet18"):
        create_model(cfg, 3)


def test_unknown_objective():
    from segcvae.config import ConfigError

    with pytest.raises(ConfigError, match="cvae, gsnn or hybrid"):
        create_model(tiny_config("vae"), 3)


def test_image_size_must_fit_encoder_depth():
    model = create_model(tiny_config("cnn"), 3)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(1, 3, 40, 40))


def test_prior_sees_y_hat_even_with_a_dead_learned_branch(batch):
    """The direct pooled path keeps p(z|x, y_hat) a function of y_hat if ``label_net`` outputs 0."""
    model = create_model(tiny_config("hybrid"), 3)
    ctx = model.encode(batch[0])
    with torch.no_grad():
        for module in model.prior_net.label_net:
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                module.bias.fill_(-1.0)  # every unit on the flat side, as a dead ReLU would be
        y_hat = ctx.y_hat[-1]
        a = model.prior_net(ctx.features, y_hat).mean
        b = model.prior_net(ctx.features, torch.roll(y_hat, 1, dims=1)).mean
    assert not torch.allclose(a, b, atol=1e-6)


def _categorical_model(objective: str = "cvae"):
    torch.manual_seed(0)
    cfg = tiny_config(objective, "categorical")
    cfg.model.generation = "full"
    return cfg, create_model(cfg, 3)


@pytest.mark.parametrize("inject", ["full", "quarter"])
def test_a_shared_head_layer_is_computed_once_and_z_enters_after_it(inject):
    """shared_layers=1: logits = y_hat + conv2(relu(conv1(relu(project(f))) + embed(z))), the
    pixel-block path (a global z at full resolution) and the convolution path alike."""
    from segcvae.models import GenerationNet

    torch.manual_seed(0)
    net = GenerationNet(6, 3, 4, hidden_channels=8, inject=inject, shared_layers=1, code_channels=5)
    feature, z = torch.randn(2, 6, 8, 8), torch.randn(2, 3, 3, 1, 1)
    y_hat = [torch.randn(2, 4, 2, 2), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 8, 8)]
    ctx = net.context(feature)
    assert ctx.shape == (2, 5, 8, 8)  # the first hidden layer, once per image
    got = net(ctx, z, y_hat, full_only=True)[-1]  # (2, 3, 4, 8, 8)
    shared = net.head[1](torch.relu(net.project(feature)))
    for s in range(3):
        h = torch.relu(shared + net.embed_z(z[:, s]))
        delta = net.head[3](h)
        if inject == "quarter":  # the quarter head's output is resized to each scale
            delta = F.interpolate(delta, size=(8, 8), mode="bilinear", align_corners=False)
        torch.testing.assert_close(got[:, s], y_hat[-1] + delta, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="code_channels needs shared_layers=1"):
        GenerationNet(6, 3, 4, code_channels=5)


def test_full_generation_coarse_scales_are_pooled_full_logits(batch):
    torch.manual_seed(0)
    cfg = tiny_config("hybrid", "global")
    cfg.model.generation = "full"
    model = create_model(cfg, 3)
    out = model(*batch)
    full = out.logits_prior[-1]
    assert torch.allclose(out.logits_prior[1], F.avg_pool2d(full, 2), atol=1e-5)
    assert torch.allclose(out.logits_prior[0], F.avg_pool2d(full, 4), atol=1e-5)


def test_categorical_objective_is_the_exact_expectation_over_codes(batch):
    from segcvae.losses._functional import multiscale_nll

    cfg, model = _categorical_model("cvae")
    cfg.loss.code_posterior = "recognition"
    x, y = batch[0][:1], batch[1][:1]  # one image: per-image and batch pixel means coincide
    out = model.eval()(x, y)  # eval: batch norm cannot train on one image
    terms = build_objective(cfg)(out, y)
    q = out.posterior.probs[0]  # (Z,)
    per_code = [
        multiscale_nll([scale[:, c] for scale in out.code_logits], y, [1.0, 1.0, 1.0])["nll"]
        for c in range(q.shape[0])
    ]
    expected = (q * torch.stack(per_code)).sum()
    assert torch.allclose(terms["nll_cvae"], expected, atol=1e-5)
    kl = torch.distributions.kl_divergence(out.posterior, out.prior).mean() / (32 * 32)
    assert torch.allclose(terms["kl"], kl, atol=1e-7)


def test_categorical_likelihood_and_mean_prediction_are_exact(batch):
    from segcvae.metrics import conditional_log_likelihood, label_log_likelihood

    _, model = _categorical_model("hybrid")
    model.eval()
    x, y = batch
    with torch.no_grad():
        ctx = model.encode(x)
        codes = model.all_codes(ctx)  # (B, Z, Z, 1, 1)
        logits = model.generate(ctx, codes)[-1]  # (B, Z, K, H, W)
        p = ctx.prior.probs  # (B, Z)
        brute = torch.stack(
            [
                (p[b].log() + label_log_likelihood(logits[b : b + 1], y[b : b + 1])[0]).logsumexp(0)
                for b in range(x.shape[0])
            ]
        )
        for method in ("is", "mc"):
            ll = conditional_log_likelihood(model, x, y, 3, method)
            assert torch.allclose(ll, brute, rtol=1e-5)
        mean = (p[:, :, None, None, None] * logits.softmax(2)).sum(1)
        assert torch.allclose(model.decode_mean(ctx).softmax(1), mean, atol=1e-5)


def test_categorical_hypotheses_are_codes_drawn_from_the_prior(batch):
    _, model = _categorical_model("cvae")
    model.eval()
    with torch.no_grad():
        ctx = model.encode(batch[0])
        hyps = model.decode_samples(ctx, 64)  # (B, 64, K, H, W)
        decoded = model.generate(ctx, model.all_codes(ctx), True)[-1]  # (B, Z, K, H, W)
    # every hypothesis is exactly one code's decoding
    d = (hyps[:, :, None] - decoded[:, None]).abs().flatten(3).amax(-1)  # (B, 64, Z)
    assert bool((d.min(-1).values < 1e-5).all())


@pytest.mark.parametrize("sampling", ["systematic", "independent"])
def test_categorical_hypothesis_counts_follow_the_prior(batch, sampling):
    cfg, _ = _categorical_model("cvae")
    cfg.model.code_sampling = sampling
    torch.manual_seed(0)
    model = create_model(cfg, 3).eval()
    n = 24
    with torch.no_grad():
        ctx = model.encode(batch[0])
        decoded = model.decode_codes(ctx)  # (B, Z, K, H, W)
        totals = torch.zeros(2, model.latent_channels)
        spread = 0.0
        for _ in range(40):
            hyps = model.decode_samples(ctx, n)
            d = (hyps[:, :, None] - decoded[:, None]).abs().flatten(3).amax(-1)  # (B, n, Z)
            counts = torch.nn.functional.one_hot(d.argmin(-1), model.latent_channels).sum(1)
            expected = n * ctx.prior.probs
            if sampling == "systematic":  # every code floor(n p) or ceil(n p) times
                assert bool(((counts - expected).abs() < 1 + 1e-4).all())
            spread = max(spread, float((counts - expected).abs().max()))
            totals += counts
    assert torch.allclose(totals / 40, n * ctx.prior.probs, atol=0.75)  # unbiased on average
    if sampling == "independent":
        assert spread > 1  # independent draws do stray further


def test_systematic_draws_never_pick_an_impossible_code():
    probs = torch.tensor([[0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    idx = systematic_draws(probs, 7)
    assert idx.shape == (2, 7)
    assert set(idx[0].tolist()) == {0, 2} and set(idx[1].tolist()) == {3}
    counts = torch.bincount(idx[0], minlength=4)
    assert counts[0] in (3, 4) and counts[0] + counts[2] == 7


def test_exact_code_posterior_trains_on_the_exact_log_likelihood(batch):
    from segcvae.metrics.likelihood import conditional_log_likelihood

    cfg, model = _categorical_model("cvae")
    cfg.loss.scale_weights = [0.0, 0.0, 1.0]  # full resolution only: the energy is -log p(y|x,c)
    cfg.loss.y_hat_weight = 0.0
    model.eval()
    x, y = batch
    terms = build_objective(cfg)(model(x, y), y)
    labelled = ((y >= 0) & (y < 3)).flatten(1).sum(1).float()
    exact = conditional_log_likelihood(model, x, y, 1, "is")  # (B,) exact for a categorical z
    expected = -(exact / labelled).mean()
    assert torch.allclose(terms["loss"] - terms["kl_recognition"], expected, rtol=1e-4)
    assert terms["kl"] >= 0 and terms["kl_recognition"] >= 0


@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_a_tempered_code_posterior_is_an_elbo_above_the_exact_nll(batch, temperature):
    """T < 1: q = r_T (T = 0: the one best code per mask), a bound on -log p(y | x) that the
    exact form meets; at T = 0 the loss is the best code's NLL plus -log p(best code | x)."""
    from segcvae.metrics.likelihood import conditional_log_likelihood

    cfg, model = _categorical_model("cvae")
    cfg.loss.scale_weights = [0.0, 0.0, 1.0]
    cfg.loss.y_hat_weight = 0.0
    model.eval()
    x, y = batch
    out = model(x, y)
    cfg.loss.code_temperature = temperature
    terms = build_objective(cfg)(out, y)
    labelled = ((y >= 0) & (y < 3)).flatten(1).sum(1).float()
    exact = -(conditional_log_likelihood(model, x, y, 1, "is") / labelled).mean()
    tempered = terms["loss"] - terms["kl_recognition"]
    assert tempered > exact  # a looser bound: q is not the exact posterior
    if temperature == 0.0:
        nll_c = torch.stack(
            [F.cross_entropy(out.code_logits[-1][:, c], y, ignore_index=255, reduction="none")
             .flatten(1).sum(1) for c in range(out.code_logits[-1].shape[1])], dim=1,
        )  # (B, Z) nats per image  # fmt: skip
        log_prior = out.prior.logits.log_softmax(-1)
        best = (nll_c - log_prior).min(1).values  # -log p(y, c* | x)
        assert torch.allclose(tempered, (best / labelled).mean(), rtol=1e-4)
    loss = terms["loss"]
    loss.backward()  # the prior and every code's decoder get gradients
    assert all(p.grad is not None for p in model.prior_net.parameters())


def test_code_temperature_is_checked():
    cfg = tiny_config("cvae", "categorical")
    cfg.loss.code_temperature = 1.5
    with pytest.raises(ConfigError, match="loss.code_temperature"):
        cfg.validate()
    cfg.loss.code_temperature = 0.5
    cfg.loss.code_posterior = "recognition"
    with pytest.raises(ConfigError, match="loss.code_temperature"):
        cfg.validate()


def test_categorical_inference_decodes_the_codes_once_per_batch(batch, monkeypatch):
    """The mean prediction, any number of hypotheses and the exact likelihood share one decoding
    of the Z codes; training (autograd) never reuses it."""
    from segcvae.metrics.likelihood import conditional_log_likelihood

    _, model = _categorical_model("cvae")
    model.eval()
    x, y = batch
    calls = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    with torch.no_grad():
        ctx = model.encode(x)
        model.decode_mean(ctx)
        hyps = model.decode_samples(ctx, 100)
        conditional_log_likelihood(model, x, y, 50, "is", ctx=ctx)
    assert len(calls) == 1 and hyps.shape[1] == 100
    with torch.no_grad():  # fewer draws than codes on a fresh context: only the drawn ones
        few = model.decode_samples(model.encode(x), 2)
    assert few.shape[1] == 2 and len(calls) == 2
    ctx = model.encode(x)
    model.decode_codes(ctx)
    assert ctx.code_logits is None  # under autograd nothing is kept
