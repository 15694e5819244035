"""Data whose items give their masks' probabilities (``mask_probs``): collate, the weighted
target draw, the weighted set loss, and evaluation with ``mode_freq_error``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segcvae.config import Config, ConfigError
from segcvae.data import DataError
from segcvae.data.base import Sample, SegmentationDataset
from segcvae.engine.batches import collate, eval_loader
from segcvae.engine.eval_loop import evaluate
from segcvae.engine.eval_report import format_markdown
from segcvae.engine.targets import item_key, select_targets, target_weights, training_pairs
from segcvae.losses import CategoricalObjective
from segcvae.metrics import generalized_energy_distance
from segcvae.models import create_model
from tests.conftest import tiny_config
from tests.engine.test_evaluation import _Oracle


class _Modes(SegmentationDataset):
    """A tiny dataset of 8x8 items with four listed masks: A, B, C (p = 0.5, 0.25, 0.25) and a
    copy of A of probability 0."""

    class_names = ["background", "thing"]
    palette = [(0, 0, 0), (255, 255, 255)]
    masks_are_modes = True

    def __init__(self, n: int = 3) -> None:
        super().__init__("val", transform=_to_tensors)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> Sample:
        modes = np.zeros((4, 8, 8), np.uint8)
        modes[0, :4] = 1  # A: top half
        modes[1, :, :4] = 1  # B: left half
        modes[2, 6:, 6:] = 1  # C: a corner
        modes[3] = modes[0]  # A again, probability 0
        image = np.zeros((8, 8, 3), np.uint8)
        image[0, 0, 0] = index  # the oracle reads the item's index here
        return Sample(
            image=image,
            mask=modes[0],
            id=f"item{index}",
            masks=modes,
            mask_probs=np.array([0.5, 0.25, 0.25, 0.0]),
        )


def _to_tensors(image: np.ndarray, mask: np.ndarray, masks: np.ndarray) -> dict:
    return {
        "image": torch.from_numpy(image).permute(2, 0, 1).float(),
        "mask": torch.from_numpy(mask),
        "masks": torch.from_numpy(masks),
    }


# ------------------------------------------------------------------ collate
def test_collate_pads_mask_probs_with_zero() -> None:
    items = [
        {"masks": torch.zeros(3, 2, 2, dtype=torch.long), "mask_probs": np.array([0.5, 0.3, 0.2])},
        {"masks": torch.ones(1, 2, 2, dtype=torch.long), "mask_probs": np.array([1.0])},
    ]
    b = collate(items, ignore_index=7)
    assert b["mask_probs"].dtype == torch.float32 and b["mask_probs"].shape == (2, 3)
    expected = torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]])
    assert torch.equal(b["mask_probs"], expected)
    assert b["num_masks"].tolist() == [3, 1] and (b["masks"][1, 1:] == 7).all()
    # an item without probabilities in such a batch: its masks equally likely
    items[1] = {"masks": torch.ones(2, 2, 2, dtype=torch.long)}
    assert collate(items)["mask_probs"][1].tolist() == [0.5, 0.5, 0.0]
    items[1] = {"masks": torch.ones(2, 2, 2, dtype=torch.long), "mask_probs": np.ones(3) / 3}
    with pytest.raises(DataError, match="one probability per mask"):
        collate(items)
    # without mask_probs the batch has none
    assert "mask_probs" not in collate([{"masks": torch.zeros(1, 2, 2)}])


def test_a_dataset_with_mask_probs_batches_them() -> None:
    batch = next(iter(eval_loader(_Modes(2), batch_size=2, num_workers=0)))
    assert batch["mask_probs"].shape == (2, 4) and batch["masks"].shape == (2, 4, 8, 8)
    assert batch["mask_probs"][0].tolist() == [0.5, 0.25, 0.25, 0.0]


# ------------------------------------------------------------------ the training target
def test_random_draws_follow_the_probabilities_deterministically() -> None:
    masks = torch.arange(4).view(1, 4, 1, 1).expand(2, 4, 2, 2).clone()  # value = mask index
    num_masks = torch.tensor([4, 3])
    probs = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.2, 0.0, 0.8, 0.0]])
    keys = [item_key("a"), item_key("b")]
    steps = 4000
    picks = torch.stack(
        [select_targets(masks, num_masks, 0, s, keys, probs)[:, 0, 0] for s in range(steps)]
    )
    for i, p in enumerate(probs.tolist()):
        freq = torch.bincount(picks[:, i], minlength=4).double() / steps
        assert freq.tolist() == pytest.approx(p, abs=0.025)  # 3.5 sigma at p = 0.5
        assert all(freq[j] == 0 for j in range(4) if p[j] == 0)  # never a probability-0 mask
    # the same (seed, step, item) gives the same draw, in another batch at another position
    again = select_targets(masks[[1, 0]], num_masks[[1, 0]], 0, 17, keys[::-1], probs[[1, 0]])
    assert torch.equal(again[:, 0, 0], picks[17].flip(0))
    with pytest.raises(DataError, match="mask_probs"):
        select_targets(masks, num_masks, 0, 0, keys, torch.zeros(2, 4))


def test_training_pairs_with_probabilities() -> None:
    b = collate([_Modes(2)[i] for i in range(2)])
    x, y = training_pairs(b, "random", 0, 5)
    key = [item_key(i) for i in b["id"]]
    assert torch.equal(y, select_targets(b["masks"], b["num_masks"], 0, 5, key, b["mask_probs"]))
    assert target_weights(b, "random", target_sets=True) is None  # one target per image
    # a model that scores sets: all masks, weighted by their probabilities
    x, y = training_pairs(b, "auto", 0, 5, target_sets=True)
    assert y.shape == (2, 4, 8, 8)
    assert target_weights(b, "auto", target_sets=True) is b["mask_probs"]
    # repeating the images once per mask would weigh the masks equally: refused
    with pytest.raises(ConfigError, match="train.rater=all"):
        training_pairs(b, "all", 0, 5)
    no_probs = {k: v for k, v in b.items() if k != "mask_probs"}
    assert target_weights(no_probs, "all", target_sets=True) is None
    assert training_pairs(no_probs, "all", 0, 5)[1].shape == (8, 8, 8)


def test_weighted_set_loss_is_the_hand_weighted_sum(batch) -> None:
    x, y = batch
    variant = y.clone()
    variant[y == 1] = 2
    other = y.clone()
    other[y == 0] = 1
    sets = torch.stack([y, variant, other], dim=1)  # (2, 3, 32, 32)
    probs = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3]])
    torch.manual_seed(0)
    model = create_model(tiny_config("hybrid", "categorical"), 3).eval()  # BN: fixed statistics
    loss_fn = CategoricalObjective("hybrid")
    weighted = loss_fn(model(x, sets), sets, mask_probs=probs)
    # by hand: each (image, mask) scored alone, sum_m p_bm loss_bm, mean over the images
    expected: dict[str, torch.Tensor] = {}
    for b in range(2):
        for m in range(3):
            alone = loss_fn(model(x[b : b + 1], sets[b : b + 1, m]), sets[b : b + 1, m])
            for key, value in alone.items():
                if key != "kl_weight":
                    expected[key] = expected.get(key, 0.0) + probs[b, m] * value / 2
    for key, value in expected.items():
        assert torch.allclose(weighted[key], value, rtol=1e-4, atol=1e-6), key
    # equal probabilities are the plain mean over the pairs
    plain = loss_fn(model(x, sets), sets)
    uniform = loss_fn(model(x, sets), sets, mask_probs=torch.full((2, 3), 1 / 3))
    for key, value in plain.items():
        assert torch.allclose(uniform[key], value, rtol=1e-5, atol=1e-7), key
    assert not torch.allclose(weighted["loss"], plain["loss"])


# ------------------------------------------------------------------ evaluation
def test_evaluation_weights_the_masks_and_reports_mode_freq_error() -> None:
    ds = _Modes(3)
    items = [ds[i] for i in range(3)]
    a, b_, c = (torch.from_numpy(np.asarray(items[0]["masks"][j])) for j in range(3))
    drawn = torch.stack([a, a, b_, c])  # exactly in proportion (0.5, 0.25, 0.25)
    wrong = torch.stack([a, b_, b_, b_])  # A 1/4, B 3/4
    oracle = _Oracle([drawn, drawn, wrong], 2)
    loader = eval_loader(ds, batch_size=2, num_workers=0)
    result = evaluate(oracle, loader, 2, _settings())
    m = result.metrics
    rows = result.per_image
    assert rows[0]["mode_freq_error"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["ged"] == pytest.approx(0.0, abs=1e-6)  # weighted: exact in proportion
    assert rows[0]["hm_iou"] == pytest.approx(1.0, abs=1e-6)
    assert rows[2]["mode_freq_error"] == pytest.approx(0.5 * (0.25 + 0.5 + 0.25), abs=1e-6)
    gts, p = torch.stack([a, b_, c]), torch.tensor([0.5, 0.25, 0.25])
    assert rows[2]["ged"] == pytest.approx(generalized_energy_distance(wrong, gts, 2, p), abs=1e-6)
    assert m["mode_freq_error"] == pytest.approx(np.mean([r["mode_freq_error"] for r in rows]))
    assert m["mode_coverage"] == pytest.approx(2 / 3)  # C is never drawn for item 2
    assert "mode_freq_error" in format_markdown(m)
    # the same data without probabilities: no mode_freq_error, the plain (unweighted) GED
    plain_items = [{k: v for k, v in it.items() if k != "mask_probs"} for it in items]
    plain = DataLoader(plain_items, batch_size=2, collate_fn=collate)
    p_rows = evaluate(oracle, plain, 2, _settings(), masks_are_modes=True).per_image
    assert "mode_freq_error" not in p_rows[0]
    listed = torch.stack([torch.from_numpy(np.asarray(x)) for x in items[0]["masks"]])
    assert p_rows[0]["ged"] == pytest.approx(generalized_energy_distance(drawn, listed, 2))


def _settings():
    from segcvae.config import EvalConfig

    return EvalConfig(samples=0, hypotheses=4)


def test_mode_freq_error_selects_checkpoints() -> None:
    cfg = Config.from_dict({"train": {"select": "mode_freq_error"}}, "test")
    assert cfg.train.select == "mode_freq_error"
    with pytest.raises(ConfigError, match="eval.hypotheses"):
        Config.from_dict(
            {"train": {"select": "mode_freq_error"}, "eval": {"hypotheses": 0}}, "test"
        )


def test_the_train_step_passes_the_probabilities_to_a_set_scoring_objective(tmp_path) -> None:
    from tests.engine.test_trainer import _trainer

    trainer = _trainer(tmp_path, "train.steps=2", "train.rater=auto", "model.latent=categorical")
    seen: list[torch.Tensor | None] = []
    objective = trainer.objective

    def record(out, y, step, mask_probs=None):
        seen.append(mask_probs)
        return objective(out, y, step, mask_probs=mask_probs)

    trainer.objective = record
    batch = next(iter(trainer.loader))  # shapes: 3 plausible masks per item
    batch["mask_probs"] = torch.tensor([[0.6, 0.3, 0.1]]).repeat(batch["masks"].shape[0], 1)
    terms = trainer.run_step(batch)
    assert terms is not None and torch.isfinite(terms["loss"])
    assert torch.equal(seen[0], batch["mask_probs"])
    del batch["mask_probs"]  # without probabilities: the objective is called as before
    trainer.run_step(batch)
    assert seen[1] is None
