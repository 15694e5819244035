"""Speed and memory benchmark: what sampling and likelihoods cost relative to one prediction.

Run ``python tools/benchmark.py --json OUT.json`` (or ``segcvae benchmark``). Everything is measured
in one run on one machine, so the ratios are the headline; absolute times are this machine's.

How it measures:

* Every ratio is taken from **interleaved** runs: one round times the deterministic prediction and
  then each sampling setting, and the rounds repeat, so a change in machine load hits both sides
  of a ratio alike. The ratio reported is the median over rounds of the per-round ratios, with
  the smallest and largest per-round ratio as its spread.
* The thread count is pinned (``--threads``, default: the cores available to this process) and
  reported; the share of busy CPU time in the second before the run and the 1-minute load average
  before and after are recorded, and a warning is printed when other work is running, because a
  ratio measured under load can be off by 2x.
* Each round also times the plain CNN's prediction at the same batch and size, so every family's
  prediction and 16 hypotheses are put in scale against it (``*_vs_cnn``).
* The likelihood column runs ``conditional_log_likelihood(method="is", n_samples=50)``, which is
  importance sampling where the family has a proposal; the row names the estimator that ran
  (``exact`` for the CNN and a categorical latent, whose Z codes are summed, ``mc`` for SSN).
* The default grid is the headline setting (batch 8, 128x128) for every family, a few minutes on
  2 CPU cores; ``--settings all`` adds batch 1 and 256x256.
* The loader part uses the embedded shapes data (no files needed); ``--loader lfw --lfw-root DIR``
  measures the LFW loader instead.

Memory: the peak of tensor memory allocated by torch during one call (for 100 hypotheses: their
label maps decoded ``--chunk`` at a time, as evaluation does with ``eval.sample_chunk``), from the profiler's
allocation events on CPU (``torch.cuda.max_memory_allocated`` on CUDA). Training memory on CPU is
the bytes autograd saves for backward (deduplicated by storage) plus parameters, gradients and
Adam's two moments.

Acceptance targets are stated in docs/RESULTS.md, not here: this tool only measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from segcvae.benchmark_timing import (
    cpu_busy_fraction,
    interleaved_times,
    machine,
    median_time,
    peak_memory_bytes,
    ratio_stats,
)
from segcvae.config import Config, ConfigError
from segcvae.engine.optim import build_optimizer
from segcvae.inference import decode_samples_chunked
from segcvae.metrics import conditional_log_likelihood
from segcvae.models import build_objective, create_model
from segcvae.registry import family_names, get_family

__all__ = [
    "benchmark_families",
    "cpu_busy_fraction",
    "family_config",
    "interleaved_times",
    "machine",
    "main",
    "median_time",
    "peak_memory_bytes",
    "ratio_stats",
    "sampling_rows",
    "train_memory_bytes",
    "training_rows",
]

#: The family every other is put in scale against (``*_vs_cnn``): the plain CNN.
REFERENCE = "cnn"
SETTINGS = ((8, 128), (1, 128), (8, 256))  # (batch, image size)


def benchmark_families() -> dict[str, list[str]]:
    """Every registered family (at the defaults, ``model.arch=<name>``) and the variants the
    families name (``ModelFamily.benchmark_variants``): row name -> config overrides."""
    rows: dict[str, list[str]] = {}
    for name in family_names():
        rows[name] = [f"model.arch={name}"]
        for variant, overrides in get_family(name).benchmark_variants.items():
            rows[variant] = [f"model.arch={name}", *overrides]
    return rows


def family_config(name: str, encoder: str, image_size: int) -> Config | None:
    """The defaults with a benchmark row's overrides (:func:`benchmark_families`), or None when the
    config cannot express it."""
    return _config(benchmark_families()[name], encoder, image_size)


def training_variants() -> dict[str, list[str]]:
    """The rows of the training-step part: every registered family at the defaults, or in its place
    the rows it names (``ModelFamily.benchmark_training_variants``, e.g. Sohn et al.'s objectives):
    row name -> config overrides."""
    rows: dict[str, list[str]] = {}
    for name in family_names():
        variants = get_family(name).benchmark_training_variants or {name: []}
        for row, overrides in variants.items():
            rows[row] = [f"model.arch={name}", *overrides]
    return rows


def _config(overrides: list[str], encoder: str, image_size: int) -> Config | None:
    """The defaults with ``overrides``, the encoder and the image size; None when the config
    cannot express it."""
    try:
        cfg = Config.from_yaml(None, overrides)
    except ConfigError:
        return None
    cfg.model.encoder_name = encoder
    cfg.data.image_size = image_size
    return cfg


def _inputs(batch: int, size: int, classes: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, classes, (batch, size, size), generator=g).to(device)
    return x, y


def sampling_rows(
    families: list[str],
    settings: list[tuple[int, int]],
    encoder: str,
    device: torch.device,
    repeats: int,
    chunk: int,
    classes: int = 4,
) -> list[dict[str, Any]]:
    """One row per (family, batch, size): deterministic time and the interleaved ratios."""
    rows = []
    for name in families:
        for batch, size in settings:
            cfg = family_config(name, encoder, size)
            if cfg is None:
                continue
            torch.manual_seed(0)
            model = create_model(cfg, classes).to(device).eval()
            cnn_cfg = family_config(REFERENCE, encoder, size)
            assert cnn_cfg is not None
            cnn = create_model(cnn_cfg, classes).to(device).eval()
            x, y = _inputs(batch, size, classes, device)
            fns: dict[str, Callable[[], object]] = {
                "deterministic": lambda m=model, x=x: m.predict(x),
                "cnn": lambda c=cnn, x=x: c.predict(x),  # the plain CNN's prediction, for scale
                "hyp16": lambda m=model, x=x: decode_samples_chunked(m, m.encode(x), 16, chunk),
                "hyp100": lambda m=model, x=x: decode_samples_chunked(m, m.encode(x), 100, chunk),
                "cll_is50": lambda m=model, x=x, y=y: conditional_log_likelihood(
                    m, x, y, n_samples=50, method="is"
                ),
            }
            with torch.inference_mode():
                t = interleaved_times(fns, device, repeats)
            methods = model.likelihood_methods
            row: dict[str, Any] = {
                "family": name,
                "batch": batch,
                "image_size": size,
                "deterministic_s": statistics.median(t["deterministic"]),
                # what conditional_log_likelihood(method="is") runs for this model
                "likelihood_method": "is" if "is" in methods else methods[-1],
            }
            for key in ("hyp16", "hyp100", "cll_is50"):
                stats = ratio_stats(t[key], t["deterministic"])
                row[f"{key}_s"] = statistics.median(t[key])
                row[f"{key}_vs_deterministic"] = stats["ratio"]
                row[f"{key}_spread"] = [stats["min"], stats["max"]]
            for key in ("deterministic", "hyp16"):
                row[f"{key}_vs_cnn"] = ratio_stats(t[key], t["cnn"])["ratio"]
            rows.append(row)
    return rows


def train_step_fn(cfg: Config, num_classes: int, x: torch.Tensor, y: torch.Tensor):
    """A closure doing forward + backward + Adam step, and the model it trains."""
    model = create_model(cfg, num_classes).to(x.device).train()
    if cfg.train.channels_last:  # as the trainer does
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    objective = build_objective(cfg)
    opt = build_optimizer(model, cfg.train)  # the trainer's Adam (fused where torch has it)

    def step() -> None:
        loss = objective(model(x, y), y)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, model


def train_memory_bytes(cfg: Config, num_classes: int, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak training memory of one step (see the module docstring for how it is counted)."""
    step, model = train_step_fn(cfg, num_classes, x, y)
    if x.device.type == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats(x.device)
        step()
        return torch.cuda.max_memory_allocated(x.device)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    objective = build_objective(cfg)
    if cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = objective(model(x, y), y)["loss"]
    loss.backward()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return sum(seen.values()) + 4 * params  # weights, gradients, Adam m and v


def training_rows(
    encoder: str, batch: int, size: int, device: torch.device, repeats: int, classes: int = 4
) -> dict[str, Any]:
    """Training-step time of every row of :func:`training_variants` (each of Sohn et al.'s
    objectives of the default model, every other family at its defaults), interleaved with the
    CNN's; peak training memory of the CNN and of the default job's model (keys ``*_cvae_*``: its
    objective)."""
    x, y = _inputs(batch, size, classes, device)
    configs: dict[str, Config] = {}
    for row, overrides in training_variants().items():
        cfg = _config(overrides, encoder, size)
        assert cfg is not None, row
        configs[row] = cfg
    fns = {name: train_step_fn(cfg, classes, x, y)[0] for name, cfg in configs.items()}
    t = interleaved_times(fns, device, repeats)
    r: dict[str, Any] = {f"train_step_{o}_s": statistics.median(t[o]) for o in fns}
    for o in [k for k in fns if k != REFERENCE]:
        stats = ratio_stats(t[o], t[REFERENCE])
        r[f"train_step_{o}_vs_cnn"] = stats["ratio"]
        r[f"train_step_{o}_vs_cnn_spread"] = [stats["min"], stats["max"]]
    default_job = _config([], encoder, size)
    assert default_job is not None
    cnn = train_memory_bytes(configs[REFERENCE], classes, x, y)
    cvae = train_memory_bytes(default_job, classes, x, y)
    r["peak_mem_train_cnn_mb"] = cnn / 2**20
    r["peak_mem_train_cvae_mb"] = cvae / 2**20
    r["peak_mem_train_cvae_vs_cnn"] = cvae / cnn
    return r


def sampling_memory(
    encoder: str, batch: int, size: int, n: int, chunks: list[int], device: torch.device
) -> dict[str, float]:
    """Peak memory of n hypotheses (label maps, as evaluation and predict keep them) of the
    default job's model, for each ``eval.sample_chunk`` (MB); the image encoding is not counted."""
    cfg = _config([], encoder, size)
    assert cfg is not None
    torch.manual_seed(0)
    model = create_model(cfg, 4).to(device).eval()
    x, _ = _inputs(batch, size, 4, device)
    out = {}
    with torch.inference_mode():
        for c in chunks:
            ctx = model.encode(x)  # fresh: nothing decoded yet
            peak = peak_memory_bytes(
                lambda c=c, ctx=ctx: decode_samples_chunked(model, ctx, n, c, labels=True), device
            )
            out[f"peak_mem_hyp{n}_b{batch}_{size}px_chunk{c}_mb"] = peak / 2**20
    return out


def loader_benchmark(
    cfg: Config, batches: int, device: torch.device, repeats: int
) -> dict[str, float | str]:
    """Training-loader throughput at the config's size, and its ratio to training consumption."""
    from segcvae.data import build_dataset, build_transforms

    dataset = build_dataset(cfg.data, "train", build_transforms(cfg.data, "train"))
    r: dict[str, float | str] = {"loader_dataset": cfg.data.name}
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.train.batch_size, shuffle=True, num_workers=workers
        )
        it = iter(loader)
        next(it)  # start-up (worker spawn) is not throughput
        t0 = time.perf_counter()
        n = sum(len(next(it)["image"]) for _ in range(batches))
        r[f"loader_images_per_s_{workers}_workers"] = n / (time.perf_counter() - t0)
    size, bs = cfg.data.image_size, cfg.train.batch_size
    x, y = _inputs(bs, size, dataset.num_classes, device)
    step, _ = train_step_fn(cfg, dataset.num_classes, x, y)
    t = median_time(step, device, repeats, warmup=1)
    r["train_consumption_images_per_s"] = bs / t
    r["loader_vs_train_consumption"] = r["loader_images_per_s_1_workers"] / (bs / t)  # type: ignore[operator]
    return r


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the sampling rows: ratios to the family's own deterministic prediction
    (median over rounds, min-max in brackets), then to the plain CNN's prediction."""
    head = (
        "| family | batch | size | deterministic s | 16 hyps | 100 hyps | likelihood S=50 "
        "(estimator) | deterministic / CNN | 16 hyps / CNN |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        cells = [
            f"{r[f'{k}_vs_deterministic']:.2f}x ({r[f'{k}_spread'][0]:.2f}-{r[f'{k}_spread'][1]:.2f})"
            for k in ("hyp16", "hyp100", "cll_is50")
        ]
        cells[-1] += f" ({r['likelihood_method']})"
        lines.append(
            f"| {r['family']} | {r['batch']} | {r['image_size']} | {r['deterministic_s']:.3f} | "
            + " | ".join(cells)
            + f" | {r['deterministic_vs_cnn']:.2f}x | {r['hyp16_vs_cnn']:.2f}x |"
        )
    return "\n".join(lines)


