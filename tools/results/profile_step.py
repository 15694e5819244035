"""The per-op profile of one training step (forward, loss, backward, Adam) of the CNN and of the
default model, and what the default spends beyond the CNN, op by op.

    python tools/results/profile_step.py [--size 128] [--batch 8] [--threads 2] [--rounds 7]
        [--raters N] [--classes K] [section.key=value ...]

The model is put in the memory format the trainer uses (``train.channels_last``). ``--raters N``
gives the default model a set of N masks per image (``train.rater: auto``: the shapes job trains
on 3, QUBIQ on 7); without it, one mask (as ``tools/benchmark.py``'s training row). The overrides
change both models (QUBIQ: ``--classes 2 --raters 7 "model.decoder_channels=[64,32,32,16,16]"``).
The step is run twice before it is profiled; the table gives the profiler's self CPU times (the
calling thread), and the line above it the wall clock of ``--rounds`` interleaved steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from segcvae.config import Config

try:
    from segcvae.models import build_objective, create_model
except ImportError:  # the code before the family registry (2026-12-04), for a "before" profile
    from segcvae.losses import build_objective
    from segcvae.models import create_model


def step_fn(overrides: list[str], size: int, batch: int, raters: int, classes: int):
    """A closure doing one training step of the model ``overrides`` describe."""
    cfg = Config.from_yaml(None, [*overrides, f"data.image_size={size}"])
    torch.manual_seed(0)
    model = create_model(cfg, classes).train()
    objective = build_objective(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    shape = (batch, raters, size, size) if raters else (batch, size, size)
    y = torch.randint(0, classes, shape, generator=g)
    if getattr(cfg.train, "channels_last", False):  # as the trainer does (absent before 2026-12-04)
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    try:  # the trainer's Adam (fused where torch has the kernel, since 2026-12-05)
        from segcvae.engine.optim import build_optimizer

        opt = build_optimizer(model, cfg.train)
    except ImportError:  # older code
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = objective(model(x, y), y)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15, help="ops listed")
    p.add_argument("--raters", type=int, default=0, help="masks per image for the default (0: one)")
    p.add_argument("--classes", type=int, default=4, help="K")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (wall clock)")
    p.add_argument("overrides", nargs="*", help="section.key=value for both models")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cnn_overrides = [*args.overrides, "model.arch=cnn"]
    try:
        Config.from_yaml(None, cnn_overrides)
    except Exception:  # before the registry: the CNN was loss.objective=cnn
        cnn_overrides = [*args.overrides, "loss.objective=cnn"]
    steps = {
        "cnn": step_fn(cnn_overrides, args.size, args.batch, 0, args.classes),
        "default": step_fn(args.overrides, args.size, args.batch, args.raters, args.classes),
    }
    self_ms: dict[str, dict[str, float]] = {}
    for name, step in steps.items():
        step()
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        self_ms[name] = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
        total = sum(self_ms[name].values())
        print(f"{name}: {total:.0f} ms of self CPU time in one step")
    times: dict[str, list[float]] = {name: [] for name in steps}
    ratios = []
    for _ in range(args.rounds):  # interleaved: a change in load hits both alike
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
        ratios.append(times["default"][-1] / times["cnn"][-1])
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"wall clock, median of {args.rounds} interleaved rounds: CNN {med['cnn']:.3f} s, "
        f"default {med['default']:.3f} s, default / CNN {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f})"
    )
    print("\n| op | CNN (ms) | default (ms) | default - CNN (ms) |\n|---|---:|---:|---:|")
    keys = set(self_ms["cnn"]) | set(self_ms["default"])
    extra = {k: self_ms["default"].get(k, 0.0) - self_ms["cnn"].get(k, 0.0) for k in keys}
    for k in sorted(keys, key=lambda k: -abs(extra[k]))[: args.rows]:
        print(
            f"| {k} | {self_ms['cnn'].get(k, 0):.1f} | {self_ms['default'].get(k, 0):.1f} | {extra[k]:+.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
