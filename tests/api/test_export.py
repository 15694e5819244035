"""ONNX export: the noise wrappers match the models' own sampling; onnxruntime matches PyTorch."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import segcvae
from segcvae.cli import export_main
from segcvae.data import read_image
from segcvae.export import (
    DeterministicModule,
    ExportError,
    SamplerModule,
    _evaluate,
    check_onnx,
    export_onnx,
    noise_formula,
    noise_shape,
    onnx_inputs,
)
from segcvae.models import create_model
from tests.api.conftest import write_tiny_checkpoint
from tests.conftest import tiny_config

MISSING = [m for m in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(m) is None]
needs_onnx = pytest.mark.skipif(
    bool(MISSING), reason=f"ONNX export needs {', '.join(MISSING)}: pip install -e '.[export]'"
)


def test_noise_formula_and_shape() -> None:
    torch.manual_seed(0)
    spatial = create_model(tiny_config("hybrid"), 3).eval()
    assert noise_formula(spatial) == ["4", "H/16", "W/16"]
    assert noise_shape(noise_formula(spatial), 5, 2, 64, 96) == (5, 2, 4, 4, 6)
    glob = create_model(tiny_config("gsnn", latent="global"), 3).eval()
    assert noise_formula(glob) == ["4", "1", "1"]
    assert noise_formula(create_model(tiny_config("cnn"), 3).eval()) == ["1"]
    assert noise_shape([], 3, 2, 32, 32) == (3, 2, 1)
    cat = create_model(tiny_config("cvae", latent="categorical"), 3).eval()
    assert noise_formula(cat) == ["4"]
    ssn_cfg = tiny_config()
    ssn_cfg.model.arch = "ssn"
    assert noise_formula(create_model(ssn_cfg, 3)) == ["10+3*H*W"]  # R + K H W
    assert _evaluate("8+3*H*W", 32, 64) == 8 + 3 * 32 * 64
    assert _evaluate("H/4+W/8", 32, 64) == 16


@pytest.mark.parametrize(
    ("arch", "latent"),
    [
        ("cnn", "spatial"),
        ("sohn", "spatial"),
        ("sohn", "global"),
        ("sohn_categorical", "categorical"),
        ("prob_unet", "spatial"),
        ("ssn", "spatial"),
    ],
)
def test_the_formula_is_the_familys_noise_shape(arch: str, latent: str) -> None:
    """The metadata's formula, read back at any size, is what the family's noise_shape says."""
    cfg = tiny_config(latent=latent)
    cfg.model.arch = arch
    model = create_model(cfg, 3)
    formula = noise_formula(model)
    for h, w in ((32, 32), (64, 96), (224, 160)):
        assert noise_shape(formula, 2, 1, h, w)[2:] == (tuple(model.noise_shape(h, w)) or (1,))


class _Noise(torch.nn.Module):
    def __init__(self, shape) -> None:
        super().__init__()
        self.shape = shape

    def noise_shape(self, height, width):
        return self.shape(height, width)


def test_a_noise_shape_the_export_cannot_express_says_why() -> None:
    assert noise_formula(_Noise(lambda h, w: (3, h // 8 + 1, h * w // 64))) == [
        "3",
        "1+H/8",
        "H*W/64",
    ]
    with pytest.raises(ExportError, match=r"noise axis 0 of _Noise is floor\(h/2\)"):
        noise_formula(_Noise(lambda h, w: (h // 64,)))  # 0 at H = 32: no formula a + b H
    with pytest.raises(ExportError, match=r"noise axis 1 .* expected a \+ b H \+ c W \+ e H W"):
        noise_formula(_Noise(lambda h, w: (1, h * h)))
    with pytest.raises(ExportError, match=r"must be written with \+, \* and //"):
        noise_formula(_Noise(lambda h, w: (int(h) // 16,)))


def test_sampler_wrapper_draws_what_the_model_draws(real_image: Path) -> None:
    """Fed torch's own standard normals, the noise input reproduces ``model.sample`` exactly."""
    torch.manual_seed(0)
    cfg = tiny_config("hybrid")
    model = create_model(cfg, 3).eval()
    x = onnx_inputs([read_image(real_image)], (64, 96))  # (1, 3, 64, 96) in [0, 1]
    normalised = (x - torch.tensor(cfg.data.mean).view(1, 3, 1, 1)) / torch.tensor(
        cfg.data.std
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.manual_seed(5)
        expected = model.sample(normalised, 3)
        torch.manual_seed(5)
        noise = torch.randn(noise_shape(noise_formula(model), 3, 1, 64, 96))
        got = SamplerModule(model, cfg.data.mean, cfg.data.std)(x, noise)
        mean = DeterministicModule(model, cfg.data.mean, cfg.data.std)(x)
    assert got.shape == (1, 3, 3, 64, 96)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean, model.predict(normalised), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["ssn", "prob_unet", "mc_dropout"])
