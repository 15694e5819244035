"""configs/*.yaml and the command-line errors: unknown key, wrong type, missing dataset root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segcvae.cli import evaluate_main, main, train_main
from segcvae.config import LEGACY_KEYS, Config, ConfigError
from tests.tools.conftest import REPO, TINY

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_embedded_default_is_shapes_cvae_yaml() -> None:
    assert Config.from_yaml(REPO / "configs" / "shapes_cvae.yaml") == Config()


KIND_CONFIGS = {f"shapes_{k}": k for k in ("exclusive", "independent", "flip", "mixed")}


@pytest.mark.parametrize("stem", sorted(KIND_CONFIGS))
def test_kind_configs_are_the_default_job_on_their_kind(stem: str) -> None:
    expected = Config()
    expected.data.shapes.ambiguity = KIND_CONFIGS[stem]
    assert Config.from_yaml(REPO / "configs" / f"{stem}.yaml") == expected


FAMILIES = ("refine_cnn", "cnn", "prob_unet", "ssn", "mc_dropout", "ensemble")  # not Sohn et al.'s
RESOLVED = json.loads((REPO / "tests" / "tools" / "data" / "resolved_configs.json").read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_composed_configs_resolve_as_before(path: Path) -> None:
    """Each YAML names its bases and states only what it is about, and resolves to what it did.

    ``resolved_configs.json`` records what every config resolved to when the bases were written
    (configs/_base_/, 2026-12-04; before, the CNN configs also pinned keys the CNN family does not
    read); a key added to a section since then keeps its default and is not compared. A change to
    a default or a base shows up here.
    """
    if path.name not in RESOLVED:
        pytest.skip(f"{path.name} was added after the record")
    resolved = Config.from_yaml(path).to_dict()
    before = RESOLVED[path.name]

    def now(section: str, key: str, old: object) -> object:
        legacy = LEGACY_KEYS.get(section, {})
        if key in legacy:  # a family's or a dataset's own setting now (model.ssn, data.shapes)
            group, name = legacy[key]
            return resolved[section].get(group, {}).get(name, old)  # read by its group only
        return resolved[section][key]

    changed = {
        f"{section}.{key}": (value, now(section, key, value))
        for section, values in before.items()
        for key, value in values.items()
        if now(section, key, value) != value
    }
    assert not changed


def test_every_recorded_config_still_exists() -> None:
    # configs added after the record (e.g. the peer families) are not in it
    assert set(RESOLVED) <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_name_no_development_machine_paths(path: Path) -> None:
    assert "/tmp/" not in path.read_text() and "shared/data" not in path.read_text()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_loads_and_names_its_objective(path: Path) -> None:
    cfg = Config.from_yaml(path)
    family = next((f for f in FAMILIES if path.stem.endswith(f"_{f}")), None)
    if family is not None:  # <dataset>[_<variant>]_<arch>
        assert cfg.data.name == path.stem.split("_")[0] and cfg.model.arch == family
        return  # the families other than Sohn et al.'s ignore loss.objective
    parts = path.stem.split("_")  # <dataset>[_<variant>]_<objective>
    if path.stem in KIND_CONFIGS:  # shapes_<ambiguity>: the default job on another kind
        parts.append(Config().loss.objective)
    dataset, objective = parts[0], parts[-1]
    assert cfg.data.name == dataset and cfg.loss.objective == objective
    assert cfg.model.arch == "sohn"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_configs_share_the_hybrid_schedule(family: str) -> None:
    if family in ("cnn", "refine_cnn"):
        pytest.skip("the CNN configs of the paper's protocols are compared in test_paper_settings")
    """Rows of one comparison table differ in the model only: same data, schedule, evaluation."""
    for path in sorted((REPO / "configs").glob(f"*_{family}.yaml")):
        hybrid = Config.from_yaml(str(path).replace(f"_{family}.yaml", "_hybrid.yaml"))
        cfg = Config.from_yaml(path)
        assert (cfg.data, cfg.train, cfg.eval) == (hybrid.data, hybrid.train, hybrid.eval), path
        enc = ("encoder_name", "encoder_depth", "encoder_weights", "decoder_channels")
        assert [getattr(cfg.model, k) for k in enc] == [getattr(hybrid.model, k) for k in enc]


@pytest.mark.parametrize("dataset", ["lfw", "cub"])
@pytest.mark.parametrize("objective", ["cnn", "gsnn", "cvae", "hybrid"])
def test_paper_settings(dataset: str, objective: str) -> None:
    cfg = Config.from_yaml(REPO / "configs" / f"{dataset}_{objective}.yaml")
    assert cfg.data.image_size == 128
    assert (cfg.train.lr, cfg.train.lr_decay, cfg.train.batch_size) == (3e-4, 1e-3, 32)
    assert cfg.data.omission_max == 0.4 and cfg.data.omission_p > 0
    assert cfg.eval.samples == 50
    assert cfg.loss.alpha == 0.5
    assert cfg.model.encoder_weights is None  # no download unless asked for


def test_unknown_key_names_key_and_lists_valid_keys(capsys, tmp_path: Path) -> None:
    assert train_main(["--out", str(tmp_path / "r"), "train.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "'stepz'" in err and "valid keys" in err and "checkpoint_every" in err
    assert not (tmp_path / "r").exists()


def test_unknown_key_in_a_yaml_file(capsys, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  encoder: resnet18\n")
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'encoder'" in err and "encoder_name" in err


def test_wrong_type_names_key(capsys, tmp_path: Path) -> None:
    assert train_main(["--out", str(tmp_path / "r"), "--train.steps=many"]) == 2
    err = capsys.readouterr().err
    assert "train.steps" in err and "integer" in err


def test_missing_root_names_path_and_readme(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "no_lfw_here"
    code = train_main(
        [
            "--config",
            str(REPO / "configs" / "lfw_hybrid.yaml"),
            "--out",
            str(tmp_path / "r"),
            f"data.root={missing}",
        ]
        + [t for t in TINY if t.startswith(("model", "train"))]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "datasets/lfw/README.md" in err


def test_missing_checkpoint_is_a_one_line_error(capsys, tmp_path: Path) -> None:
    assert evaluate_main(["--ckpt", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_console_script_dispatch(capsys) -> None:
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["fly"]) == 2
    assert "unknown command" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--resume" in capsys.readouterr().out


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError):
        Config.from_yaml(None, ["steps=3"])


def test_benchmark_is_forwarded(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out
