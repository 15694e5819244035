"""Prediction modes and uncertainty maps."""

from __future__ import annotations

import pytest
import torch

from segcvae.inference import predict_probs, sample_probs, uncertainty
from segcvae.models import create_model
from tests.conftest import tiny_config


def test_modes_return_probabilities(batch):
    model = create_model(tiny_config("hybrid"), 3).eval()
    for mode in ("deterministic", "mean"):
        p = predict_probs(model, batch[0], mode, n=3)
        assert p.shape == (2, 3, 32, 32) and torch.allclose(p.sum(1), torch.ones(2, 32, 32))
    assert sample_probs(model, batch[0], 4).shape == (2, 4, 3, 32, 32)


def test_uncertainty_identical_samples_have_no_mutual_information():
    p = torch.softmax(torch.randn(1, 1, 3, 4, 4), 2).expand(1, 5, 3, 4, 4)
    u = uncertainty(p)
    assert torch.allclose(u["mutual_information"], torch.zeros(1, 4, 4), atol=1e-5)
    assert torch.allclose(u["entropy"], u["expected_entropy"], atol=1e-5)


def test_uncertainty_disagreeing_samples():
    a = torch.tensor([1.0, 0.0]).view(1, 1, 2, 1, 1)
    b = torch.tensor([0.0, 1.0]).view(1, 1, 2, 1, 1)
    u = uncertainty(torch.cat([a, b], 1))
    assert torch.allclose(
        u["mutual_information"], torch.full((1, 1, 1), torch.log(torch.tensor(2.0)))
    )


def test_chunked_label_maps_keep_int64_beyond_256_classes():
    from segcvae.inference import decode_samples_chunked

    class Many:  # 300 classes, class 299 wins everywhere
        def decode_samples(self, ctx, n):
            logits = torch.zeros(1, n, 300, 2, 2)
            logits[:, :, 299] = 1.0
            return logits

    labels = decode_samples_chunked(Many(), None, 5, chunk=2, labels=True)
    assert labels.dtype == torch.int64 and bool((labels == 299).all())


def test_level_set_masks_keep_each_pixels_probability_and_are_nested():
    from segcvae.inference import hypothesis_labels, hypothesis_uniforms, level_set_labels

    torch.manual_seed(0)
    p = torch.softmax(3 * torch.randn(1, 1, 3, 6, 6), 2).expand(2, 3000, 3, 6, 6)
    labels = hypothesis_labels(p, "level_set")
    assert labels.shape == (2, 3000, 6, 6) and labels.dtype == torch.long
    freq = torch.stack([(labels == c).float().mean(1) for c in range(3)], 1)  # (2, 3, 6, 6)
    assert (freq - p[:, 0]).abs().max() < 2e-3  # stratified levels: the marginals, almost exactly
    u = hypothesis_uniforms(4, 8)
    assert torch.allclose(u.sort(1).values.diff(1), torch.full((4, 7), 1 / 8), atol=1e-6)
    two = torch.softmax(torch.randn(1, 2, 5, 5), 1)[0]  # (2, 5, 5): background, foreground
    fg = [level_set_labels(two, torch.tensor(v)) == 1 for v in (0.2, 0.5, 0.8)]
    assert (fg[0] <= fg[1]).all() and (fg[1] <= fg[2]).all()  # a larger level: a larger mask
    assert torch.equal(fg[1], two[1] >= 0.5)  # level 1/2 of two classes is the mode (ties aside)
    assert torch.equal(hypothesis_labels(p[:, :2], "mode"), p[:, :2].argmax(2))
    with pytest.raises(ValueError, match="level_set"):
        hypothesis_labels(p, "median")
