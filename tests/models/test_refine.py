"""The refinement stage (generation="refine") and its no-latent control, RefinedCNN."""

from __future__ import annotations

import pytest
import torch

from segcvae.losses._functional import multiscale_nll
from segcvae.metrics import conditional_log_likelihood
from segcvae.models import RefinedCNN, RefineNet, SegCVAE, build_objective, create_model
from tests.conftest import tiny_config


def _y_hat(b: int = 2, k: int = 3, size: int = 16) -> list[torch.Tensor]:
    return [torch.randn(b, k, size // s, size // s) for s in (4, 2, 1)]


def test_refine_net_shapes_and_image_only_context() -> None:
    torch.manual_seed(0)
    net = RefineNet(feature_channels=5, latent_channels=4, classes=3, width=4)
    y_hat = _y_hat()
    ctx = net.context(torch.randn(2, 5, 16, 16), y_hat[-1])
    assert [tuple(t.shape) for t in ctx.skips] == [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)]
    z = torch.randn(2, 3, 4, 2, 2)  # a spatial z map, upsampled to stride 4
    out = net(ctx, z, y_hat)
    assert [tuple(t.shape) for t in out] == [(2, 3, 3, 4, 4), (2, 3, 3, 8, 8), (2, 3, 3, 16, 16)]
    full = net(ctx, z, y_hat, full_only=True)
    assert len(full) == 1 and torch.allclose(full[0], out[-1], atol=1e-6)
    # equal z, equal output; another z, another output (z reaches the refined logits)
    same = net(ctx, z[:, :1].expand(-1, 2, -1, -1, -1), y_hat, full_only=True)[0]
    assert torch.allclose(same[:, 0], same[:, 1])
    assert not torch.allclose(full[0][:, 0], full[0][:, 1])
    # a global z (1x1) is broadcast
    assert net(ctx, torch.randn(2, 5, 4, 1, 1), y_hat)[-1].shape == (2, 5, 3, 16, 16)


def test_refine_net_is_a_correction_of_y_hat() -> None:
    net = RefineNet(feature_channels=5, latent_channels=0, classes=3, width=4)
    for head in net.heads:
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    y_hat = _y_hat()
    out = net(net.context(torch.randn(2, 5, 16, 16), y_hat[-1]), None, y_hat, samples=3)
    for o, y in zip(out, y_hat, strict=True):
        assert o.shape[1] == 3 and torch.equal(o[:, 2], y)


def test_refine_net_latent_mismatch_is_an_error() -> None:
    y_hat = _y_hat()
    with_z = RefineNet(5, 4, 3, width=4)
    ctx = with_z.context(torch.randn(2, 5, 16, 16), y_hat[-1])
    with pytest.raises(ValueError, match="pass z"):
        with_z(ctx, None, y_hat)
    without = RefineNet(5, 0, 3, width=4)
    with pytest.raises(ValueError, match="without a latent"):
        without(without.context(torch.randn(2, 5, 16, 16), y_hat[-1]), torch.randn(2, 1, 4), y_hat)
    with pytest.raises(ValueError, match="width"):
        RefineNet(5, 4, 3, width=0)


def _model(objective: str, latent: str = "spatial"):
    torch.manual_seed(0)
    cfg = tiny_config(objective, latent)
    cfg.model.generation = "refine"
    cfg.model.refine_channels = 4
    if objective == "cnn":
        cfg.model.arch = "refine_cnn"
    return cfg, create_model(cfg, num_classes=3)


def test_the_old_spelling_of_the_control_is_read_as_refine_cnn() -> None:
    """model.arch=sohn with loss.objective=cnn and model.generation=refine (configs and
    checkpoints written before the family registry) is model.arch=refine_cnn."""
    from segcvae.config import Config

    cfg = Config.from_dict(
        {"model": {"generation": "refine"}, "loss": {"objective": "cnn"}}, "an old checkpoint"
    )
    assert cfg.model.arch == "refine_cnn"
    cfg = Config.from_dict({"loss": {"objective": "cnn"}}, "an old checkpoint")
    assert cfg.model.arch == "cnn"


def test_config_builds_the_control_and_the_latent_model() -> None:
    _, control = _model("cnn")
    _, hybrid = _model("hybrid")
    assert isinstance(control, RefinedCNN) and control.generation_net.embed_z is None
    assert isinstance(hybrid, SegCVAE) and isinstance(hybrid.generation_net, RefineNet)
    # the same stage: the latent model's has only the z embedding more
    extra = sum(p.numel() for p in hybrid.generation_net.embed_z.parameters())
    n = [sum(p.numel() for p in m.generation_net.parameters()) for m in (control, hybrid)]
    assert n[1] - n[0] == extra


def test_control_objective_is_refined_nll_plus_weighted_y_hat_nll(batch) -> None:
    x, y = batch
    cfg, model = _model("cnn")
    out = model(x, y)
    terms = build_objective(cfg)(out, y)
    refined = multiscale_nll(out.refined, y, cfg.loss.scale_weights)["nll"]
    y_hat = multiscale_nll(out.y_hat, y, cfg.loss.scale_weights)["nll"]
    assert torch.allclose(terms["loss"], refined + cfg.loss.y_hat_weight * y_hat)
    assert torch.allclose(terms["nll"], refined) and torch.allclose(terms["nll_y_hat"], y_hat)


def test_control_predicts_its_refined_logits_and_scores_them_exactly(batch) -> None:
    x, y = batch
    _, model = _model("cnn")
    model.eval()
    with torch.no_grad():
        pred = model.predict(x)
        assert torch.equal(pred, model(x).refined[-1])
        assert not torch.allclose(pred, model.baseline(x).y_hat[-1])  # not y_hat
        assert torch.equal(model.sample(x, 4)[:, 3], pred)
        ll = conditional_log_likelihood(model, x, y, n_samples=5, method="mc")
        labelled = y < 3  # the batch marks some pixels with the ignore value
        picked = pred.log_softmax(1).gather(1, y.where(labelled, 0)[:, None])[:, 0]
        log_p = (picked * labelled).sum((1, 2))
    assert torch.allclose(ll, log_p, atol=1e-3)


def test_latent_model_mean_prediction_differs_from_y_hat(batch) -> None:
    x, _ = batch
    _, model = _model("hybrid")
    model.eval()
    with torch.no_grad():
        ctx = model.encode(x)
        mean = model.decode_mean(ctx)
        samples = model.decode_samples(ctx, 3)
    assert not torch.allclose(mean, ctx.y_hat[-1])
    assert not torch.allclose(samples[:, 0], samples[:, 1])
