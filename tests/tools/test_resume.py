"""kill -9 during training, then --resume: no finished (checkpointed) step is lost, and the final
weights equal those of a run that was never interrupted (CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from segcvae.cli import train_main
from tests.tools.conftest import REPO, TINY, subprocess_env

pytestmark = pytest.mark.slow  # a training subprocess killed and resumed

STEPS = 14
# 16 items / batch 4 = 4 steps per epoch: the run crosses epoch boundaries, and resuming at a
# checkpoint every 3 steps lands mid-epoch.
ARGS = [f"train.steps={STEPS}", "train.checkpoint_every=3", "train.eval_every=7", *TINY]


def _checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except Exception:  # not written yet (the rename is atomic, so never half a file)
        return None


def test_kill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "train.py"), "--out", str(killed), *ARGS],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        step = None
        while time.monotonic() < deadline and proc.poll() is None:
            step = _checkpoint_step(killed / "last.pt")
            if step is not None and step >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = _checkpoint_step(killed / "last.pt")
    assert saved is not None and 3 <= saved < STEPS
    # A kill during a write leaves its temporary file, never a half-written last.pt (loaded above)

    # Resume in this process, then train the same run without interruption.
    assert train_main(["--out", str(killed), "--resume", *ARGS]) == 0
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))
    reference = tmp_path / "reference"
    assert train_main(["--out", str(reference), *ARGS]) == 0

    resumed = torch.load(killed / "last.pt", weights_only=True)
    uninterrupted = torch.load(reference / "last.pt", weights_only=True)
    assert resumed["step"] == uninterrupted["step"] == STEPS
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for a, b in zip(
        resumed["optimizer"]["state"].values(),
        uninterrupted["optimizer"]["state"].values(),
        strict=True,
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
    steps = [
        json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [7, 14]  # no evaluation lost or repeated by the resume


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path, capsys) -> None:
    assert train_main(["--out", str(tmp_path / "r"), "--resume", "train.steps=1", *TINY]) == 0
    assert "starting from step 0" in capsys.readouterr().err
    assert _checkpoint_step(tmp_path / "r" / "last.pt") == 1


def test_resume_extends_a_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert train_main(["--out", str(out), "train.steps=2", "train.eval_every=0", *TINY]) == 0
    assert train_main(["--out", str(out), "--resume", "train.steps=3"]) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["config"]["train"]["steps"] == 3
    assert ckpt["config"]["data"]["image_size"] == 32  # the run's own config, not the default
