"""The benchmark runs end to end on a tiny model and reports every ratio."""

from __future__ import annotations

import json

import pytest
import torch

from segcvae.benchmark import interleaved_times, main, ratio_stats, train_memory_bytes
from tests.conftest import tiny_config


@pytest.mark.slow  # times real training steps
def test_benchmark_reports_interleaved_ratios(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--json", str(out), "--settings", "2x32", "--memory", "2x32", "--repeats", "2"]
    args += ["--train-setting", "2x32"]
    args += ["--encoder", "tu-test_efficientnet", "--threads", "1", "--loader-batches", "2"]
    args += ["--families", "cnn,sohn"]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert r["machine"]["threads"] == 1
    families = {row["family"] for row in r["sampling"]}
    assert {"cnn", "sohn"} <= families
    for row in r["sampling"]:
        for key in ("hyp16", "hyp100", "cll_is50"):
            lo, hi = row[f"{key}_spread"]
            assert 0 < lo <= row[f"{key}_vs_deterministic"] <= hi, (row["family"], key)
    assert r["train_step_hybrid_vs_cnn"] > 0
    assert r["peak_mem_train_cvae_mb"] > r["peak_mem_train_cnn_mb"]
    assert r["loader_dataset"] == "shapes" and r["loader_images_per_s_0_workers"] > 0
    # chunking bounds the memory of 100 hypotheses
    assert r["peak_mem_hyp100_b2_32px_chunk16_mb"] < r["peak_mem_hyp100_b2_32px_chunk100_mb"]


def test_interleaved_rounds_alternate_and_ratio_stats():
    calls = []
    times = interleaved_times(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        torch.device("cpu"),
        repeats=3,
        warmup=0,
    )
    assert calls == ["a", "b"] * 3 and len(times["a"]) == 3
    stats = ratio_stats([2.0, 4.0, 9.0], [1.0, 1.0, 3.0])
    assert stats == {"ratio": 3.0, "min": 2.0, "max": 4.0}


def test_decode_in_chunks_equals_one_call():
    from segcvae.inference import decode_samples_chunked
    from segcvae.models import create_model

    torch.manual_seed(0)
    model = create_model(tiny_config("hybrid"), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ctx = model.encode(x)
        torch.manual_seed(1)
        parts = decode_samples_chunked(model, ctx, 7, 3)
    assert parts.shape == (2, 7, 3, 32, 32)
    # each chunk is one decode_samples call: the first chunk's draws are the first of the stream
    torch.manual_seed(1)
    first = model.decode_samples(ctx, 3)
    assert torch.allclose(parts[:, :3], first, atol=1e-6)
    assert not torch.allclose(parts[:, :3], parts[:, 3:6])
    torch.manual_seed(1)
    labels = decode_samples_chunked(model, ctx, 7, 3, labels=True)  # the same draws, as labels
    assert labels.dtype == torch.uint8 and torch.equal(labels, parts.argmax(2).to(torch.uint8))
    with pytest.raises(ValueError, match="chunk"):
        decode_samples_chunked(model, ctx, 4, 0)


def test_training_memory_counts_activations():
    cfg = tiny_config("cnn")
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    small = train_memory_bytes(cfg, 3, torch.randn(2, 3, 32, 32), y)
    large = train_memory_bytes(cfg, 3, torch.randn(8, 3, 32, 32), y.repeat(4, 1, 1))
    assert large > small


def test_cpu_busy_fraction_is_a_share_or_none():
    from segcvae.benchmark import cpu_busy_fraction

    busy = cpu_busy_fraction(0.05)
    assert busy is None or 0.0 <= busy <= 1.0


def test_training_rows_are_what_each_family_names():
    """The training part times the rows a family names in place of its own (Sohn et al.'s
    objectives for ``sohn``), and any registered family's, without the benchmark knowing it."""
    from segcvae.benchmark import training_variants
    from segcvae.models.baseline import BaselineCNN
    from segcvae.registry import register_family, unregister_family

    rows = training_variants()
    assert rows["cnn"] == ["model.arch=cnn"] and "sohn" not in rows
    assert rows["gsnn"] == ["model.arch=sohn", "loss.objective=gsnn"]
    assert {"cvae", "hybrid"} <= set(rows)

    class TwoWidths(BaselineCNN):
        benchmark_training_variants = {"narrow": ["model.head_channels=8"], "wide": []}

    register_family("bench_two_widths")(TwoWidths)
    try:
        rows = training_variants()
    finally:
        unregister_family("bench_two_widths")
    assert rows["narrow"] == ["model.arch=bench_two_widths", "model.head_channels=8"]
    assert rows["wide"] == ["model.arch=bench_two_widths"] and "bench_two_widths" not in rows
