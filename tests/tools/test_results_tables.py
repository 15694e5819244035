"""tools/results/tables.py: the multi-rater table from evaluate's JSON files (no model needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from tests.tools.conftest import REPO

_spec = importlib.util.spec_from_file_location("tables", REPO / "tools" / "results" / "tables.py")
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)


def _report(ged: float, **extra: float) -> dict:
    keys = [k for _, k, _, _ in tables.MULTI_RATER_COLUMNS + tables.MULTI_RATER_AGREEMENT]
    report = {k: 0.5 for k in keys} | {"diversity": 0.9, "rater_pairwise_iou": 0.75}
    return report | {"ged": ged} | extra


def _write(runs: Path, name: str, seed: int, report: dict, train_s: float | None) -> None:
    run = runs / f"qubiq_{name}" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "test.json").write_text(json.dumps(report))
    if train_s is not None:
        (run / "wall_s.txt").write_text(f"train {train_s:g}\nevaluate 10\n")


def test_multi_rater_table_mean_std_over_seeds(tmp_path: Path) -> None:
    _write(tmp_path, "hybrid", 0, _report(0.2, arch="sohn"), 300)
    _write(tmp_path, "hybrid", 1, _report(0.4, arch="sohn"), 420)
    cnn = _report(0.3) | {"arch": "cnn"}
    # a deterministic model's uncertainty map is flat: evaluate writes ncc null and says why
    cnn |= {"ncc": None, "undefined": {"ncc": "undefined: the hypotheses never differ"}}
    _write(tmp_path, "cnn", 0, cnn | {"ged_100": float("nan")}, None)
    first, second = tables.multi_rater_table(tmp_path, "qubiq").split("\n\n")
    lines = first.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | seeds | GED (16) | GED (100) |")
    cnn_row, hybrid_row = lines[2].split(" | "), lines[3].split(" | ")
    assert cnn_row[0] == "| cnn" and hybrid_row[0] == "| hybrid"  # the registry's family order
    assert hybrid_row[1] == "2" and hybrid_row[2] == "0.300 ± 0.141"  # sample std of 0.2, 0.4
    assert cnn_row[3] == "—" and cnn_row[5] == "—"  # NaN ged_100, null ncc
    lines = second.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | seeds | diversity")
    assert lines[3].split(" | ")[-1] == "6.0 ± 1.4 |"  # minutes from wall_s.txt
    assert lines[2].split(" | ")[-1] == "— |"  # no wall_s.txt


def test_main_prints_the_multi_rater_table_for_a_qubiq_prefix(tmp_path: Path, capsys) -> None:
    _write(tmp_path, "ssn", 2, _report(0.25) | {"nll_estimator": "mc", "samples": 50}, 100)
    assert tables.main(["--runs", str(tmp_path), "--prefix", "qubiq", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "| ssn | 1 | 0.250 |" in out and "MC, S=50" in out


def _lfw_report(acc: float, **extra: float) -> dict:
    report = {"class_names": ["background", "skin", "hair"], "images": 927, "mean_iou": 0.7}
    report |= {"per_class_iou": [0.9, 0.8, 0.5], "nll": 200.0, "nll_mc": 210.0}
    return report | {"pixel_accuracy": acc} | extra


SOHN_IS = {"arch": "sohn", "nll_estimator": "is", "samples": 50}


def test_lfw_table_rows_in_order_with_hypothesis_columns_when_measured(tmp_path: Path) -> None:
    for name, seed, report in (
        ("refine_hybrid", 0, _lfw_report(0.92, ged=0.2, diversity=0.95) | SOHN_IS),
        ("refine_hybrid", 1, _lfw_report(0.94, ged=0.4, diversity=0.97) | SOHN_IS),
        ("refine_cnn", 0, _lfw_report(0.91) | {"arch": "refine_cnn", "nll_estimator": "exact"}),
    ):
        run = tmp_path / f"lfw_cpu64_{name}" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "test_clean.json").write_text(json.dumps(report))
    lines = tables.table(tmp_path, "lfw_cpu64", "clean").splitlines()
    assert lines[0].endswith("| GED (16 hyp.) | diversity (hyp. pairwise IoU) |")
    control, hybrid = lines[2].split(" | "), lines[3].split(" | ")
    assert control[0] == "| refine_cnn" and control[9] == "exact" and control[-1] == "— |"
    assert hybrid[0] == "| refine_hybrid" and hybrid[1] == "2" and hybrid[3] == "93.00 ± 1.41"
    assert hybrid[9] == "IS, S=50" and hybrid[-2] == "0.300 ± 0.141"


_spec_e = importlib.util.spec_from_file_location(
    "shapes_errors", REPO / "tools" / "results" / "shapes_errors.py"
)
shapes_errors = importlib.util.module_from_spec(_spec_e)
_spec_e.loader.exec_module(shapes_errors)


def test_shapes_errors_split_wrong_pixels_by_where_they_are() -> None:
    occluder = np.zeros((8, 8), bool)
    occluder[:, 5:] = True  # a vertical band: the bar runs along x
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 2:4, 1:6] = 1  # short completion
    masks[1, 2:4, 1:8] = 1  # long completion
    hyp = masks[1].copy()
    hyp[2:4, 7] = 0  # one column short at the hidden end: nearest is the long mask
    hyp[4, 5] = 1  # one pixel wider under the band
    hyp[0, 0] = 1  # one stray pixel outside the band
    (row,) = shapes_errors.hypothesis_errors(hyp[None], masks, occluder)
    assert row["band_end"] == 2 and row["band_edges"] == 1 and row["outside_band"] == 1
    assert row["iou"] == 12 / 16
    # the same picture turned by a quarter: the bar runs along y
    (turned,) = shapes_errors.hypothesis_errors(hyp.T[None], masks.transpose(0, 2, 1), occluder.T)
    assert turned == row


def test_the_ideal_code_probabilities_are_the_mean_posterior_over_the_plausible_masks() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[0, :, :2] = 1  # two plausible masks, each decoded sharply by one of three codes
    masks[1, :, :3] = 1
    logits = torch.full((3, 2, 4, 4), -20.0)
    for code, m in ((0, masks[0]), (1, masks[1])):
        logits[code].scatter_(0, m[None], 20.0)
    logits[2] = 0.0  # an undecided code: 1/2 for every pixel
    prior = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    ideal = shapes_errors.ideal_code_probs(logits.double().log_softmax(1), prior, masks)
    # each mask's posterior sits on the code that decodes it: the mean gives each 1/2, whatever p
    assert torch.allclose(ideal, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64), atol=1e-3)


def test_crossval_table_pools_and_names_the_references(tmp_path: Path) -> None:
    for name, ged in (("cnn", 0.2), ("categorical_cvae", 0.1)):
        (tmp_path / name).mkdir()
        summary = {
            "cases": 39,
            "pooled": {"ged": ged, "hm_iou": 0.8, "majority_ged": 0.11, "rater_pairwise_iou": 0.75},
            "across_folds": {"ged": {"mean": ged, "std": 0.01}},
            "folds": [{"fold": k, "train_s": 600.0} for k in range(5)],
        }
        if name == "cnn":  # crossval --only 0: one fold of five so far
            summary |= {"folds": summary["folds"][:1], "partial": True, "folds_total": 5}
        (tmp_path / name / "crossval.json").write_text(json.dumps(summary))
    lines = tables.crossval_table(tmp_path).splitlines()
    assert lines[2].startswith("| categorical_cvae | 5 | 39 | 0.100 (0.100 ± 0.010) | 0.800 |")
    assert lines[2].endswith("| 10.0 ± 0.0 |") and lines[3].startswith("| cnn | 1 of 5 | 39 |")
    assert "majority mask GED 0.110" in lines[-1] and "raters' pairwise IoU 0.750" in lines[-1]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "results" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curves_table_has_a_row_per_step_and_a_column_per_run(tmp_path: Path, capsys) -> None:
    curves = _load_tool("curves")
    for name, values in {"cnn": [0.3, 0.25], "categorical_cvae": [0.2, 0.15, 0.14]}.items():
        run = tmp_path / name / "fold0"
        run.mkdir(parents=True)
        rows = [{"step": 100 * (i + 1), "val": {"ged": v}} for i, v in enumerate(values)]
        rows.insert(1, {"step": 150, "train": {"loss": 1.0}})  # no validation at this step
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    png = tmp_path / "curves.png"
    runs = [str(tmp_path / "cnn" / "fold0"), str(tmp_path / "categorical_cvae" / "fold0")]
    assert (
        curves.main(["--runs", *runs, "--metric", "ged", "--reference", "0.1", "--png", str(png)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| step | cnn/fold0 | categorical_cvae/fold0 |"
    assert lines[2:5] == [
        "| 100 | 0.3000 | 0.2000 |",
        "| 200 | 0.2500 | 0.1500 |",
        "| 300 |  | 0.1400 |",
    ]
    assert png.stat().st_size > 1000


def test_fold_table_puts_every_model_of_one_fold_side_by_side(tmp_path: Path) -> None:
    for name, ged in (("cnn", 0.25), ("hybrid", 0.2)):
        (tmp_path / name / "fold0").mkdir(parents=True)
        report = {"step": 1400, "ged": ged, "hm_iou": 0.7, "ncc": None, "majority_ged": 0.121}
        report["per_image"] = [{"id": "a"}, {"id": "b"}]
        (tmp_path / name / "fold0" / "test.json").write_text(json.dumps(report))
    lines = tables.fold_table(tmp_path, 0).splitlines()
    assert lines[2].startswith("| cnn | 2 | 1400 | 0.250 | 0.700 | — |")
    assert lines[3].startswith("| hybrid |") and lines[3].endswith("| 0.121 |")
    assert tables.fold_table(tmp_path, 3) == "(no results)"
