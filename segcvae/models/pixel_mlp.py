"""A per-pixel MLP evaluated for S samples that differ only by the first layer's bias.

The full-resolution generation head (``GenerationNet(inject="full")`` with a global or categorical z)
and the Probabilistic U-Net's ``fcomb`` both compute, for every pixel p and sample s,

    logits[s, :, p] = base[:, p] + L_n(relu(... L_1(relu(context[:, p] + bias[s])) ...))

where ``L_i`` are 1x1 convolutions. Written as convolutions over a (B*S, C, H, W) batch, every
intermediate is a tensor of B*S full-resolution maps (268 MB for 8 images, 16 samples, 32 channels at
128x128): the time goes to allocating and streaming those tensors, not to arithmetic. Here the same
arithmetic runs as matrix products on pixel blocks of a bounded size, so intermediates stay small
and are reused. Under autograd (:class:`_BlockedMLP`) the blocks' hidden activations are kept
for the backward pass while they fit in ``SAVE_BYTES`` (the default job's 64x64 batches), and
recomputed block by block otherwise, so training memory does not grow with S. Measured on 2 CPU
cores (one thread, 8 images at 128x128, 32 channels, K = 4): 8 samples 1.5 s -> 0.32 s, 16 samples
3.0 s -> 0.69 s. torch has no fused op for this (``torch.compile`` could fuse it, but needs a
compiler toolchain at run time and minutes of compilation), hence these loops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Rows (samples x pixels) per block: 32 channels x 32768 rows x 4 bytes = 4 MB per intermediate.
BLOCK_ROWS = 1 << 15
#: Under autograd the hidden activations of all blocks are kept for the backward pass when they
#: take at most this many bytes, and recomputed block by block otherwise: a (B, S, C, H, W)
#: tensor per hidden layer, two for the generation head (16 images x 8 codes x 32 channels at
#: 64x64: 134 MB; 8 images at 128x128 with 16 channels: the same).
SAVE_BYTES = 160 << 20


def is_tracing() -> bool:
    """Whether a tracer (ONNX export, torch.jit, torch.compile) is recording: it gets one block, so
    the graph has no Python loop over the batch and keeps its dynamic shapes."""
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)()  # torch >= 2.3
    return torch.jit.is_tracing() or compiling or torch.onnx.is_in_onnx_export()


def _autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)  # torch >= 2.4
    except TypeError:
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _blocks(height_width: int, samples: int, block_rows: int) -> tuple[int, range]:
    n = max(1, block_rows // samples)
    return n, range(0, height_width, n)


def _hidden_layers(pre: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """The hidden activations of one block (each (S, n, C_i), after their ReLU), the inputs of the
    layers: pre (S, n, C) is a fresh tensor whose ReLU is taken in place."""
    h = pre.clamp_min_(0)
    hidden = [h]
    lead = h.shape[:-1]
    for i in range(0, len(params) - 2, 2):
        w, b = params[i], params[i + 1]
        h = torch.addmm(b, h.reshape(-1, h.shape[-1]), w.t()).view(*lead, -1).clamp_min_(0)
        hidden.append(h)
    return hidden


def _forward_block(pre: Tensor, params: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """``layers(relu(pre))`` for one block: logits (S, K, n) and :func:`_hidden_layers`."""
    hidden = _hidden_layers(pre, params)
    w, b = params[-2], params[-1]
    return torch.matmul(w, hidden[-1].transpose(-1, -2)) + b[:, None], hidden


class _BlockedMLP(torch.autograd.Function):
    """``sample_mlp`` under autograd: blocks in the forward pass, and in the backward pass.

    The blocks' hidden activations are kept when they take at most ``save_bytes``; otherwise only
    the inputs are saved and each block's activations are recomputed when its gradient is needed,
    so memory does not go into (B, S, C, H, W) tensors. The backward pass is written out
    (matrix products on views, ReLU derivatives by autograd's ``threshold_backward`` kernel):
    multiplying by a boolean mask spent most of the time converting the mask and copying.
    """

    @staticmethod
    def forward(ctx, context, bias, base, block_rows, save_bytes, *params):  # type: ignore[override]
        b, hw, _ = context.shape
        n, starts = _blocks(hw, b * bias.shape[1], block_rows)
        out = context.new_empty(b, bias.shape[1], params[-2].shape[0], hw)
        widths = [params[i].shape[1] for i in range(0, len(params), 2)]
        size = b * bias.shape[1] * hw * sum(widths) * context.element_size()
        keep = size <= save_bytes
        kept: list[Tensor] = []  # every block's hidden activations, block after block
        # Detached: torch.matmul folds (K, C) @ (B, S, C, n) into one (B*S*n, C) @ (C, K) product
        # when the weight requires grad, 3-4x slower on CPU than the batched product it uses
        # otherwise (equal up to rounding).
        weights = [t.detach() for t in params]
        with torch.no_grad():
            for p in starts:  # every image and sample of n pixels at once: (B, S, n, C)
                pre = torch.add(context[:, None, p : p + n], bias[:, :, None, :])
                out[..., p : p + n], hidden = _forward_block(pre, weights)
                if keep:
                    kept += hidden
        if base is not None:
            out += base.unsqueeze(1)
        ctx.block_rows = block_rows
        ctx.has_base = base is not None
        ctx.num_params = len(params)
        # intermediates saved as the inputs are (seen by saved-tensor hooks: the benchmark counts them)
        ctx.save_for_backward(context, bias, *params, *kept)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        context, bias, *saved = ctx.saved_tensors
        params, kept = saved[: ctx.num_params], saved[ctx.num_params :]
        layers = len(params) // 2  # hidden activations per block
        b, hw, _ = context.shape
        n, starts = _blocks(hw, b * bias.shape[1], ctx.block_rows)
        g_context = torch.zeros_like(context)
        g_bias = torch.zeros_like(bias)
        g_params = [torch.zeros_like(t) for t in params]
        for i, p in enumerate(starts):
            if kept:
                hidden = list(kept[i * layers : (i + 1) * layers])
            else:
                pre = torch.add(context[:, None, p : p + n], bias[:, :, None, :])  # (B, S, n', C)
                hidden = _hidden_layers(pre, params)
            shape = hidden[0].shape
            g = grad_out[..., p : p + n].transpose(-1, -2)  # (B, S, n', K), a view
            g = g.reshape(-1, g.shape[-1])  # K is small: this copy is cheap
            for layer in range(len(hidden) - 1, -1, -1):
                w = params[2 * layer]
                h = hidden[layer].view(g.shape[0], -1)  # input of this layer (after its ReLU)
                g_params[2 * layer].addmm_(g.t(), h)
                g_params[2 * layer + 1] += g.sum(dim=0)
                # the layer, then the ReLU before it (autograd's own kernel for a ReLU's gradient)
                g = torch.ops.aten.threshold_backward(g @ w, h, 0)
            g = g.view(shape)  # (B, S, n', C): d loss / d pre
            g_context[:, p : p + n] += g.sum(dim=1)
            g_bias += g.sum(dim=2)
        g_base = grad_out.sum(dim=1) if ctx.has_base else None
        return g_context, g_bias, g_base, None, None, *g_params


def sample_mlp(
    context: Tensor,
    bias: Tensor,
    layers: Sequence[nn.Conv2d],
    base: Tensor | None = None,
    block_rows: int = BLOCK_ROWS,
    save_bytes: int = SAVE_BYTES,
) -> Tensor:
    """Logits of S samples of a per-pixel MLP whose samples differ by a first-layer bias.

    Args:
        context: The image-dependent pre-activation of the first hidden layer (B, C, H, W).
        bias: The sample-dependent part of that pre-activation (B, S, C).
        layers: The 1x1 convolutions after the first ReLU, C -> ... -> K; a ReLU follows every one
            but the last. Each must have a bias.
        base: Logits added to every sample's output (B, K, H, W) (the baseline's y_hat), or None.
        block_rows: Samples x pixels per block (bounds the intermediates' memory).
        save_bytes: Under autograd, keep the hidden activations for the backward pass when they
            take at most this many bytes; recompute them there otherwise.

    Returns:
        Logits (B, S, K, H, W): ``base + layers(relu(context + bias))`` for every sample.
    """
    b, _, height, width = context.shape
    params: list[Tensor] = []
    for conv in layers:
        params += [conv.weight.flatten(1), conv.bias]
    ctx = context.flatten(2).transpose(1, 2)  # (B, HW, C), a view
    base_flat = None if base is None else base.flatten(2)  # (B, K, HW)
    if is_tracing():  # one block, plain autograd: export graphs keep their dynamic shapes
        out = _forward_block(ctx[:, None] + bias[:, :, None, :], params)[0]  # (B, S, K, HW)
        if base_flat is not None:
            out = out + base_flat[:, None]
        return out.unflatten(-1, (height, width))
    device = context.device.type
    mixed = _autocast(device)
    if mixed:  # mixed precision elsewhere: the head computes in float32 (still blocked)
        ctx, bias = ctx.float(), bias.float()
        params = [t.float() for t in params]
        base_flat = None if base_flat is None else base_flat.float()
    with torch.autocast(device, enabled=False) if mixed else contextlib.nullcontext():
        out = _BlockedMLP.apply(ctx.contiguous(), bias, base_flat, block_rows, save_bytes, *params)
    return out.unflatten(-1, (height, width))
