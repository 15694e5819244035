"""How the benchmark measures: interleaved wall times, ratios over rounds, peak memory, the machine.

Used by :mod:`segcvae.benchmark`, whose docstring says how the numbers are taken and read.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall times of each function, measured in rounds (every function once per round).

    Args:
        fns: Name -> function; the first is the reference the others are compared with.
        device: Where the work runs (CUDA is synchronised around each call).
        repeats: Rounds.
        warmup: Untimed rounds first.

    Returns:
        Name -> list of ``repeats`` times in seconds, in round order.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Median, min and max of the per-round ratios ``num[i] / den[i]``."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return {"ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def median_time(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2
) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    return statistics.median(interleaved_times({"f": fn}, device, repeats, warmup)["f"])


def peak_memory_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak tensor memory torch allocates while ``fn`` runs (see :mod:`segcvae.benchmark`'s docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Allocations are an op's own (self) memory, frees are "[memory]" events with a negative size.
    current = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Share of all CPUs' time spent busy during ``seconds`` (Linux ``/proc/stat``; None elsewhere).

    Unlike the load average, which lags by a minute (a benchmark run right after another reads the
    first one's load), this says whether other work is running now.
    """

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1.0 - (idle1 - idle0) / total


def machine(threads: int) -> dict[str, Any]:
    """Where the numbers come from."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": threads,
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info
