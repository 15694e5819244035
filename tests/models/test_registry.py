"""The family registry: one source of defaults per family, and a family of one's own in one file.

The dummy family below is registered here and nowhere else; it trains, evaluates, predicts and
exports through the same commands and functions as the built-in families, with no other file
touched.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

import segcvae
from segcvae.config import Config, ConfigError
from segcvae.losses import GaussianObjective
from segcvae.models import ModelFamily, create_model
from segcvae.outputs import SegOutput
from segcvae.registry import (
    BUILTIN_FAMILIES,
    family_names,
    get_family,
    register_family,
    unregister_family,
)
from segcvae.settings import setting
from tests.conftest import tiny_config
from tests.tools.conftest import TINY


# ------------------------------------------------------------------ one source of defaults
@pytest.mark.parametrize("name", list(BUILTIN_FAMILIES))
def test_constructor_defaults_are_the_config_defaults(name: str) -> None:
    """Every keyword of a family's constructor defaults to what the default config gives it
    (``sohn``, the Gaussian z, with ``model.latent=spatial``: the default latent is categorical)."""
    family = get_family(name)
    cfg = Config()
    cfg.model.arch = name
    if name == "sohn":
        cfg.model.latent = "spatial"
    given = family.config_kwargs(cfg)
    params = inspect.signature(family.__init__).parameters
    keyword_only = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(given) <= keyword_only, f"{name}: not keyword-only: {set(given) - keyword_only}"
    for key, value in given.items():
        default = params[key].default
        default = list(default) if isinstance(default, tuple) else default
        assert default == value, f"{family.__name__}({key}={default!r}) vs the config's {value!r}"


def test_families_are_listed_and_unknown_ones_name_the_valid() -> None:
    assert family_names()[:6] == [
        "cnn",
        "refine_cnn",
        "sohn",
        "sohn_categorical",
        "prob_unet",
        "ssn",
    ]
    for name in BUILTIN_FAMILIES:
        assert get_family(name).name == name
    with pytest.raises(KeyError, match="valid: cnn, refine_cnn, sohn"):
        get_family("phiseg")
    with pytest.raises(ConfigError, match="model.arch: expected one of cnn, .*ssn"):
        Config.from_yaml(None, ["model.arch=phiseg"])
    with pytest.raises(ValueError, match="already registered"):
        register_family("sohn")(type("Other", (ModelFamily,), {}))


# ------------------------------------------------------------------ a family of one's own
@dataclass
class DummyContext:
    """The image-only part: base logits and the prior over z."""

    base: Tensor  # (B, K, H, W)
    prior: Independent  # batch (B,), event (2,)


@dataclass
class DummySettings:
    """``model.dummy``: the family's own settings, checked when the config loads."""

    width: int = setting(8, ge=1, le=64, help="channels of the 3x3 convolution")