def test_noise_contract_reproduces_decode_samples(arch: str) -> None:
    """decode_noise fed the standard normals decode_samples draws gives decode_samples' hypotheses
    (SSN: the low-rank draw [eps_r, eps_d]; the Prob. U-Net: mean + stddev * eps; MC dropout: the
    channels with Phi(eps) >= p kept)."""
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg.model.arch = arch
    model = create_model(cfg, 3).eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        ctx = model.encode(x)
        torch.manual_seed(1)
        expected = model.decode_samples(ctx, 4)
        torch.manual_seed(1)
        if arch == "ssn":  # decode_samples draws the factor's noise first, then the diagonal's
            eps = torch.cat(
                [torch.randn(4, 2, cfg.model.ssn.rank), torch.randn(4, 2, 3 * 32 * 64)], -1
            )
        else:
            eps = torch.randn(4, 2, *model.noise_shape(32, 64))
        got = model.decode_noise(ctx, eps)
    assert eps.shape == (4, 2, *model.noise_shape(32, 64))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_categorical_noise_draws_codes_by_the_prior() -> None:
    """A categorical latent's noise is the Gumbel-max code of Phi(eps): codes drawn as p(c | x)."""
    from segcvae.models import gumbel_max_codes

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1, 1e-9]]))
    codes = gumbel_max_codes(
        logits, torch.randn(20000, 1, 4, generator=torch.Generator().manual_seed(0))
    )
    assert codes.shape == (20000, 1, 4) and bool((codes.sum(-1) == 1).all())
    freq = codes.mean(dim=(0, 1))
    torch.testing.assert_close(freq, torch.tensor([0.6, 0.3, 0.1, 0.0]), atol=0.015, rtol=0)


def test_onnx_input_is_the_predictor_input(tiny_ckpt: Path, real_image_wide: Path) -> None:
    predictor = segcvae.load(tiny_ckpt)
    image = read_image(real_image_wide)
    side = predictor.config.data.image_size
    x = onnx_inputs([image], (side, side))
    mean = torch.tensor(predictor.config.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(predictor.config.data.std).view(1, 3, 1, 1)
    torch.testing.assert_close((x - mean) / std, predictor.preprocess([image]), atol=1e-5, rtol=0)


@pytest.mark.slow  # ONNX export
@needs_onnx
def test_export_command_checks_onnxruntime_against_pytorch(
    tmp_path: Path, real_image: Path, real_image_wide: Path, capsys
) -> None:
    import onnx

    ckpt = write_tiny_checkpoint(tmp_path / "hybrid.pt", "hybrid")
    out = tmp_path / "onnx" / "model.onnx"
    code = export_main(
        ["--ckpt", str(ckpt), "--out", str(out), "--samples", "3", "--quiet"]
        + ["--images", str(real_image), str(real_image_wide)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    m = re.search(r"deterministic ([0-9.e+-]+), sampler ([0-9.e+-]+)", printed)
    assert m, printed
    assert float(m.group(1)) <= 1e-4 and float(m.group(2)) <= 1e-4
    sampler = out.with_name("model_sampler.onnx")
    meta = {p.key: p.value for p in onnx.load(sampler).metadata_props}
    assert meta["noise_shape"] == "S,B,4,H/16,W/16" and meta["graph"] == "sampler"
    assert [i.name for i in onnx.load(out).graph.input] == ["image"]

    # the ONNX mask at the model's size is the Predictor's
    import onnxruntime as ort

    predictor = segcvae.load(ckpt)
    image = read_image(real_image)
    side = predictor.config.data.image_size
    logits = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"image": onnx_inputs([image], (side, side)).numpy()}
    )[0]
    with torch.no_grad():
        ref = predictor.model.predict(predictor.preprocess([image])).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    assert (logits.argmax(1) == ref.argmax(1)).mean() > 0.999


@pytest.mark.slow  # ONNX export
@needs_onnx
@pytest.mark.parametrize(
    ("objective", "latent", "arch", "generation"),
    [
        ("hybrid", "spatial", "cnn", "quarter"),
        ("gsnn", "global", "sohn", "quarter"),
        ("cvae", "categorical", "sohn", "full"),
        ("cvae", "categorical", "sohn_categorical", "quarter"),
        ("hybrid", "spatial", "sohn", "refine"),
        ("hybrid", "spatial", "refine_cnn", "quarter"),  # the refinement stage without z
        ("hybrid", "spatial", "prob_unet", "quarter"),
        ("hybrid", "spatial", "ssn", "quarter"),
        ("hybrid", "spatial", "mc_dropout", "quarter"),
        ("hybrid", "spatial", "ensemble", "quarter"),
    ],
)
def test_other_families_export(
    tmp_path: Path, real_image: Path, objective: str, latent: str, arch: str, generation: str
) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(objective, latent=latent)
    cfg.model.arch = arch
    cfg.model.generation = generation
    model = create_model(cfg, 3).eval()
    meta = {"class_names": ["background", "a", "b"], "palette": [[0, 0, 0], [1, 1, 1], [2, 2, 2]]}
    paths = export_onnx(model, cfg, meta, tmp_path / "m.onnx", samples=2)
    diff = check_onnx(model, cfg, paths, [read_image(real_image)] * 2, [(32, 64), (96, 32)], 3)
    assert diff["logits"] <= 1e-4 and diff["samples"] <= 1e-4, diff
