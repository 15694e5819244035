"""The evaluation loop on tiny models: which likelihood is reported, image caps, RNG isolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from segcvae.config import EvalConfig
from segcvae.data.raters import majority_vote
from segcvae.engine.batches import collate
from segcvae.engine.eval_loop import UNDEFINED_REASONS, evaluate
from segcvae.engine.eval_report import format_markdown, format_table
from segcvae.metrics import conditional_log_likelihood, majority_ged, rater_pairwise_iou
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
    res = evaluate(model, _loader(), 3, EvalConfig(samples=4, hypotheses=3, num_vis=2))
    m = res.metrics
    assert m["images"] == 6 and 0 <= m["pixel_accuracy"] <= 1 and len(m["per_class_iou"]) == 3
    assert {"nll", "nll_mc", "ged", "hm_iou"} <= set(m)
    if objective in ("cnn", "gsnn"):  # exact (cnn) / no recognition net: both estimates coincide
        assert m["nll"] == pytest.approx(m["nll_mc"])
    else:
        assert m["nll"] != pytest.approx(m["nll_mc"])
    assert res.vis is not None and res.vis.hypotheses.shape == (2, 3, 32, 32)
    assert model.training  # the mode is restored
    if objective == "cnn":  # the exact likelihood, image by image, averaged over the two raters
        exact = torch.cat(
            [
                -conditional_log_likelihood(model.eval(), b["image"], b["masks"][:, r])
                for b in _loader()
                for r in range(2)
            ]
        )
        assert m["nll"] == pytest.approx(float(exact.mean()), rel=1e-5)


def test_max_images_and_no_masks() -> None:
    model = create_model(tiny_config("hybrid"), 3)
    m = evaluate(
        model, _loader(with_masks=False), 3, EvalConfig(samples=0, hypotheses=2, max_images=5)
    ).metrics
    assert m["images"] == 5 and "nll" not in m
    # without "masks" the one rater is "mask": GED is defined, inter-rater agreement is not
    assert "ged" in m and "diversity" in m and m["rater_pairwise_iou"] is None
    assert m["undefined"]["rater_pairwise_iou"] == UNDEFINED_REASONS["rater_pairwise_iou"]
    assert m["pixel_accuracy_raters"] == pytest.approx(m["pixel_accuracy"])


def test_evaluation_is_repeatable_and_leaves_the_rng_alone() -> None:
    model = create_model(tiny_config("hybrid"), 3)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = evaluate(model, _loader(), 3, EvalConfig(samples=3, hypotheses=2), seed=5).metrics
    assert torch.equal(torch.rand(1), expected)
    b = evaluate(model, _loader(), 3, EvalConfig(samples=3, hypotheses=2), seed=5).metrics
    assert a == b


def test_format_table_lists_class_names() -> None:
    text = format_table({"mean_iou": 0.5, "per_class_iou": [0.25, float("nan")]}, ["bg", "fg"])
    assert "iou/bg" in text and "0.2500" in text and "nan" in text


class _Oracle(nn.Module):
    """A fake model whose hypotheses are the raters' masks (image k's rater masks, in turn)."""

    def __init__(self, masks: list[torch.Tensor], num_classes: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.masks = masks
        self.k = num_classes

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, 0].long()  # the image index, written into the image

    def _logits(self, labels: torch.Tensor) -> torch.Tensor:
        return 20.0 * F.one_hot(labels, self.k).permute(0, 3, 1, 2).float()

    def decode_mean(self, ctx: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._logits(self.masks[i][:1])[0] for i in ctx.tolist()])

    def decode_samples(self, ctx: torch.Tensor, n: int) -> torch.Tensor:
        out = []
        for i in ctx.tolist():
            m = self.masks[i]
            out.append(self._logits(m[torch.arange(n) % m.shape[0]]))
        return torch.stack(out)  # (B, n, K, H, W)


def _rater_items(n_raters: list[int]) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i, r in enumerate(n_raters):
        masks = torch.zeros(r, 8, 8, dtype=torch.long)
        for j in range(r):  # a square that grows with the rater
            masks[j, 2 : 4 + j, 2 : 4 + j] = 1
        masks[:, 0, 0] = (torch.rand(1, generator=g) > 0.5).long()
        image = torch.zeros(3, 8, 8)
        image[0, 0, 0] = i
        items.append({"image": image, "mask": masks[0], "masks": masks, "id": str(i)})
    return items


def test_oracle_hypotheses_score_perfectly_with_padded_rater_counts() -> None:
    n_raters = [3, 1, 2, 3]
    items = _rater_items(n_raters)
    model = _Oracle([it["masks"] for it in items], 2)
    loader = DataLoader(items, batch_size=3, collate_fn=collate)  # pads to 3 raters
    m = evaluate(
        model, loader, 2, EvalConfig(samples=0, hypotheses=6), masks_are_modes=True
    ).metrics
    assert m["ged"] == pytest.approx(0.0, abs=1e-9)  # hypotheses = raters, equally often
    assert m["hm_iou"] == pytest.approx(1.0)
    assert m["mode_purity"] == 1.0 and m["mode_coverage"] == 1.0
    assert m["soft_dice"] == pytest.approx(1.0)
    assert m["ece"] == pytest.approx(0.0, abs=1e-6)
    # the raters' agreement over images with >= 2 raters equals the hypotheses' own
    expected = np.mean([rater_pairwise_iou(it["masks"], 2) for it in items if len(it["masks"]) > 1])
    assert m["rater_pairwise_iou"] == pytest.approx(expected)
    assert 0 < m["ncc"] <= 1
    # decode_mean predicts rater 0: perfect on the reference mask, not on every rater
    assert m["pixel_accuracy"] == 1.0 and m["pixel_accuracy_raters"] < 1.0
    assert (
        "ged_5" not in m
        and "mode_purity"
        not in evaluate(model, loader, 2, EvalConfig(samples=0, hypotheses=6)).metrics
    )
    # one decoding call (the oracle cycles through the raters anew in each call)
    extra = evaluate(
        model,
        loader,
        2,
        EvalConfig(samples=0, hypotheses=2, extra_ged_hypotheses=24, sample_chunk=24),
    ).metrics
    assert extra["ged_24"] == pytest.approx(0.0, abs=1e-9)  # 24 hypotheses: every rater 24/R times


def _presence_items() -> list[dict]:
    """Three 8x8 images: half the raters empty; three of four empty; one (non-empty) rater."""
    square = torch.zeros(8, 8, dtype=torch.long)
    square[2:5, 2:5] = 1
    bigger = torch.zeros(8, 8, dtype=torch.long)
    bigger[2:6, 2:6] = 1
    empty = torch.zeros(8, 8, dtype=torch.long)
    rater_sets = [[empty, empty, square, bigger], [empty, square, empty, empty], [bigger]]
    items = []
    for i, raters in enumerate(rater_sets):
        image = torch.zeros(3, 8, 8)
        image[0, 0, 0] = i
        masks = torch.stack(raters)
        items.append(
            {"image": image, "mask": majority_vote(masks, 2), "masks": masks, "id": str(i)}
        )
    return items


def test_the_majority_references_and_the_empty_share_error() -> None:
    items = _presence_items()
    loader = DataLoader(items, batch_size=2, collate_fn=collate)  # pads the one-rater image
    votes = [it["mask"] for it in items]
    assert votes[0].sum() == 9 and votes[1].sum() == 0  # a tie (2 of 4) goes to the foreground
    # a model that always draws the majority mask scores exactly the data's references
    always_majority = _Oracle([v[None] for v in votes], 2)
    two = DataLoader(items[:2], batch_size=2, collate_fn=collate)
    m = evaluate(always_majority, two, 2, EvalConfig(samples=0, hypotheses=4)).metrics
    assert m["ged"] == pytest.approx(m["majority_ged"])
    assert m["soft_dice"] == pytest.approx(m["majority_soft_dice"])
    m = evaluate(always_majority, loader, 2, EvalConfig(samples=0, hypotheses=4)).metrics
    expected_ged = np.mean([majority_ged(votes[i], items[i]["masks"], 2) for i in range(2)])
    assert m["majority_ged"] == pytest.approx(expected_ged) and m["majority_ged"] > 0
    # image 0: no empty hypothesis, 2 of 4 raters empty; image 1: all empty, 3 of 4; image 2 has
    # one rater and is left out
    assert m["empty_share_error"] == pytest.approx((0.5 + 0.25) / 2)
    # hypotheses that are the raters, each equally often, have the raters' share of empty masks
    raters = _Oracle([it["masks"] for it in items], 2)
    m = evaluate(raters, loader, 2, EvalConfig(samples=0, hypotheses=8)).metrics
    assert m["empty_share_error"] == 0.0 and m["ged"] == pytest.approx(0.0, abs=1e-9)
    assert m["majority_ged"] == pytest.approx(expected_ged)  # a property of the data alone
    # one-rater data has no references
    one_rater = DataLoader(items[2:], collate_fn=collate)
    one = evaluate(raters, one_rater, 2, EvalConfig(samples=0, hypotheses=2))
    assert not {"majority_ged", "majority_soft_dice", "empty_share_error"} & set(one.metrics)
    table = format_markdown(m).splitlines()
    assert any(line.startswith("| majority_ged |") for line in table)
    assert all(line.count("|") == 4 for line in table)  # no "|" inside a description


def test_nll_is_the_mean_over_real_raters_only() -> None:
    torch.manual_seed(0)
    model = create_model(tiny_config("cnn"), 2).eval()
    items = _rater_items([2, 1])
    for it in items:
        it["image"] = torch.randn(3, 8, 8)
    items = [
        dict(it, image=torch.nn.functional.interpolate(it["image"][None], 32)[0]) for it in items
    ]
    for it in items:
        it["masks"] = torch.nn.functional.interpolate(it["masks"][None].float(), 32)[0].long()
        it["mask"] = it["masks"][0]
    m = evaluate(
        model,
        DataLoader(items, batch_size=2, collate_fn=collate),
        2,
        EvalConfig(samples=1, hypotheses=0),
    ).metrics
    per_image = [
        float(
            torch.stack(
                [
                    -conditional_log_likelihood(model, it["image"][None], r[None])[0]
                    for r in it["masks"]
                ]
            ).mean()
        )
        for it in items
    ]
    assert m["nll"] == pytest.approx(np.mean(per_image), rel=1e-5)


def test_format_markdown_is_a_table_with_every_key() -> None:
    text = format_markdown(
        {"ged": 0.125, "ged_100": 0.25, "per_class_iou": [0.5, 0.75]}, ["bg", "fg"]
    )
    lines = text.splitlines()
    assert lines[0] == "| metric | value | meaning |" and lines[1].startswith("|---")
    assert "| ged | 0.1250 |" in text and "| ged_100 | 0.2500 | squared GED with 100" in text
    assert "| iou/fg | 0.7500 |" in text and all(line.count("|") == 4 for line in lines)


def test_mode_metrics_are_reported_for_data_that_lists_its_modes() -> None:
    from torch.utils.data import Subset

    from segcvae.data import ShapesDataset, build_transforms
    from segcvae.engine.batches import eval_loader

    cfg = tiny_config("hybrid")
    shapes = ShapesDataset("val", 4, image_size=32, transform=build_transforms(cfg.data, "val"))
    model = create_model(cfg, shapes.num_classes)
    m = evaluate(
        model, eval_loader(Subset(shapes, [0, 1, 2]), 2, 0), 4, EvalConfig(samples=0, hypotheses=3)
    )
    assert 0.0 <= m.metrics["mode_purity"] <= 1.0 and m.metrics["mode_coverage"] in (
        0.0,
        1.0 / 3,
        2.0 / 3,
        1.0,
    )
    assert m.metrics["images"] == 3


# ---------------------------------------------------------------- evaluate's steps, one at a time
def test_an_eval_batch_without_masks_has_its_one_rater_and_is_cut_to_the_images_wanted() -> None:
    from segcvae.engine.eval_metrics import EvalBatch as _EvalBatch

    batch = next(iter(_loader(with_masks=False)))
    b = _EvalBatch.from_batch(batch, torch.device("cpu"), keep=3)
    assert b.size == 3 and b.masks.shape == (3, 1, 32, 32) and b.num_masks.tolist() == [1, 1, 1]
    assert torch.equal(b.masks[:, 0], batch["mask"][:3])
    full = _EvalBatch.from_batch(next(iter(_loader())), torch.device("cpu"), keep=None)
    assert full.size == 4 and full.real.all() and len(full.raters()) == 4


def test_batch_nll_averages_over_the_real_raters_only() -> None:
    from segcvae.engine.eval_loop import _batch_nll
    from segcvae.engine.eval_metrics import EvalBatch as _EvalBatch

    torch.manual_seed(0)
    model = create_model(tiny_config("cnn"), 3).eval()
    batch = next(iter(_loader()))
    b = _EvalBatch.from_batch(batch, torch.device("cpu"), keep=None)
    b.num_masks = torch.tensor([2, 1, 2, 1])
    b.masks[b.num_masks == 1, 1] = 255  # padding, as the collate writes it
    with torch.no_grad():
        nll, _ = _batch_nll(model, b, model.encode(b.x), samples=2)
        one, two = (_EvalBatch(b.x, b.y, m, torch.ones(4), b.ids) for m in b.masks.split(1, 1))
        first, _ = _batch_nll(model, one, None, 2)
        second, _ = _batch_nll(model, two, None, 2)
    assert torch.allclose(nll[[1, 3]], first[[1, 3]])
    assert torch.allclose(nll[[0, 2]], (first[[0, 2]] + second[[0, 2]]) / 2)


def test_the_accumulator_keeps_the_images_asked_for_the_grid() -> None:
    from segcvae.engine.eval_metrics import Accumulator as _Accumulator
    from segcvae.engine.eval_metrics import EvalBatch as _EvalBatch

    acc = _Accumulator(3, 255)
    assert acc.vis() is None and "nll" not in acc.metrics()
    b = _EvalBatch.from_batch(next(iter(_loader())), torch.device("cpu"), keep=None)
    probs = torch.rand(4, 2, 3, 32, 32).softmax(dim=2)
    acc.add_vis(3, b, b.y, probs, probs.argmax(dim=2))
    vis = acc.vis()
    assert vis is not None and vis.images.shape == (3, 3, 32, 32) and vis.hypotheses.shape[1] == 2
    assert vis.entropy.shape == (3, 32, 32) and (vis.entropy >= 0).all()
    acc.add_predictions(b.y, b)  # the reference itself: perfect against it
    acc.seen = 4
    m = acc.metrics()
    assert m["pixel_accuracy"] == 1.0 and m["images"] == 4 and m["mean_iou_raters"] < 1.0
    assert [r["id"] for r in acc.rows] == b.ids  # one row per image, for per-case reports


def test_per_image_rows_hold_what_the_metrics_average() -> None:
    torch.manual_seed(0)
    model = create_model(tiny_config("hybrid"), 3).eval()
    res = evaluate(model, _loader(), 3, EvalConfig(samples=2, hypotheses=3))
    rows = res.per_image
    assert len(rows) == res.metrics["images"] == 6 and len({r["id"] for r in rows}) == 6
    for key in ("ged", "hm_iou", "nll", "soft_dice"):
        assert np.mean([r[key] for r in rows]) == pytest.approx(res.metrics[key], rel=1e-6)


def test_metrics_undefined_for_a_model_are_na_with_the_reason() -> None:
    """NCC of a deterministic model (flat uncertainty), rater agreement of one-rater data."""
    import json

    from segcvae.engine.logger import to_jsonable

    torch.manual_seed(0)
    model = create_model(tiny_config("cnn"), 3)
    m = evaluate(model, _loader(with_masks=False), 3, EvalConfig(samples=0, hypotheses=3)).metrics
    assert m["ncc"] is None and m["rater_pairwise_iou"] is None
    assert set(m["undefined"]) == {"ncc", "rater_pairwise_iou"}
    assert "deterministic model" in m["undefined"]["ncc"]
    assert "every image has one rater" in m["undefined"]["rater_pairwise_iou"]
    assert isinstance(m["ged"], float) and "nll" not in m  # skipped (samples=0), not undefined
    report = json.loads(json.dumps(to_jsonable(m)))  # evaluate --json
    assert report["ncc"] is None and report["undefined"]["ncc"] == m["undefined"]["ncc"]

    text = format_markdown(m, ["a", "b", "c"])
    ncc_row = next(line for line in text.splitlines() if line.startswith("| ncc |"))
    assert ncc_row.startswith("| ncc | n/a | S_NCC:") and "deterministic model" in ncc_row
    assert ncc_row.count("|") == 4 and "undefined |" not in text  # the map is not a row
    table = format_table(m, ["a", "b", "c"])
    assert "n/a (undefined: every image has one rater" in table
    assert not any(line.startswith("undefined") for line in table.splitlines())

    torch.manual_seed(0)
    hybrid = create_model(tiny_config("hybrid"), 3)  # diverse hypotheses, two raters: defined
    m2 = evaluate(hybrid, _loader(), 3, EvalConfig(samples=0, hypotheses=3)).metrics
    assert isinstance(m2["rater_pairwise_iou"], float) and isinstance(m2["ncc"], float)
    assert "undefined" not in m2 and "n/a" not in format_markdown(m2)


def test_level_set_hypotheses_are_scored_and_repeatable() -> None:
    """eval.hypothesis_masks=level_set: the masks change, the soft metrics (from the
    probabilities) do not, and the same seed gives the same numbers."""
    torch.manual_seed(0)
    model = create_model(tiny_config("hybrid"), 3)
    mode = evaluate(model, _loader(), 3, EvalConfig(samples=0, hypotheses=4), seed=1).metrics
    settings = EvalConfig(samples=0, hypotheses=4, hypothesis_masks="level_set")
    level = evaluate(model, _loader(), 3, settings, seed=1).metrics
    again = evaluate(model, _loader(), 3, settings, seed=1).metrics
    assert level["ged"] == again["ged"] and level["diversity"] == again["diversity"]
    assert level["diversity"] != mode["diversity"]
    assert level["soft_dice"] == pytest.approx(mode["soft_dice"])
