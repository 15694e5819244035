import torch

from segcvae.toy.vae import VAE, vae_log_likelihood, vae_loss


def _fit(model, loss_fn, batches, steps=40, lr=2e-3):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        terms = loss_fn(batches[step % len(batches)])
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    return losses


def test_vae_loss_decreases_on_real_digits(digits):
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden=128)
    losses = _fit(model, lambda x: vae_loss(model, x), digits.x.split(50))
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])


def test_gaussian_decoder_loss_decreases(digits):
    torch.manual_seed(0)
    model = VAE(latent_dim=4, hidden=64, decoder="gaussian")
    losses = _fit(model, lambda x: vae_loss(model, x), digits.x.split(50))
    assert losses[-1] < losses[0] - 50
    assert model.raw_logvar.grad is not None


def test_importance_sampled_likelihood_is_tighter_than_the_elbo(digits):
    torch.manual_seed(0)
    model = VAE(latent_dim=4, hidden=64)
    _fit(model, lambda x: vae_loss(model, x), digits.x.split(50), steps=20)
    x = digits.x[:100]
    with torch.no_grad():
        neg_elbo = torch.stack([vae_loss(model, x)["loss"] for _ in range(20)]).mean()
    nll = -vae_log_likelihood(model, x, n_samples=200).mean()
    assert torch.isfinite(nll) and nll < neg_elbo


def test_vae_stays_finite_on_extreme_inputs():
    model = VAE(latent_dim=2, hidden=32)
    terms = vae_loss(model, torch.full((4, 784), 1e4))
    assert all(torch.isfinite(v) for v in terms.values())


def test_denoising_training_explains_the_clean_digit(digits):
    torch.manual_seed(0)
    model = VAE(latent_dim=2, hidden=32)
    x = digits.x[:50]
    noisy = torch.where(torch.rand(x.shape) < 0.1, 1 - x, x)
    torch.manual_seed(1)
    terms = vae_loss(model, x, noisy)
    torch.manual_seed(1)
    out = model(noisy)  # the encoder reads the noisy digit ...
    expected = -model.pixel_log_prob(out.logits, x).mean()  # ... the decoder explains the clean one
    assert torch.allclose(terms["nll"], expected)
    assert not torch.allclose(expected, -model.pixel_log_prob(out.logits, noisy).mean())
