"""The evaluation loop on tiny models: which likelihood is reported, image caps, RNG isolation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from segcvae.engine.evaluation import evaluate, format_table
from segcvae.metrics import conditional_log_likelihood
from segcvae.models import create_model
from tests.conftest import tiny_config


def _loader(n: int = 6, with_masks: bool = True) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 3, (n, 32, 32), generator=g)
    masks = torch.stack([y, (y + 1) % 3], dim=1)  # (n, 2, H, W)

    def collate(items):
        b = {
            "image": torch.stack([i[0] for i in items]),
            "mask": torch.stack([i[1] for i in items]),
        }
        if with_masks:
            b["masks"] = torch.stack([i[2] for i in items])
        return b

    return DataLoader(TensorDataset(x, y, masks), batch_size=4, collate_fn=collate)


@pytest.mark.parametrize("objective", ["cnn", "gsnn", "hybrid"])
def test_metrics_and_likelihoods(objective: str) -> None:
    torch.manual_seed(0)
    model = create_model(tiny_config(objective), 3)
    res = evaluate(model, _loader(), 3, samples=4, hypotheses=3, num_vis=2)
    m = res.metrics
    assert m["images"] == 6 and 0 <= m["pixel_accuracy"] <= 1 and len(m["per_class_iou"]) == 3
    assert {"nll", "nll_mc", "ged", "hm_iou"} <= set(m)
    if objective in ("cnn", "gsnn"):  # exact (cnn) / no recognition net: both estimates coincide
        assert m["nll"] == pytest.approx(m["nll_mc"])
    else:
        assert m["nll"] != pytest.approx(m["nll_mc"])
    assert res.vis is not None and res.vis.hypotheses.shape == (2, 3, 32, 32)
    assert model.training  # the mode is restored
    if objective == "cnn":  # the exact likelihood, image by image
        exact = torch.cat(
            [-conditional_log_likelihood(model.eval(), b["image"], b["mask"]) for b in _loader()]
        )
        assert m["nll"] == pytest.approx(float(exact.mean()), rel=1e-5)


def test_max_images_and_no_masks() -> None:
    model = create_model(tiny_config("hybrid"), 3)
    m = evaluate(model, _loader(with_masks=False), 3, samples=0, hypotheses=2, max_images=5).metrics
    assert m["images"] == 5 and "nll" not in m and "ged" not in m


def test_evaluation_is_repeatable_and_leaves_the_rng_alone() -> None:
    model = create_model(tiny_config("hybrid"), 3)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = evaluate(model, _loader(), 3, samples=3, hypotheses=2, seed=5).metrics
    assert torch.equal(torch.rand(1), expected)
    b = evaluate(model, _loader(), 3, samples=3, hypotheses=2, seed=5).metrics
    assert a == b


def test_format_table_lists_class_names() -> None:
    text = format_table({"mean_iou": 0.5, "per_class_iou": [0.25, float("nan")]}, ["bg", "fg"])
    assert "iou/bg" in text and "0.2500" in text and "nan" in text
