"""One-hot maps and the multi-scale targets built from them once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segcvae.labels import one_hot
from segcvae.losses import soft_targets
from segcvae.losses._functional import scale_targets


def test_one_hot_matches_torch_one_hot_with_ignored_pixels_zero() -> None:
    y = torch.randint(0, 4, (2, 5, 6))
    y[0, 0] = 255
    y[1, 2, 3] = -1
    valid = (y >= 0) & (y < 4)
    expected = F.one_hot(y.clamp(0, 3), 4).permute(0, 3, 1, 2) * valid.unsqueeze(1)
    got = one_hot(y, 4)
    assert got.dtype == torch.float32 and got.shape == (2, 4, 5, 6)
    assert torch.equal(got, expected.float())
    assert got.stride() == expected.stride()  # the same layout (convolutions read it as before)
    assert got[0, :, 0].sum() == 0 and got[1, :, 2, 3].sum() == 0


def test_scale_targets_are_class_fractions_at_each_size() -> None:
    y = torch.randint(0, 3, (3, 16, 16))
    y[:, :3] = 255
    valid = (y >= 0) & (y < 3)
    full = (F.one_hot(y.clamp(0, 2), 3).permute(0, 3, 1, 2) * valid.unsqueeze(1)).float()
    sizes = [(4, 4), (8, 8), (16, 16)]
    for (t, v), size in zip(scale_targets(y, 3, sizes), sizes, strict=True):
        ref = F.avg_pool2d(full, 16 // size[0])  # the share of each class in each cell
        torch.testing.assert_close(t, ref)
        torch.testing.assert_close(v, F.avg_pool2d(valid.float().unsqueeze(1), 16 // size[0])[:, 0])
    t, v = soft_targets(y, 3, (4, 4))  # one size: the same as scale_targets
    assert torch.equal(t, scale_targets(y, 3, [(4, 4)])[0][0])
