"""Sohn et al.'s CVAE as one family per latent kind: which class a config builds, and checkpoints
written when both kinds were one class keep loading as the model they are."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from segcvae.config import ConfigError
from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from segcvae.models import (
    CategoricalSegCVAE,
    GaussianSegCVAE,
    SegCVAE,
    build_objective,
    create_model,
    family_of,
)
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    ("arch", "latent", "cls"),
    [
        ("sohn", "spatial", GaussianSegCVAE),
        ("sohn", "global", GaussianSegCVAE),
        ("sohn", "categorical", CategoricalSegCVAE),  # the default config, and every old one
        ("sohn_categorical", "categorical", CategoricalSegCVAE),
    ],
)
def test_the_latent_kind_picks_the_class(arch: str, latent: str, cls: type) -> None:
    cfg = tiny_config("hybrid", latent)
    cfg.model.arch = arch
    assert family_of(cfg) is cls
    model = create_model(cfg, 3)
    assert type(model) is cls and isinstance(model, SegCVAE)
    assert family_of(cfg).describe(cfg) == "hybrid"
    assert family_of(cfg).report_fields(cfg) == {"objective": "hybrid"}


def test_a_categorical_family_with_a_gaussian_latent_is_a_config_error() -> None:
    cfg = tiny_config("cvae", "spatial")
    cfg.model.arch = "sohn_categorical"
    with pytest.raises(ConfigError, match=r"model.latent: .* got 'spatial' \(a Gaussian z is"):
        create_model(cfg, 3)
    with pytest.raises(ConfigError, match="model.latent: a Gaussian z"):
        GaussianSegCVAE.config_kwargs(tiny_config("cvae", "categorical"))


def test_each_kind_trains_with_its_own_objective_and_estimators(batch) -> None:
    from segcvae.losses import CategoricalObjective, GaussianObjective

    for latent, objective, methods in (
        ("spatial", GaussianObjective, ("is", "mc")),
        ("categorical", CategoricalObjective, ("exact",)),
    ):
        cfg = tiny_config("hybrid", latent)
        model = create_model(cfg, 3)
        assert type(build_objective(cfg)) is objective and model.likelihood_methods == methods
        assert model.scores_target_sets == (latent == "categorical")
    assert create_model(tiny_config("gsnn", "global"), 3).likelihood_methods == ("mc",)


def _names_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(value.shape)};".encode())
    return digest.hexdigest()[:16]


# The state-dict names and shapes of tiny models built by the single SegCVAE class (commit
# 31b95b7, before the split): equal digests mean its checkpoints load into the new classes
# (load_state_dict is strict). All 18 layouts (3 latents x 3 generations x gsnn / hybrid) were
# compared when the classes were split, the initial weights of the same seed too; three stay here.
OLD_LAYOUTS = {
    ("spatial", "quarter", "hybrid"): "ef62f803f732df72",
    ("global", "refine", "gsnn"): "d27e04082dec9695",
    ("categorical", "full", "hybrid"): "e4c1921a6478ad1f",
}


@pytest.mark.parametrize(("latent", "generation", "objective"), list(OLD_LAYOUTS))
def test_state_dict_names_are_those_of_the_single_class(
    latent: str, generation: str, objective: str
) -> None:
    cfg = tiny_config(objective, latent)
    cfg.model.generation = generation
    model = create_model(cfg, 3)
    assert _names_digest(model) == OLD_LAYOUTS[(latent, generation, objective)]


@pytest.mark.parametrize("latent", ["spatial", "categorical"])
def test_a_sohn_checkpoint_loads_as_the_model_it_is(latent: str, batch, tmp_path: Path) -> None:
    """A checkpoint's config says ``model.arch: sohn`` whatever its latent (as every checkpoint
    written before the split does): it rebuilds the class of its latent, with the same outputs."""
    torch.manual_seed(0)
    cfg = tiny_config("hybrid", latent)
    model = create_model(cfg, 3).eval()
    meta = {"num_classes": 3, "class_names": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3}
    save_checkpoint(tmp_path / "m.pt", model=model, step=1, config=cfg.to_dict(), meta=meta)
    assert load_checkpoint(tmp_path / "m.pt")["config"]["model"]["arch"] == "sohn"
    rebuilt, cfg2 = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert type(rebuilt) is type(model) and cfg2.model.arch == "sohn"
    assert torch.equal(rebuilt.predict(batch[0]), model.predict(batch[0]))
