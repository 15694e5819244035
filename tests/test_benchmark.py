"""The benchmark runs end to end on a tiny model and reports every ratio."""

from __future__ import annotations

import json

from segcvae.benchmark import main, train_memory_bytes
from tests.conftest import tiny_config


def test_benchmark_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--json", str(out), "--batch", "2", "--image-size", "32", "--repeats", "1"]
    assert main([*args, "--encoder", "tu-test_efficientnet", "--lfw-root", ""]) == 0
    r = json.loads(out.read_text())
    for key in (
        "sample16_vs_deterministic",
        "cll_is50_vs_deterministic",
        "train_step_hybrid_vs_cnn",
        "train_step_cvae_vs_cnn",
        "peak_mem_train_hybrid_vs_cnn",
        "sample16_vs_deterministic_prob_unet",
        "sample16_vs_deterministic_ssn",
        "train_step_prob_unet_vs_cnn",
        "train_step_ssn_vs_cnn",
    ):
        assert r[key] > 0, key
    assert r["peak_mem_train_hybrid_mb"] > r["peak_mem_train_cnn_mb"]


def test_training_memory_counts_activations():
    import torch

    cfg = tiny_config("cnn")
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    small = train_memory_bytes(cfg, 3, torch.randn(2, 3, 32, 32), y)
    large = train_memory_bytes(cfg, 3, torch.randn(8, 3, 32, 32), y.repeat(4, 1, 1))
    assert large > small