class Dummy(ModelFamily):
    """A tiny latent-variable family: a 3x3 convolution gives logits, a global 2-d Gaussian z adds a
    per-class bias. Trained with the shared Gaussian objective (gsnn, one scale)."""

    likelihood_methods = ("mc",)
    settings = DummySettings

    def __init__(self, classes: int, *, width: int = 8) -> None:
        super().__init__()
        self.num_classes = classes
        hidden_channels = width
        self.features = nn.Sequential(nn.Conv2d(3, hidden_channels, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(hidden_channels, classes, 1)
        self.prior_net = nn.Linear(hidden_channels, 4)
        self.generation_net = nn.Linear(2, classes)

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        return {"width": cfg.model.settings("dummy").width}

    @classmethod
    def build_objective(cls, cfg: Config) -> nn.Module:
        return GaussianObjective("gsnn", scale_weights=[1.0])

    def encode(self, x: Tensor) -> DummyContext:
        f = self.features(x)
        mu, logvar = self.prior_net(f.mean(dim=(2, 3))).chunk(2, dim=1)
        prior = Independent(Normal(mu, (0.5 * logvar.clamp(-6, 2)).exp()), 1)
        return DummyContext(base=self.head(f), prior=prior)

    def _logits(self, ctx: DummyContext, z: Tensor) -> Tensor:
        """z (B, S, 2) -> logits (B, S, K, H, W)."""
        return ctx.base.unsqueeze(1) + self.generation_net(z)[..., None, None]

    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        ctx = self.encode(x)
        z = ctx.prior.rsample()  # (B, 2)
        logits = self._logits(ctx, z.unsqueeze(1))[:, 0]
        return SegOutput(y_hat=[], prior=ctx.prior, z_prior=z, logits_prior=[logits])

    def decode_mean(self, ctx: DummyContext) -> Tensor:
        return self._logits(ctx, ctx.prior.mean.unsqueeze(1))[:, 0]

    def decode_samples(self, ctx: DummyContext, n: int) -> Tensor:
        return self._logits(ctx, ctx.prior.sample((n,)).transpose(0, 1))

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        return (2,)

    def decode_noise(self, ctx: DummyContext, eps: Tensor) -> Tensor:
        z = ctx.prior.mean + ctx.prior.stddev * eps  # (S, B, 2)
        return self._logits(ctx, z.transpose(0, 1))

    def likelihood_samples(
        self, ctx: DummyContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        for start in range(0, n, chunk_size):
            yield self.decode_samples(ctx, min(chunk_size, n - start)), None


@pytest.fixture
def dummy_family() -> Iterator[str]:
    register_family("dummy")(Dummy)
    try:
        yield "dummy"
    finally:
        unregister_family("dummy")


def test_a_registered_family_is_built_from_the_config(dummy_family: str) -> None:
    cfg = tiny_config()
    cfg.model.arch = dummy_family
    cfg.validate()  # the config knows the name now
    model = create_model(cfg, 3)
    assert isinstance(model, Dummy) and model.head.in_channels == 8
    cfg = Config.from_yaml(None, [f"model.arch={dummy_family}", "model.dummy.width=5"])
    assert cfg.model.arch == "dummy" and create_model(cfg, 3).head.in_channels == 5


def test_a_registered_familys_setting_is_checked_from_the_command_line(
    dummy_family: str, tmp_path: Path, capsys
) -> None:
    from segcvae.cli import USAGE_ERROR, main

    args = ["train", "--out", str(tmp_path / "run"), *TINY, f"model.arch={dummy_family}"]
    assert main([*args, "model.dummy.width=65"]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "model.dummy.width: expected an integer in [1, 64], got 65" in err
    assert "Traceback" not in err


@pytest.mark.slow  # a whole run, evaluation, prediction and ONNX export in one process
def test_a_family_in_one_file_trains_evaluates_predicts_and_exports(
    dummy_family: str, tmp_path: Path, capsys
) -> None:
    from segcvae.cli import evaluate_main, export_main, predict_main, train_main

    run = tmp_path / "run"
    args = ["--out", str(run), "--no-progress", *TINY, f"model.arch={dummy_family}"]
    assert train_main([*args, "train.steps=6", "train.eval_every=3"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6] and "ged" in records[-1]["val"]
    assert json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])["train"]["nll"] > 0

    report = tmp_path / "test.json"
    assert evaluate_main(["--ckpt", str(run / "best.pt"), "--json", str(report), "--quiet"]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["arch"] == "dummy" and metrics["nll_estimator"] == "mc" and metrics["nll"] > 0
    assert "(step " in capsys.readouterr().out

    predictor = segcvae.load(run / "best.pt")
    image = torch.randint(0, 255, (40, 56, 3), dtype=torch.uint8).numpy()
    result = predictor(image, samples=4, seed=0)
    assert result.mask.shape == (40, 56) and result.hypotheses.shape == (4, 40, 56)
    (tmp_path / "in.png").write_bytes(b"")
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "in.png")
    out = tmp_path / "pred"
    assert (
        predict_main(
            [
                "--ckpt",
                str(run / "best.pt"),
                "--input",
                str(tmp_path / "in.png"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "in_mask.png").is_file() and (out / "in_samples.png").is_file()

    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "onnxscript")):
        pytest.skip("ONNX export needs pip install -e '.[export]'")
    onnx = tmp_path / "dummy.onnx"
    capsys.readouterr()
    assert export_main(["--ckpt", str(run / "best.pt"), "--out", str(onnx), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "noise S,B,2" in printed and onnx.with_name("dummy_sampler.onnx").is_file()
