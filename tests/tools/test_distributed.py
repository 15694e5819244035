"""torchrun with 2 CPU processes (gloo): DDP trains, rank 0 alone writes checkpoints and logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tools.conftest import REPO, TINY, subprocess_env

pytestmark = pytest.mark.slow  # torchrun, two processes


def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tools" / "train.py"), "--out", str(out),
        "train.steps=4", "train.eval_every=4", "train.checkpoint_every=2", *TINY,
    ]  # fmt: skip
    res = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 x cpu" in res.stderr  # really two processes
    assert "[rank 1]" not in res.stderr  # rank 1 logs warnings only
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 4
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the unwrapped model is saved
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4]  # written once, by rank 0
    # 16 items, global batch 4 = 2 per process: 4 steps use half of the data once per process.
    assert records[0]["train"]["loss"] > 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000004.png"]


def test_torchrun_divergence_stops_every_rank(tmp_path: Path) -> None:
    """Every rank takes the same decision, so a diverged run ends instead of hanging in DDP."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tools" / "train.py"), "--out", str(out),
        "train.lr=10", "train.steps=40", "train.eval_every=20", "train.checkpoint_every=5", *TINY,
    ]  # fmt: skip
    res = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "error: training diverged" in res.stderr, res.stderr[-3000:]
