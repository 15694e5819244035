"""Resumable data order and per-item seeded augmentation."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from segcvae.engine.data import (
    ItemSeededTransform,
    ResumableSampler,
    SeededAugmentation,
    collate,
    train_loader,
)


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
