"""Resource limits: hypotheses that cannot fit are refused before allocating, likelihood samples are
drawn in rounds whose summaries are combined exactly."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import segcvae.engine.memory as memory
import segcvae.metrics.likelihood as likelihood
from segcvae.config import ConfigError, EvalConfig
from segcvae.engine.eval_loop import check_eval_memory, hypotheses_memory
from segcvae.engine.memory import MemoryLimitError, available_memory, check_memory, format_bytes
from segcvae.metrics import conditional_log_likelihood


def test_the_available_memory_is_read_on_this_machine() -> None:
    free = available_memory()
    assert free is not None and 0 < free < 2**50


def test_on_cuda_the_free_memory_and_the_unused_cache_count(monkeypatch) -> None:
    """(No GPU needed: torch.cuda's answers are stood in for.)"""
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: asked.append(i) or (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 500)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 200)
    assert available_memory(torch.device("cuda", 1)) == 1300 and available_memory("cuda:2") == 1300
    assert asked == [1, 2]


def test_a_need_above_the_limit_is_one_line_naming_the_setting(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 4_000_000_000)
    check_memory(1_999_999_999, "eval.hypotheses", 10, "10 hypotheses")  # under half: fine
    with pytest.raises(MemoryLimitError) as err:
        check_memory(3_000_000_000, "eval.hypotheses", 1000, "1000 hypotheses")
    text = str(err.value)
    assert isinstance(err.value, ConfigError) and "\n" not in text
    assert text.startswith("eval.hypotheses=1000: 1000 hypotheses would need about 3 GB")
    assert "limit of 2 GB (50% of the memory available now on cpu)" in text
    assert str(err.value.named({"eval.hypotheses": "--hypotheses"})).startswith("--hypotheses=1000")


def test_an_unknown_amount_of_memory_refuses_nothing(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device=None: None)
    check_memory(10**18, "x", 1, "everything")


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (12, 12_345, 3.4e8, 1.2e9, 6.19e11, 2e12)] == [
        "12 bytes",
        "12.3 kB",
        "340 MB",
        "1.2 GB",
        "619 GB",
        "2 TB",
    ]


def test_the_evaluation_estimate_grows_with_the_square_of_the_hypotheses() -> None:
    small, large = (hypotheses_memory(4, s, 2, 32, 32) for s in (8, 100_000))
    assert small < 10**7 and large > 20 * 100_000**2  # the pairwise terms: 5 S^2 (K-1) floats
    assert hypotheses_memory(4, 100, 2, 32, 32, chunk=10) < hypotheses_memory(4, 100, 2, 32, 32)


def test_eval_settings_that_cannot_fit_are_named(monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 16 * 10**9)
    check_eval_memory(EvalConfig(), 4, 96, 96)  # the defaults fit easily
    with pytest.raises(MemoryLimitError, match=r"^eval\.hypotheses=100000: 100000 hypotheses"):
        check_eval_memory(EvalConfig(hypotheses=100_000), 4, 96, 96)
    with pytest.raises(MemoryLimitError, match=r"^eval\.extra_ged_hypotheses=50000"):
        check_eval_memory(EvalConfig(extra_ged_hypotheses=50_000), 4, 96, 96)
    with pytest.raises(MemoryLimitError, match=r"^hypotheses=100000"):
        check_eval_memory(
            EvalConfig(hypotheses=100_000), 4, 96, 96, names={"hypotheses": "hypotheses"}
        )


# ------------------------------------------------------------------ likelihood samples in rounds
class CountingModel(torch.nn.Module):
    """Sample j's logits favour class 0 by j / 10: its log-likelihood of all-zero labels is known.
    Records the n of every ``likelihood_samples`` call."""

    likelihood_methods = ("mc",)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.drawn = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def likelihood_samples(
        self, ctx: torch.Tensor, y: torch.Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[torch.Tensor, None]]:
        self.calls.append(n)
        for start in range(0, n, chunk_size):
            s = min(chunk_size, n - start)
            logits = torch.zeros(y.shape[0], s, 3, *y.shape[1:])
            logits[:, :, 0] = (self.drawn + torch.arange(s, dtype=torch.float32)).view(
                1, s, 1, 1
            ) / 10
            self.drawn += s
            yield logits, None


def test_many_likelihood_samples_are_drawn_in_rounds_and_combined_exactly(monkeypatch) -> None:
    x, y = torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    whole = conditional_log_likelihood(CountingModel(), x, y, n_samples=10, method="mc")
    monkeypatch.setattr(likelihood, "SAMPLES_PER_ROUND", 4)
    model = CountingModel()
    rounds = conditional_log_likelihood(model, x, y, n_samples=10, method="mc", chunk_size=3)
    assert model.calls == [4, 4, 2]
    torch.testing.assert_close(rounds, whole)
    # the same by hand: log mean exp over the 10 samples of 16 pixels each
    t = torch.arange(10, dtype=torch.float64) / 10
    per_sample = 16 * (t - torch.log(t.exp() + 2))
    expected = float(torch.logsumexp(per_sample, 0) - np.log(10))
    assert abs(float(rounds[0]) - expected) < 1e-3
