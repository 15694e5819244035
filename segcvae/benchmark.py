"""Speed and memory benchmark: the ratios that show features are computed once.

Run ``python tools/benchmark.py --json OUT.json`` (or ``segcvae benchmark``). Everything is measured
in one run on one machine; the ratios are the headline, absolute times are this machine's.

Training memory on CPU is the bytes autograd saves for backward (deduplicated by storage) plus
parameters, gradients and Adam's two moments; on CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from segcvae.config import Config
from segcvae.losses import build_objective
from segcvae.metrics import conditional_log_likelihood
from segcvae.models import create_model

OBJECTIVES = ("cnn", "gsnn", "cvae", "hybrid")
# The repository's LFW config (found from this file, not from the working directory).
DEFAULT_LOADER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lfw_hybrid.yaml"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2
) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_config(objective: str, encoder: str, image_size: int) -> Config:
    """The paper's model settings at the benchmark size."""
    cfg = Config()
    cfg.loss.objective = objective
    cfg.model.encoder_name = encoder
    cfg.data.image_size = image_size
    return cfg


def train_step_fn(cfg: Config, num_classes: int, x: torch.Tensor, y: torch.Tensor):
    """A closure doing forward + backward + Adam step, and the model it trains."""
    model = create_model(cfg, num_classes).to(x.device).train()
    objective = build_objective(cfg.loss)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)

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

    objective = build_objective(cfg.loss)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = objective(model(x, y), y)["loss"]
    loss.backward()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return sum(seen.values()) + 4 * params  # weights, gradients, Adam m and v


def model_benchmark(
    device: torch.device, batch: int, image_size: int, encoder: str, repeats: int, classes: int = 3
) -> dict[str, float]:
    """Sampling, likelihood, training-step and memory ratios (hybrid model unless named)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size, generator=g).to(device)
    y = torch.randint(0, classes, (batch, image_size, image_size), generator=g).to(device)
    torch.manual_seed(0)
    model = create_model(bench_config("hybrid", encoder, image_size), classes).to(device).eval()
    r: dict[str, float] = {}
    with torch.no_grad():
        r["deterministic_s"] = median_time(lambda: model.predict(x), device, repeats)
        r["sample16_s"] = median_time(lambda: model.sample(x, 16), device, repeats)
        r["cll_is50_s"] = median_time(
            lambda: conditional_log_likelihood(model, x, y, n_samples=50, method="is"),
            device,
            repeats,
        )
    r["sample16_vs_deterministic"] = r["sample16_s"] / r["deterministic_s"]
    r["cll_is50_vs_deterministic"] = r["cll_is50_s"] / r["deterministic_s"]
    for objective in OBJECTIVES:
        step, _ = train_step_fn(bench_config(objective, encoder, image_size), classes, x, y)
        t = median_time(step, device, repeats)
        r[f"train_step_{objective}_s"] = t
        r[f"train_images_per_s_{objective}"] = batch / t
    for objective in ("gsnn", "cvae", "hybrid"):
        r[f"train_step_{objective}_vs_cnn"] = r[f"train_step_{objective}_s"] / r["train_step_cnn_s"]
    mem = {
        o: train_memory_bytes(bench_config(o, encoder, image_size), classes, x, y)
        for o in ("cnn", "hybrid")
    }
    r["peak_mem_train_cnn_mb"] = mem["cnn"] / 2**20
    r["peak_mem_train_hybrid_mb"] = mem["hybrid"] / 2**20
    r["peak_mem_train_hybrid_vs_cnn"] = mem["hybrid"] / mem["cnn"]
    return r


def loader_benchmark(
    cfg_path: Path, root: str, masks: str, batches: int, device: torch.device, repeats: int
) -> dict[str, float]:
    """LFW loader throughput at the config's size, and its ratio to training consumption."""
    from segcvae.data import build_dataset, build_transforms

    cfg = Config.from_yaml(cfg_path, [f"data.root={root}", f"data.lfw_masks={masks}"])
    dataset = build_dataset(cfg.data, "train", build_transforms(cfg.data, "train"))
    r: dict[str, float] = {}
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg.train.batch_size,
            shuffle=True,
            num_workers=workers,
            persistent_workers=False,
        )
        it = iter(loader)
        next(it)  # start-up (worker spawn) is not throughput
        t0 = time.perf_counter()
        n = 0
        for _ in range(batches):
            n += len(next(it)["image"])
        r[f"loader_images_per_s_{workers}_workers"] = n / (time.perf_counter() - t0)
    g = torch.Generator().manual_seed(0)
    size, bs = cfg.data.image_size, cfg.train.batch_size
    x = torch.randn(bs, 3, size, size, generator=g).to(device)
    y = torch.randint(0, dataset.num_classes, (bs, size, size), generator=g).to(device)
    step, _ = train_step_fn(cfg, dataset.num_classes, x, y)
    t = median_time(step, device, repeats, warmup=1)
    r["train_consumption_images_per_s"] = bs / t
    r["loader_vs_train_consumption"] = (
        r["loader_images_per_s_1_workers"] / r["train_consumption_images_per_s"]
    )
    r["loader_config"] = str(cfg_path)  # type: ignore[assignment]
    return r


def machine() -> dict[str, str | int]:
    """A short description of where the numbers come from."""
    info: dict[str, str | int] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--lfw-root",
        default="",
        help="LFW folder (data.root) for the loader part; '' (the default) skips it",
    )
    p.add_argument(
        "--lfw-masks", default="", help="extracted label folder ('' = found under --lfw-root)"
    )
    p.add_argument(
        "--loader-config",
        type=Path,
        default=DEFAULT_LOADER_CONFIG,
        help=f"config of the loader part (default: {DEFAULT_LOADER_CONFIG})",
    )
    p.add_argument("--loader-batches", type=int, default=10)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)

    results: dict[str, object] = {"machine": machine(), "batch": args.batch}
    results["image_size"] = args.image_size
    results["encoder"] = args.encoder
    results.update(model_benchmark(device, args.batch, args.image_size, args.encoder, args.repeats))
    if args.lfw_root:
        results.update(
            loader_benchmark(
                args.loader_config,
                args.lfw_root,
                args.lfw_masks,
                args.loader_batches,
                device,
                args.repeats,
            )
        )
    targets = {
        "sample16_vs_deterministic": 1.5,
        "cll_is50_vs_deterministic": 3.0,
        "train_step_hybrid_vs_cnn": 1.5,
        "train_step_cvae_vs_cnn": 1.3,
        "peak_mem_train_hybrid_vs_cnn": 1.5,
    }
    width = max(len(k) for k in results)
    for key, value in results.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        goal = ""
        if key in targets:
            goal = f"  (target <= {targets[key]}: {'ok' if value <= targets[key] else 'MISSED'})"
        elif key == "loader_vs_train_consumption":
            goal = f"  (target >= 2: {'ok' if value >= 2 else 'MISSED'})"
        print(f"{key:<{width}}  {text}{goal}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
