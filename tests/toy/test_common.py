"""The toy trainer's plumbing: batch counting, the epoch loop and the run's final write."""

from __future__ import annotations

import json

import pytest
import torch

from segcvae.toy.common import finish_run, minibatches, num_batches, run_epochs


@pytest.mark.parametrize("n,batch_size", [(1, 4), (3, 4), (9, 4), (10, 4), (16, 4), (60000, 256)])
def test_num_batches_counts_what_minibatches_yields(n, batch_size):
    assert num_batches(n, batch_size) == len(list(minibatches(n, batch_size, torch.Generator())))


def test_run_epochs_averages_terms_weighted_by_batch_size():
    seen = []

    def step(idx):
        seen.append(idx)
        return {"loss": idx.float().mean()}

    history = run_epochs(step, 10, epochs=2, batch_size=4, seed=0, log=lambda _: None, name="t")
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["loss"] == pytest.approx(4.5) for h in history)  # mean of 0..9 over each epoch
    assert sorted(torch.cat(seen[:3]).tolist()) == list(range(10))


def test_run_epochs_stops_on_a_non_finite_loss():
    with pytest.raises(FloatingPointError, match="t: non-finite loss"):
        run_epochs(
            lambda idx: {"loss": torch.tensor(float("nan"))},
            8,
            epochs=1,
            batch_size=4,
            seed=0,
            log=lambda _: None,
            name="t",
        )


def test_finish_run_writes_json_and_refuses_nan(tmp_path):
    metrics = finish_run("t", {"nll": 1.5}, tmp_path, "nll", lambda _: None)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    with pytest.raises(FloatingPointError, match="non-finite nll"):
        finish_run("t", {"nll": float("inf")}, tmp_path / "x", "nll", lambda _: None)
