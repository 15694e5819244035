import torch
from torch.distributions import Bernoulli

from segcvae.toy.layers import GaussianHead, bernoulli_log_prob, mlp


def test_mlp_shapes_and_activation():
    net = mlp([5, 7, 3])
    assert net(torch.randn(4, 5)).shape == (4, 3)
    assert (mlp([5, 3], final_activation=True)(torch.randn(50, 5)) >= 0).all()


def test_gaussian_head_bounded_and_finite():
    head = GaussianHead(3, 2, logvar_bound=4.0)
    with torch.no_grad():
        head.linear.weight.fill_(1e4)
    for sign in (1, -1):
        q = head(sign * torch.ones(1, 3))
        logvar = 2 * q.scale.log()
        assert torch.isfinite(q.scale).all() and (logvar.abs() <= 4.0 + 1e-4).all()


def test_bernoulli_log_prob_matches_distribution_and_mask():
    logits, target = torch.randn(3, 10), torch.randint(0, 2, (3, 10)).float()
    expected = Bernoulli(logits=logits).log_prob(target).sum(-1)
    assert torch.allclose(bernoulli_log_prob(logits, target), expected, atol=1e-5)
    weight = torch.zeros(3, 10)
    weight[:, :4] = 1
    expected = Bernoulli(logits=logits[:, :4]).log_prob(target[:, :4]).sum(-1)
    assert torch.allclose(bernoulli_log_prob(logits, target, weight), expected, atol=1e-5)
