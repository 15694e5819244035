"""The likelihood estimators on a linear-Gaussian model, where log p(y) is known in closed form.

z ~ N(0, I_d), y | z ~ N(W z + b, s^2 I_D): p(y) = N(b, W W^T + s^2 I) and the posterior p(z | y) is
Gaussian, so importance sampling can be checked against the exact value.
"""

import torch
from torch.distributions import MultivariateNormal, Normal

from segcvae.metrics._functional import importance_log_likelihood, monte_carlo_log_likelihood


def _model(d: int = 3, big_d: int = 6, s: float = 0.7, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(big_d, d, generator=gen, dtype=torch.float64)
    b = torch.randn(big_d, generator=gen, dtype=torch.float64)
    marginal = MultivariateNormal(b, w @ w.T + s**2 * torch.eye(big_d, dtype=torch.float64))
    y = marginal.sample((8,))  # (N, D)
    precision = torch.eye(d, dtype=torch.float64) + w.T @ w / s**2
    cov = torch.linalg.inv(precision)
    post_mean = (y - b) @ w @ cov / s**2  # (N, d)
    return w, b, s, y, marginal.log_prob(y), post_mean, cov


def _log_terms(w, b, s, y, z):
    """log p(y|z) and log p(z) for z (S, N, d) -> (S, N) each."""
    log_lik = Normal(z @ w.T + b, s).log_prob(y).sum(-1)
    log_prior = Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)
    return log_lik, log_prior


def test_importance_sampling_with_the_exact_posterior_is_exact():
    w, b, s, y, exact, post_mean, cov = _model()
    q = MultivariateNormal(post_mean, cov)
    z = q.sample((5,))
    log_lik, log_prior = _log_terms(w, b, s, y, z)
    estimate = importance_log_likelihood(log_lik, log_prior, q.log_prob(z), dim=0)
    assert torch.allclose(estimate, exact, atol=1e-8)


def test_importance_sampling_converges_with_a_mismatched_proposal():
    torch.manual_seed(0)
    w, b, s, y, exact, post_mean, cov = _model()
    # a diagonal, shifted and widened proposal, like a recognition network's
    q = Normal(post_mean + 0.2, 1.5 * cov.diagonal().sqrt())
    errors = {}
    for n in (3, 30000):
        z = q.sample((n,))
        log_lik, log_prior = _log_terms(w, b, s, y, z)
        estimate = importance_log_likelihood(log_lik, log_prior, q.log_prob(z).sum(-1), dim=0)
        errors[n] = (estimate - exact).abs().mean().item()
    assert errors[30000] < 0.02
    assert errors[30000] < errors[3] / 5


def test_monte_carlo_from_the_prior_converges_and_underestimates_on_average():
    torch.manual_seed(0)
    w, b, s, y, exact, _, _ = _model(d=2, big_d=3, s=1.0)
    z = torch.randn(200000, len(y), 2, dtype=torch.float64)
    log_lik, _ = _log_terms(w, b, s, y, z)
    assert (monte_carlo_log_likelihood(log_lik, dim=0) - exact).abs().max() < 0.02
    few = torch.stack([monte_carlo_log_likelihood(c, dim=0) for c in log_lik[:2000].split(2)])
    assert (few.mean(0) < exact).all()  # Jensen: E[log mean] <= log E


def test_importance_sampling_with_q_equal_p_is_monte_carlo():
    log_lik, log_p = torch.randn(4, 50), torch.randn(4, 50)
    assert torch.allclose(
        importance_log_likelihood(log_lik, log_p, log_p), monte_carlo_log_likelihood(log_lik)
    )
