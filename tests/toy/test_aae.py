import math

import pytest
import torch

from segcvae.toy.aae import AAE, AAETrainer, default_rates, rbf_mmd2
from segcvae.toy.cli import main
from segcvae.toy.priors import PRIORS, get_prior


@pytest.mark.parametrize("prior, labels", [("gaussian", False), ("mixture", True)])
def test_aae_reconstruction_decreases_on_real_digits(digits, prior, labels):
    torch.manual_seed(0)
    model = AAE(hidden=128, disc_hidden=32, labels=labels)
    trainer = AAETrainer(model, get_prior(prior), lr=2e-3)
    history = [
        trainer.step(x, y)
        for x, y in zip(digits.x[:1500].split(50), digits.labels[:1500].split(50), strict=True)
    ]
    first = sum(h["recon"] for h in history[:5]) / 5
    last = sum(h["recon"] for h in history[-5:]) / 5
    assert last < 0.8 * first
    assert all(math.isfinite(v) for h in history for v in (h["disc"].item(), h["gen"].item()))


def test_discriminator_with_labels_needs_them():
    model = AAE(hidden=8, disc_hidden=8, labels=True)
    assert model.discriminate(torch.zeros(3, 2), torch.tensor([0, 1, 2])).shape == (3,)
    with pytest.raises(ValueError):
        model.discriminate(torch.zeros(3, 2))


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_prior_shapes(name):
    z = get_prior(name)(500, None, torch.Generator().manual_seed(0))
    assert z.shape == (500, 2) and torch.isfinite(z).all()


def test_prior_arms_follow_labels():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(100)
    angle = torch.atan2(*get_prior("mixture")(1000, labels, gen).flip(1).T) % (2 * math.pi)
    arm = torch.round(angle / (2 * math.pi / 10)) % 10
    assert (arm == labels).float().mean() > 0.95
    x = get_prior("uniform")(1000, labels, gen)[:, 0]
    assert ((x + 2) / 0.4).floor().long().clamp(0, 9).eq(labels).all()
    radius = get_prior("swiss_roll")(1000, labels, gen).norm(dim=1)
    means = torch.stack([radius[labels == k].mean() for k in range(10)])
    assert (means.diff() > 0).all()  # later arms lie further out along the roll
    with pytest.raises(ValueError, match="no arms"):
        get_prior("gaussian")(10, labels[:10])
    with pytest.raises(KeyError, match="valid"):
        get_prior("laplace")


def test_mmd_separates_distributions():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 2, generator=gen), torch.randn(400, 2, generator=gen)
    assert abs(rbf_mmd2(a, b).item()) < 0.02
    assert rbf_mmd2(a, b + 1.5).item() > 0.3


def _train_codes(digits, prior, disc_lr, gen_lr, r1, epochs=5):
    """Train an unlabelled AAE on 1,500 real digits; return the codes of 500 others and their MMD²."""
    torch.manual_seed(0)
    model = AAE()
    trainer = AAETrainer(model, get_prior(prior), 1e-3, disc_lr, gen_lr, r1=r1)
    x, y = digits.x[:1500], digits.labels[:1500]
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(50):
            trainer.step(x[idx], y[idx])
    with torch.no_grad():
        z = model.encoder(digits.x[1500:])
    z_prior = get_prior(prior)(len(z), None, torch.Generator().manual_seed(1))
    return z, rbf_mmd2(z, z_prior).item()


@pytest.mark.slow  # trains on real digits for seconds
def test_gaussian_prior_codes_reach_the_prior(digits):
    """With the default rates the unlabelled codes spread over N(0, I), not a wandering blob.

    The old defaults (generator 1e-3, five times the discriminator's 2e-4) collapsed the codes into
    a blob that chased the discriminator: here MMD² 0.43 (this setting: 0.06), on the full data 1.01.
    """
    disc_lr, gen_lr, r1 = default_rates("gaussian", labels=False)
    assert gen_lr <= disc_lr
    z, mmd2 = _train_codes(digits, "gaussian", disc_lr, gen_lr, r1)
    assert mmd2 < 0.2
    assert (z.std(0) > 0.6).all()


def test_cli_takes_per_prior_rates_unless_given(small_mnist, tmp_path):
    tiny = ["--quick", "--train-size", "300", "--test-size", "100", "--threads", "1"]
    base = ["aae", "--data", str(small_mnist), "--out", str(tmp_path), *tiny]
    metrics = main([*base, "--prior", "gaussian"])
    assert (metrics["disc_lr"], metrics["gen_lr"], metrics["r1"]) == default_rates(
        "gaussian", False
    )
    metrics = main([*base, "--prior", "swiss_roll", "--labels", "--gen-lr", "3e-4", "--r1", "0.5"])
    assert (metrics["disc_lr"], metrics["gen_lr"], metrics["r1"]) == (5e-5, 3e-4, 0.5)