def parse_settings(text: str) -> list[tuple[int, int]]:
    """``"8x128,1x128"`` -> [(8, 128), (1, 128)]."""
    out = []
    for part in text.split(","):
        b, s = part.lower().split("x")
        out.append((int(b), int(s)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = cores available)")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds per ratio")
    known = list(benchmark_families())
    p.add_argument(
        "--families", default=",".join(known), help="comma-separated: " + ", ".join(known)
    )
    p.add_argument(
        "--settings",
        default="8x128",
        help="batch x image size list, or 'all' for " + ",".join(f"{b}x{s}" for b, s in SETTINGS),
    )
    p.add_argument(
        "--chunk", type=int, default=16, help="hypotheses per decoding call (eval.sample_chunk)"
    )
    p.add_argument("--memory", default="8x256", help="batch x size for the 100-hypothesis memory")
    p.add_argument("--train-setting", default="8x128", help="batch x size of the training part")
    p.add_argument("--no-training", action="store_true", help="skip the training-step part")
    p.add_argument("--loader", choices=["shapes", "lfw", "none"], default="shapes")
    p.add_argument("--lfw-root", default="", help="LFW root for --loader lfw")
    p.add_argument("--loader-batches", type=int, default=10)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    threads = args.threads or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    busy = cpu_busy_fraction()
    if busy is not None and busy > 0.25:
        print(
            f"warning: {busy:.0%} of the CPU time was busy in the second before the run (1-minute "
            f"load average {load_before:.2f}); other work on this machine skews the ratios "
            "(measure on an idle machine)"
        )
    results: dict[str, Any] = {
        "machine": machine(threads),
        "load_before": load_before,
        "cpu_busy_before": busy,
    }
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(known))
    if unknown:
        p.error(f"unknown families {unknown}; valid: {', '.join(known)}")
    settings = list(SETTINGS) if args.settings == "all" else parse_settings(args.settings)
    rows = sampling_rows(families, settings, args.encoder, device, args.repeats, args.chunk)
    results["sampling"] = rows
    ((mb, ms),) = parse_settings(args.memory)
    results.update(sampling_memory(args.encoder, mb, ms, 100, sorted({args.chunk, 100}), device))
    if not args.no_training:
        ((tb, ts),) = parse_settings(args.train_setting)
        results.update(training_rows(args.encoder, tb, ts, device, args.repeats))
    if args.loader != "none":
        cfg = Config.from_yaml(None, [f"model.encoder_name={args.encoder}"])
        if args.loader == "lfw":
            if not args.lfw_root:
                p.error("--loader lfw needs --lfw-root DIR")
            cfg = Config.from_yaml(
                None,
                [
                    "data.name=lfw",
                    f"data.root={args.lfw_root}",
                    f"model.encoder_name={args.encoder}",
                ],
            )
        results.update(loader_benchmark(cfg, args.loader_batches, device, args.repeats))
    results["load_after"] = os.getloadavg()[0]

    print(
        f"threads {threads}, load average {load_before:.2f} before, {results['load_after']:.2f} after"
    )
    print(format_rows(rows))
    for key, value in results.items():
        if key in ("sampling", "machine"):
            continue
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key}  {text}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
