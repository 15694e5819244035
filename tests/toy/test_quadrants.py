import pytest
import torch

from segcvae.toy.quadrants import (
    QuadrantCVAE,
    QuadrantNN,
    evaluate_quadrants,
    quadrant_batch,
    quadrant_log_likelihood,
    quadrant_loss,
    quadrant_mask,
)


def test_quadrant_masks():
    one, two, three = (quadrant_mask(k) for k in (1, 2, 3))
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[14:, :14] = True  # bottom-left, as in the paper
    assert torch.equal(one, expected)
    expected[:14, :14] = True  # + top-left: the left half
    assert torch.equal(two, expected)
    expected[:14, 14:] = True  # + top-right: all but bottom-right
    assert torch.equal(three, expected)
    assert [int(quadrant_mask(k).sum()) for k in range(5)] == [0, 196, 392, 588, 784]
    with pytest.raises(ValueError):
        quadrant_mask(5)


def test_quadrant_batch_hides_exactly_the_missing_pixels(digits):
    y = digits.x[:6]
    k = torch.tensor([1, 2, 3, 1, 2, 3])
    x, missing = quadrant_batch(y, k)
    for i in range(6):
        visible = quadrant_mask(int(k[i])).flatten()
        assert torch.equal(missing[i].bool(), ~visible)
        assert torch.equal(x[i][visible], y[i][visible])
        assert (x[i][~visible] == -1).all()


def _small(recognition: bool = True) -> QuadrantCVAE:
    return QuadrantCVAE(QuadrantNN(64), hidden=64, latent_dim=8, recognition=recognition)


@pytest.mark.parametrize("objective", ["cnn", "gsnn", "cvae", "hybrid"])
def test_loss_decreases_on_real_digits(digits, objective):
    torch.manual_seed(0)
    model = QuadrantNN(128) if objective == "cnn" else _small(objective != "gsnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in range(30):
        y = digits.x[step * 32 : (step + 1) * 32]
        x, missing = quadrant_batch(y, torch.randint(1, 4, (32,), generator=gen))
        terms = quadrant_loss(model, x, y, missing, objective)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
        assert all(torch.isfinite(v) for v in terms.values())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_hybrid_with_alpha_one_is_the_cvae_loss(digits):
    model = _small()
    y = digits.x[:16]
    x, missing = quadrant_batch(y, torch.full((16,), 2))
    torch.manual_seed(3)
    cvae = quadrant_loss(model, x, y, missing, "cvae")["loss"]
    torch.manual_seed(3)
    hybrid = quadrant_loss(model, x, y, missing, "hybrid", alpha=1.0)["loss"]
    torch.manual_seed(3)
    half = quadrant_loss(model, x, y, missing, "hybrid", alpha=0.5)["loss"]
    assert torch.allclose(cvae, hybrid) and not torch.allclose(cvae, half)
    with pytest.raises(KeyError, match="valid"):
        quadrant_loss(model, x, y, missing, "vae")


def test_baseline_likelihood_counts_only_missing_pixels(digits):
    model = QuadrantNN(32)
    y = digits.x[:8]
    x, missing = quadrant_batch(y, torch.full((8,), 1))
    ll = quadrant_log_likelihood(model, x, y, missing)
    flipped = torch.where(missing.bool(), y, 1 - y)  # change only the visible target pixels
    assert torch.allclose(ll, quadrant_log_likelihood(model, x, flipped, missing))
    probs = torch.sigmoid(model(x))
    manual = (missing * (y * probs.log() + (1 - y) * (1 - probs).log())).sum(-1)
    assert torch.allclose(ll, manual, atol=1e-3)


def test_importance_sampling_with_q_equal_p_is_monte_carlo(digits):
    """With recognition and prior nets both outputting one fixed Gaussian, IS == MC."""
    model = _small()
    with torch.no_grad():
        for net in (model.prior_net, model.recognition_net):
            head = net[-1].linear
            head.weight.zero_()
            head.bias.copy_(torch.linspace(-1, 1, head.bias.numel()))
    y = digits.x[:8]
    x, missing = quadrant_batch(y, torch.full((8,), 1))
    torch.manual_seed(5)
    is_ = quadrant_log_likelihood(model, x, y, missing, 50, "is")
    torch.manual_seed(5)
    mc = quadrant_log_likelihood(model, x, y, missing, 50, "mc")
    assert torch.allclose(is_, mc, atol=1e-4)


def test_monte_carlo_is_exact_when_the_output_ignores_z(digits):
    model = _small(recognition=False)
    with torch.no_grad():
        model.generation_latent.weight.zero_()
    y = digits.x[:8]
    x, missing = quadrant_batch(y, torch.full((8,), 3))
    y_hat, _, _, context = model.context(x)
    exact = (
        -torch.nn.functional.binary_cross_entropy_with_logits(
            model.generate(y_hat, context, torch.zeros(8, 8)), y, reduction="none"
        )
        .mul(missing)
        .sum(-1)
    )
    mc = quadrant_log_likelihood(model, x, y, missing, 20, "mc")
    assert torch.allclose(mc, exact, atol=1e-4)


def test_evaluate_and_sample_shapes(digits):
    model = _small()
    results = evaluate_quadrants(model, digits.x[:20], "is", n_samples=4, batch_size=8)
    assert set(results) == {"is", "elbo"} and set(results["is"]) == {1, 2, 3}
    # on average the importance-sampled estimate is at least as tight as the ELBO
    assert all(results["is"][k] <= results["elbo"][k] + 1.0 for k in (1, 2, 3))
    # more missing pixels cost more nats
    assert results["is"][1] > results["is"][2] > results["is"][3]
    assert model.sample(
        quadrant_batch(digits.x[:3], torch.ones(3, dtype=torch.long))[0], 5
    ).shape == (5, 3, 784)


def test_model_names_old_baseline_name_and_unknown_names() -> None:
    from segcvae.toy.quadrants import _latent_models

    assert _latent_models(("hybrid", "nn", "gsnn")) == ("gsnn", "hybrid")  # table order
    assert _latent_models(("cnn",)) == ()
    with pytest.raises(KeyError, match="valid"):
        _latent_models(("vae",))


def test_kl_warm_up_rises_over_the_given_epochs() -> None:
    from segcvae.toy.quadrants import _QuadrantTraining

    training = _QuadrantTraining(torch.zeros(1000, 784), (1, 1, 1), 100, 1e-3, 0.5, 2.0, 0, print)
    assert training.steps_per_epoch == 10
    assert [training.kl_weight(s) for s in (1, 10, 20, 40)] == [0.05, 0.5, 1.0, 1.0]
    off = _QuadrantTraining(torch.zeros(10, 784), (1, 1, 1), 4, 1e-3, 0.5, 0.0, 0, print)
    assert off.kl_weight(1) == 1.0


def test_a_non_finite_headline_number_stops_the_run() -> None:
    from segcvae.toy.quadrants import _check_finite

    _check_finite({"cnn": {"neg_cll": {1: 1.0, 2: 2.0, 3: 3.0}}})
    with pytest.raises(FloatingPointError, match="gsnn"):
        _check_finite(
            {"cnn": {"neg_cll": {1: 1.0, 2: 2.0, 3: 3.0}}, "gsnn": {"neg_cll": {1: float("nan")}}}
        )
