"""Resumable data order and per-item seeded augmentation."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from segcvae.engine.batches import (
    ItemSeededTransform,
    ResumableSampler,
    SeededAugmentation,
    _collate_for,
    collate,
    train_loader,
)
from segcvae.engine.targets import item_key, select_targets, training_pairs


class _Toy(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n
        self.transform = ItemSeededTransform(
            A.Compose([A.HorizontalFlip(p=0.5), A.CoarseDropout(p=1.0)])
        )
        self.num_classes = 2

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3) + i
        out = self.transform(image=img, mask=np.zeros((8, 8), np.int64))
        return {
            "image": torch.from_numpy(out["image"]),
            "mask": torch.from_numpy(out["mask"]),
            "id": str(i),
        }


def test_sampler_resumes_mid_epoch_with_the_same_order() -> None:
    s = ResumableSampler(list(range(20)), num_replicas=1, rank=0, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=8)
    assert list(s) == full[8:] and len(s) == 12
    s.set_epoch(3)
    assert list(s) != full  # a new permutation each epoch


def test_sampler_shards_are_disjoint() -> None:
    a = ResumableSampler(list(range(20)), num_replicas=2, rank=0, seed=0)
    b = ResumableSampler(list(range(20)), num_replicas=2, rank=1, seed=0)
    assert set(a).isdisjoint(set(b)) and len(set(a) | set(b)) == 20


def test_augmentation_depends_only_on_seed_epoch_index() -> None:
    toy = _Toy(6)
    ds = SeededAugmentation(toy, toy.transform, seed=0)
    first = [ds[i]["image"] for i in range(6)]
    again = [ds[i]["image"] for i in reversed(range(6))][::-1]  # other order, same result
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    ds.set_epoch(1)
    assert any(not torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    assert ds.num_classes == 2  # attributes pass through


def test_train_loader_does_not_touch_global_rng() -> None:
    toy = _Toy(8)
    loader, sampler = train_loader(
        SeededAugmentation(toy, toy.transform, 0), batch_size=4, num_workers=0, seed=0
    )
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    batches = list(loader)
    assert torch.equal(torch.rand(1), expected)
    assert len(batches) == 2 and batches[0]["image"].shape == (4, 8, 8, 3)
    assert batches[0]["id"] == [str(i) for i in list(sampler)[:4]]


def test_collate_stacks_numpy_and_keeps_strings() -> None:
    b = collate([{"a": np.zeros(2), "id": "x"}, {"a": np.ones(2), "id": "y"}])
    assert b["a"].shape == (2, 2) and b["id"] == ["x", "y"]


def test_collate_pads_rater_masks_and_counts_them() -> None:
    items = [
        {"masks": torch.ones(3, 2, 2, dtype=torch.long), "id": "a"},
        {"masks": torch.zeros(1, 2, 2, dtype=torch.long), "id": "b"},
    ]
    b = collate(items, ignore_index=7)
    assert b["masks"].shape == (2, 3, 2, 2) and b["num_masks"].tolist() == [3, 1]
    assert (b["masks"][1, 1:] == 7).all() and (b["masks"][1, 0] == 0).all()
    assert (b["masks"][0] == 1).all()


def test_the_loaders_pad_with_the_datasets_ignore_index() -> None:
    from segcvae.data import ShapesDataset

    ds = ShapesDataset("val", 2, image_size=32, ignore_index=9)
    wrapped = torch.utils.data.Subset(ds, [0, 1])
    assert _collate_for(wrapped).keywords["ignore_index"] == 9
    assert _collate_for(_Toy(2)).keywords["ignore_index"] == 255  # nothing to look up


def _rater_batch(num_masks: list[int]) -> dict:
    b, r = len(num_masks), max(num_masks)
    masks = torch.full((b, r, 2, 2), 255, dtype=torch.long)
    for i, n in enumerate(num_masks):
        for j in range(n):
            masks[i, j] = 10 * i + j  # the value says which item and rater it is
    image = torch.arange(b, dtype=torch.float).view(b, 1, 1, 1).expand(b, 3, 2, 2)
    return {
        "image": image,
        "mask": masks[:, 0],
        "masks": masks,
        "num_masks": torch.tensor(num_masks),
        "id": [f"item{i}" for i in range(b)],
    }


def test_select_targets_draws_real_raters_from_seed_step_and_item_only() -> None:
    batch = _rater_batch([3, 1, 2, 3])
    keys = [item_key(i) for i in batch["id"]]
    draws = [select_targets(batch["masks"], batch["num_masks"], 0, s, keys) for s in range(40)]
    picks = torch.stack([d[:, 0, 0] for d in draws])  # (steps, B)
    for i, n in enumerate([3, 1, 2, 3]):
        assert set((picks[:, i] - 10 * i).tolist()) == set(range(n))  # every real rater, no pad
    # the same item gets the same draw in another batch, at another position
    again = select_targets(batch["masks"][[3, 0]], batch["num_masks"][[3, 0]], 0, 5, keys[::-3])
    assert torch.equal(again, draws[5][[3, 0]])
    other_seed = torch.stack(
        [select_targets(batch["masks"], batch["num_masks"], 1, s, keys)[:, 0, 0] for s in range(40)]
    )
    assert not torch.equal(other_seed, picks)


def test_training_pairs_random_and_all() -> None:
    batch = _rater_batch([3, 1, 2])
    x, y = training_pairs(batch, "all", 0, 0)
    assert x.shape == (6, 3, 2, 2) and y.shape == (6, 2, 2)
    assert y[:, 0, 0].tolist() == [0, 1, 2, 10, 20, 21]
    assert x[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 2, 2]  # each image beside its own raters
    x, y = training_pairs(batch, "random", 0, 3)
    assert torch.equal(x, batch["image"]) and y[1, 0, 0] == 10
    one = {"image": batch["image"], "mask": batch["mask"]}  # no "masks": the mask itself
    assert training_pairs(one, "all", 0, 0)[1] is batch["mask"]


def test_training_pairs_for_a_model_that_scores_sets() -> None:
    batch = _rater_batch([3, 1, 2])
    for rater in ("all", "auto"):  # the padded masks as they are: (B, R, H, W)
        x, y = training_pairs(batch, rater, 0, 0, target_sets=True)
        assert x is batch["image"] and y is batch["masks"]
    # "auto" without sets is "random"
    assert torch.equal(
        training_pairs(batch, "auto", 0, 3)[1], training_pairs(batch, "random", 0, 3)[1]
    )
    # one mask per item: a set of one (the objective scores it as the mask itself)
    single = _rater_batch([1, 1])
    for rater in ("all", "auto"):
        y = training_pairs(single, rater, 0, 0, target_sets=True)[1]
        assert y.shape == (2, 1, 2, 2) and torch.equal(y[:, 0], single["masks"][:, 0])
