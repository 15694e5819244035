"""Issue 31, item 2: a model family kept outside the package, used from the command line.

The family is the dummy of tests/models/test_registry.py, written to a file in a temporary folder
that is put on PYTHONPATH (nothing is installed). Every command reaches it with ``--import MODULE``
(a module name or a path to the file); a package's ``segcvae.families`` entry point (a
``.dist-info`` folder on the path) needs no flag.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segcvae.cli import USAGE_ERROR, main
from segcvae.commands.common import import_modules
from segcvae.config import Config, ConfigError
from segcvae.registry import family_names, get_family, plugin_families, unregister_family
from tests.tools.conftest import REPO, TINY

FAMILY = '''"""A model family kept outside segcvae: a 3x3 convolution gives logits, a global 2-d Gaussian z
adds a per-class bias (the dummy of tests/models/test_registry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.distributions import Independent, Normal

from segcvae.losses import GaussianObjective
from segcvae.models import ModelFamily
from segcvae.outputs import SegOutput
from segcvae.registry import register_family


@dataclass
class DummyContext:
    base: Tensor  # (B, K, H, W)
    prior: Independent  # batch (B,), event (2,)


{decorator}class Dummy(ModelFamily):
    likelihood_methods = ("mc",)

    def __init__(self, classes: int, *, hidden_channels: int = 32) -> None:
        super().__init__()
        self.num_classes = classes
        self.features = nn.Sequential(nn.Conv2d(3, hidden_channels, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(hidden_channels, classes, 1)
        self.prior_net = nn.Linear(hidden_channels, 4)
        self.generation_net = nn.Linear(2, classes)

    @classmethod
    def config_kwargs(cls, cfg: Any) -> dict[str, Any]:
        return {{"hidden_channels": cfg.model.hidden_channels}}

    @classmethod
    def build_objective(cls, cfg: Any) -> nn.Module:
        return GaussianObjective("gsnn", scale_weights=[1.0])

    def encode(self, x: Tensor) -> DummyContext:
        f = self.features(x)
        mu, logvar = self.prior_net(f.mean(dim=(2, 3))).chunk(2, dim=1)
        prior = Independent(Normal(mu, (0.5 * logvar.clamp(-6, 2)).exp()), 1)
        return DummyContext(base=self.head(f), prior=prior)

    def _logits(self, ctx: DummyContext, z: Tensor) -> Tensor:
        return ctx.base.unsqueeze(1) + self.generation_net(z)[..., None, None]

    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        ctx = self.encode(x)
        z = ctx.prior.rsample()
        logits = self._logits(ctx, z.unsqueeze(1))[:, 0]
        return SegOutput(y_hat=[], prior=ctx.prior, z_prior=z, logits_prior=[logits])

    def decode_mean(self, ctx: DummyContext) -> Tensor:
        return self._logits(ctx, ctx.prior.mean.unsqueeze(1))[:, 0]

    def decode_samples(self, ctx: DummyContext, n: int) -> Tensor:
        return self._logits(ctx, ctx.prior.sample((n,)).transpose(0, 1))

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        return (2,)

    def decode_noise(self, ctx: DummyContext, eps: Tensor) -> Tensor:
        z = ctx.prior.mean + ctx.prior.stddev * eps
        return self._logits(ctx, z.transpose(0, 1))

    def likelihood_samples(
        self, ctx: DummyContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        for start in range(0, n, chunk_size):
            yield self.decode_samples(ctx, min(chunk_size, n - start)), None
'''


def write_family(folder: Path, module: str, name: str | None) -> Path:
    """The family as ``folder/<module>.py``, registered as ``name`` by decorator (None: not)."""
    folder.mkdir(parents=True, exist_ok=True)
    decorator = f'@register_family("{name}")\n' if name else ""
    path = folder / f"{module}.py"
    path.write_text(FAMILY.format(decorator=decorator))
    return path


def write_entry_point(folder: Path, name: str, target: str) -> None:
    """What installing a package that declares ``[project.entry-points."segcvae.families"]
    <name> = "<target>"`` leaves on the path: its .dist-info folder."""
    info = folder / "segcvae_test_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: segcvae-test-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[segcvae.families]\n{name} = {target}\n")


# ------------------------------------------------------------------ in this process
def test_import_a_file_registers_its_family(tmp_path: Path) -> None:
    path = write_family(tmp_path, "family_by_path", "by_path_dummy")
    try:
        with pytest.raises(ConfigError, match="model.arch: expected one of"):
            Config.from_yaml(None, ["model.arch=by_path_dummy"])
        import_modules([str(path)])
        import_modules([str(path)])  # twice (a second command in one process): imported once
        assert Config.from_yaml(None, ["model.arch=by_path_dummy"]).model.arch == "by_path_dummy"
        assert get_family("by_path_dummy").__module__ == "family_by_path"
    finally:
        unregister_family("by_path_dummy")
        sys.modules.pop("family_by_path", None)


@pytest.mark.parametrize(
    "module, message",
    [
        ("no_such_family_module", "--import no_such_family_module: no module named"),
        ("no_such_package.family", "no module named 'no_such_package' on sys.path"),
        ("{tmp}/missing.py", "missing.py: no such file"),
    ],
)
def test_a_module_that_is_not_there_is_one_line_and_exit_2(
    tmp_path: Path, capsys, module: str, message: str
) -> None:
    argv = ["evaluate", "--import", module.format(tmp=tmp_path), "--ckpt", str(tmp_path / "x.pt")]
    assert main(argv) == USAGE_ERROR
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err and "Traceback" not in err


def test_an_entry_point_family_is_listed_then_imported_when_named(
    tmp_path: Path, monkeypatch
) -> None:
    write_family(tmp_path, "family_by_entry_point", None)  # no decorator: the entry point names it
    write_entry_point(tmp_path, "ep_dummy", "family_by_entry_point:Dummy")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin_families.cache_clear()
    try:
        assert "ep_dummy" in family_names() and "family_by_entry_point" not in sys.modules
        assert Config.from_yaml(None, ["model.arch=ep_dummy"]).model.arch == "ep_dummy"
        family = get_family("ep_dummy")
        assert family.name == "ep_dummy" and family.__module__ == "family_by_entry_point"
    finally:
        unregister_family("ep_dummy")
        sys.modules.pop("family_by_entry_point", None)
        plugin_families.cache_clear()


# ------------------------------------------------------------------ from the command line
@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugins")
    write_family(folder, "plugin_family", "plugin_dummy")
    return folder


def run(args: list[str], plugin_dir: Path, *paths: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, (plugin_dir, *paths))])
    command = [sys.executable, "-m", "segcvae.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow  # subprocesses: train, evaluate, predict, export
def test_train_evaluate_predict_export_a_family_from_outside(
    plugin_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    flags = ["--out", str(out), "--no-progress", *TINY, "model.arch=plugin_dummy"]
    res = run(["train", "--import", "plugin_family", *flags, "train.steps=4"], plugin_dir)
    assert res.returncode == 0, res.stderr
    ckpt = str(out / "best.pt")

    report = tmp_path / "test.json"
    by_path = str(plugin_dir / "plugin_family.py")
    res = run(["evaluate", "--import", by_path, "--ckpt", ckpt, "--json", str(report)], plugin_dir)
    assert res.returncode == 0, res.stderr
    metrics = json.loads(report.read_text())
    assert (metrics["arch"], metrics["model"], metrics["nll_estimator"]) == (
        "plugin_dummy",
        "plugin_dummy",
        "mc",
    )
    assert metrics["nll"] > 0 and "ged" in metrics

    res = run(["evaluate", "--ckpt", ckpt], plugin_dir)  # without --import: not known
    assert res.returncode == USAGE_ERROR and "Traceback" not in res.stderr
    assert "model.arch" in res.stderr and "plugin_dummy" in res.stderr

    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(tmp_path / "in.png")
    pred = tmp_path / "pred"
    args = ["--ckpt", ckpt, "--input", str(tmp_path / "in.png"), "--out", str(pred)]
    res = run(["predict", "--import", "plugin_family", *args, "--samples", "3"], plugin_dir)
    assert res.returncode == 0, res.stderr
    assert (pred / "in_mask.png").is_file() and (pred / "in_samples.png").is_file()

    # the same weights as the family of an installed package's entry point: no --import
    ep = tmp_path / "ep"
    write_family(ep, "ep_family", None)
    write_entry_point(ep, "ep_dummy", "ep_family:Dummy")
    res = run(["evaluate", "--ckpt", ckpt, "--json", str(report), "model.arch=ep_dummy"], ep)
    assert res.returncode == 0, res.stderr
    assert json.loads(report.read_text())["arch"] == "ep_dummy"

    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")):
        pytest.skip("ONNX export needs pip install -e '.[export]'")
    onnx = tmp_path / "dummy.onnx"
    res = run(
        ["export", "--import", "plugin_family", "--ckpt", ckpt, "--out", str(onnx)], plugin_dir
    )
    assert res.returncode == 0, res.stderr
    assert "noise S,B,2" in res.stdout and onnx.with_name("dummy_sampler.onnx").is_file()
