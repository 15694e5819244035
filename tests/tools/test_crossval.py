"""segcvae crossval: every fold trained and tested, per-case metrics pooled, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segcvae.cli import crossval_main, main
from tests.tools.conftest import TINY

FAST = [*TINY, "train.steps=4", "train.eval_every=2", "eval.samples=1", "eval.hypotheses=3"]


@pytest.mark.slow  # whole cross-validations
def test_crossval_trains_every_fold_pools_the_cases_and_continues_a_killed_run(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import segcvae.engine.run as run_module

    out = tmp_path / "cv"
    args = ["--folds", "2", "--out", str(out), "--no-progress", *FAST]
    real_train = run_module.train
    calls: list[str] = []

    def killed_in_fold_1(cfg, run_dir, **kwargs):
        calls.append(Path(run_dir).name)
        if Path(run_dir).name == "fold1":
            raise KeyboardInterrupt  # as a kill in the second fold
        return real_train(cfg, run_dir, **kwargs)

    monkeypatch.setattr(run_module, "train", killed_in_fold_1)
    with pytest.raises(KeyboardInterrupt):
        crossval_main(args)
    first = (out / "fold0" / "test.json").stat().st_mtime_ns
    assert not (out / "crossval.json").exists()

    monkeypatch.setattr(
        run_module, "train", lambda *a, **k: calls.append("again") or real_train(*a, **k)
    )
    assert main(["crossval", *args]) == 0  # the same command continues
    assert calls == ["fold0", "fold1", "again"]  # fold 0 was kept, fold 1 trained
    assert (out / "fold0" / "test.json").stat().st_mtime_ns == first
    summary = json.loads((out / "crossval.json").read_text())
    assert summary["cases"] == 24 and [f["fold"] for f in summary["folds"]] == [0, 1]
    assert summary["folds_done"] == [0, 1] and summary["partial"] is False
    assert sum(f["cases"] for f in summary["folds"]) == 24  # every case tested once
    for key in ("ged", "hm_iou", "soft_dice", "diversity", "majority_ged", "rater_pairwise_iou"):
        assert key in summary["pooled"] and key in summary["across_folds"], key
    report = json.loads((out / "fold1" / "test.json").read_text())
    assert report["select"] == "mean_iou" and len(report["per_image"]) == report["images"]
    printed = capsys.readouterr().out
    assert "| ged |" in printed and "mean ± std across folds" in printed


@pytest.mark.slow  # whole cross-validations
def test_only_some_folds_pools_what_is_done_and_says_partial(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cv"
    args = ["--folds", "3", "--out", str(out), "--no-progress", *FAST]
    # overrides may follow --only's fold list (tools/results/qubiq.sh writes them there)
    assert crossval_main([*args[:5], "--only", "1", *FAST]) == 0
    assert not (out / "fold0").exists() and (out / "fold1" / "test.json").is_file()
    summary = json.loads((out / "crossval.json").read_text())
    assert summary["folds_done"] == [1] and summary["partial"] is True
    assert summary["cases"] == summary["folds"][0]["cases"]
    assert "in 1 of 3 folds (partial)" in capsys.readouterr().out
    assert crossval_main([*args, "--only", "0"]) == 0  # fold 1 is kept and pooled with fold 0
    summary = json.loads((out / "crossval.json").read_text())
    assert summary["folds_done"] == [0, 1] and summary["partial"] is True
    assert crossval_main([*args, "--only", "3"]) == 2  # no fold 3 of 3
    assert "--only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        crossval_main([*args, "--only", "x"])
    assert "argument --only: expected an integer, got 'x'" in capsys.readouterr().err


@pytest.mark.slow  # whole cross-validations
def test_retest_tests_the_finished_folds_again_with_other_eval_settings(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import segcvae.engine.run as run_module

    out = tmp_path / "cv"
    args = ["--folds", "2", "--out", str(out), "--no-progress", *FAST]
    assert crossval_main(args) == 0
    before = json.loads((out / "crossval.json").read_text())
    weights = (out / "fold0" / "best.pt").read_bytes()
    monkeypatch.setattr(run_module, "train", lambda *a, **k: pytest.fail("--retest trained"))
    level = "eval.hypothesis_masks=level_set"
    assert crossval_main([*args, "--retest", level]) == 0
    after = json.loads((out / "crossval.json").read_text())
    assert after["retest"][-1] == level and "retest" not in before
    assert after["cases"] == before["cases"] and after["folds_done"] == [0, 1]
    assert after["pooled"]["diversity"] != before["pooled"]["diversity"]  # other masks
    assert after["pooled"]["soft_dice"] == pytest.approx(before["pooled"]["soft_dice"])
    report = json.loads((out / "fold1" / "test.json").read_text())
    assert report["retest"][-1] == level and "train_s" in report
    assert (out / "fold0" / "best.pt").read_bytes() == weights  # nothing trained or rewritten
    assert crossval_main([*args, "--retest", "train.lr=0.5"]) == 2  # a training setting differs
    assert "other settings" in capsys.readouterr().err
    assert crossval_main(["--folds", "2", "--out", str(tmp_path / "none"), "--retest"]) == 2
    assert "holds no cross-validation" in capsys.readouterr().err


def test_another_command_in_the_same_folder_is_refused(tmp_path: Path, capsys) -> None:
    from segcvae.crossval import check_settings

    check_settings(tmp_path, {"config": None, "overrides": ["a.b=1"], "folds": 5, "folds_seed": 0})
    (tmp_path / "x").mkdir()
    code = crossval_main(["--folds", "3", "--out", str(tmp_path), *TINY])
    assert code == 2 and "other settings" in capsys.readouterr().err


def test_bad_fold_counts_are_one_line(tmp_path: Path, capsys) -> None:
    assert crossval_main(["--folds", "1", "--out", str(tmp_path / "cv"), *TINY]) == 2
    assert "--folds" in capsys.readouterr().err


def test_a_fold_trained_with_another_config_is_not_continued(tmp_path: Path) -> None:
    from segcvae.config import Config, ConfigError
    from segcvae.crossval import check_fold_run, fold_overrides
    from segcvae.engine.run import train

    cfg = Config.from_yaml(None, [*FAST, "train.steps=2", *fold_overrides(2, 0, 0)])
    train(cfg, tmp_path / "fold0", progress=False)
    check_fold_run(tmp_path / "fold0", cfg)  # the same config: fine
    other = Config.from_yaml(None, [*FAST, "train.steps=3", *fold_overrides(2, 0, 0)])
    with pytest.raises(ConfigError, match=r"train.steps: 2 -> 3.*new --out"):
        check_fold_run(tmp_path / "fold0", other)
