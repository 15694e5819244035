"""sample_mlp equals the 1x1-convolution head it replaces, in every mode it runs in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcvae.models.pixel_mlp import sample_mlp


def _head(c: int = 6, k: int = 3, layers: int = 2) -> list[nn.Conv2d]:
    torch.manual_seed(0)
    convs = [nn.Conv2d(c, c, 1) for _ in range(layers - 1)]
    return [*convs, nn.Conv2d(c, k, 1)]


def _reference(context, bias, convs, base):
    """The same head as 1x1 convolutions over a (B*S, C, H, W) batch."""
    b, s = bias.shape[:2]
    h = (context.unsqueeze(1) + bias[..., None, None]).flatten(0, 1)
    for conv in convs:
        h = conv(torch.relu(h))
    out = h.unflatten(0, (b, s))
    return out if base is None else out + base.unsqueeze(1)


@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("with_base", [True, False])
@pytest.mark.parametrize("block_rows", [7, 1 << 15])  # many ragged blocks, and one block
def test_equals_the_convolution_head(layers, with_base, block_rows):
    convs = _head(layers=layers)
    g = torch.Generator().manual_seed(1)
    context = torch.randn(2, 6, 5, 7, generator=g)
    bias = torch.randn(2, 4, 6, generator=g)
    base = torch.randn(2, 3, 5, 7, generator=g) if with_base else None
    expected = _reference(context, bias, convs, base)
    with torch.no_grad():
        fast = sample_mlp(context, bias, convs, base, block_rows=block_rows)
    assert fast.shape == (2, 4, 3, 5, 7)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)
    trained = sample_mlp(context, bias, convs, base, block_rows=block_rows)  # autograd path
    torch.testing.assert_close(trained, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("save_bytes", [0, 1 << 30])  # recomputed, and kept from the forward
def test_gradients_equal_the_convolution_head(save_bytes):
    convs = _head(layers=3)
    g = torch.Generator().manual_seed(2)
    context = torch.randn(2, 6, 4, 4, generator=g, requires_grad=True)
    bias = torch.randn(2, 3, 6, generator=g, requires_grad=True)
    base = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    weight = torch.randn(2, 3, 3, 4, 4, generator=g)
    leaves = [context, bias, base, *[p for c in convs for p in c.parameters()]]
    expected = torch.autograd.grad((_reference(context, bias, convs, base) * weight).sum(), leaves)
    out = sample_mlp(context, bias, convs, base, 5, save_bytes=save_bytes)
    got = torch.autograd.grad((out * weight).sum(), leaves)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_kept_activations_give_the_recomputed_gradients_exactly():
    """Keeping the blocks' activations changes where they come from, not a single bit."""
    convs = _head(layers=3)
    g = torch.Generator().manual_seed(3)
    context = torch.randn(2, 6, 5, 7, generator=g, requires_grad=True)
    bias = torch.randn(2, 4, 6, generator=g, requires_grad=True)
    weight = torch.randn(2, 4, 3, 5, 7, generator=g)
    leaves = [context, bias, *[p for c in convs for p in c.parameters()]]
    grads = [
        torch.autograd.grad(
            (sample_mlp(context, bias, convs, block_rows=9, save_bytes=sb) * weight).sum(), leaves
        )
        for sb in (0, 1 << 30)
    ]
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_a_tracer_gets_one_block(monkeypatch):
    """Under export tracing there is no Python loop over the batch (dynamic shapes survive)."""
    import segcvae.models.pixel_mlp as pm

    convs = _head()
    context, bias = torch.randn(3, 6, 4, 4), torch.randn(3, 2, 6)
    calls = []
    real = pm._forward_block
    monkeypatch.setattr(
        pm, "_forward_block", lambda pre, p: calls.append(pre.shape) or real(pre, p)
    )
    monkeypatch.setattr(pm, "is_tracing", lambda: True)
    with torch.no_grad():
        out = sample_mlp(context, bias, convs, block_rows=4)
    assert calls[0] == (3, 2, 16, 6)  # every image, sample and pixel at once
    torch.testing.assert_close(out, _reference(context, bias, convs, None), rtol=1e-5, atol=1e-5)


def test_under_autocast_the_head_computes_in_float32_in_blocks():
    """Mixed precision elsewhere (bf16 convolutions): the head's products stay float32 and blocked,
    so its result and gradients equal the float32 head's."""
    convs = _head()
    context = torch.randn(2, 6, 4, 4, requires_grad=True)
    bias = torch.randn(2, 3, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sample_mlp(context.bfloat16(), bias, convs, block_rows=5)
    assert out.dtype == torch.float32
    expected = _reference(context.bfloat16().float(), bias, convs, None)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert context.grad is not None and torch.isfinite(context.grad).all()
