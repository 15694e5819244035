import torch

from segcvae.toy.cvae import LabelCVAE, cvae_log_likelihood, cvae_loss


def test_cvae_loss_decreases_on_real_digits(digits):
    torch.manual_seed(0)
    model = LabelCVAE(latent_dim=4, hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for x, y in zip(digits.x.split(50), digits.labels.split(50), strict=True):
        terms = cvae_loss(model, x, y)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    # the label matters: log p(x | true label) beats log p(x | another label)
    x, y = digits.x[:200], digits.labels[:200]
    true = cvae_log_likelihood(model, x, y, 20)
    wrong = cvae_log_likelihood(model, x, (y + 1) % 10, 20)
    assert (true > wrong).float().mean() > 0.7


def test_decode_broadcasts_styles_over_labels():
    model = LabelCVAE(latent_dim=3, hidden=16)
    z = torch.randn(5, 3)
    out = model.decode(z[:, None], torch.arange(10)[None])  # analogies: each z with each label
    assert out.shape == (5, 10, 784)
    assert torch.allclose(out[2, 7], model.decode(z[2:3], torch.tensor([7]))[0], atol=1e-6)
    assert model.decode(torch.randn(4, 2, 3), torch.tensor([1, 2])).shape == (4, 2, 784)
