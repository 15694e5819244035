"""tools/results/ambiguity.py: the families x ambiguity-kinds table and its summary, from
evaluate's JSON files (no model needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.tools.conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "ambiguity", REPO / "tools" / "results" / "ambiguity.py"
)
ambiguity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ambiguity)


def _write(runs: Path, data: str, model: str, seed: int, ged: float, wall_s: float = 60) -> None:
    run = runs / data / model / f"seed{seed}"
    run.mkdir(parents=True)
    report = {"ged": ged, "hm_iou": 0.8, "mode_freq_error": 0.3, "nll": 100.0}
    (run / "test.json").write_text(json.dumps(report))
    (run / "wall_s.txt").write_text(f"{wall_s}\n")


def test_table_mean_std_over_seeds(tmp_path: Path) -> None:
    _write(tmp_path, "flip", "default", 0, 0.04, wall_s=120)
    _write(tmp_path, "flip", "default", 1, 0.06, wall_s=240)
    _write(tmp_path, "exclusive", "cnn", 0, 0.3)
    rows = ambiguity.table(tmp_path).splitlines()
    assert rows[0].startswith("| data | model | seeds | GED |")
    # the data sets in the protocol's order (exclusive before flip), whatever the folder order
    assert rows[2].startswith("| exclusive | CNN, arg-max hypotheses | 1 | 0.300 |")
    flip = rows[3].split(" | ")
    assert flip[:4] == ["| flip", "default (categorical CVAE)", "2", "0.050 ± 0.014"]
    assert flip[-1] == "3.0 ± 1.4 |"  # training minutes: 2 and 4
    assert flip[6] == "—"  # purity: not in these reports


def test_summary_picks_the_strongest_baseline_by_mean(tmp_path: Path) -> None:
    for seed, ged in enumerate((0.04, 0.06)):
        _write(tmp_path, "independent", "default", seed, ged)
    for seed, ged in enumerate((0.09, 0.11)):
        _write(tmp_path, "independent", "cnn_level_sets", seed, ged)
    _write(tmp_path, "independent", "mc_dropout", 0, 0.095)  # one seed, a lower value
    _write(tmp_path, "independent", "mc_dropout", 1, 0.125)  # but a higher mean: 0.110
    _write(tmp_path, "independent", "prob_unet", 0, 0.01)  # not a baseline
    _write(tmp_path, "mixed", "default", 0, 0.1)  # no baseline run: no row
    lines = ambiguity.summary(tmp_path).splitlines()
    assert len(lines) == 3
    cells = lines[2].strip("| ").split(" | ")
    assert cells[0] == "independent"
    assert cells[1] == "0.050 ± 0.014 (2)"
    assert cells[2] == "CNN, level-set hypotheses"
    assert cells[3] == "0.100 ± 0.014 (2)"
    assert cells[4] == "0.50×"
    assert cells[5] == "CNN, level-set hypotheses, MC dropout"
    assert cells[6:] == ["Prob. U-Net", "0.010 (1)"]  # the best other generative family
    _write(tmp_path, "independent", "ssn", 0, 0.02)
    _write(tmp_path, "mixed", "cnn", 0, 0.3)
    lines = ambiguity.summary(tmp_path).splitlines()
    assert lines[2].strip("| ").split(" | ")[6:] == ["Prob. U-Net", "0.010 (1)"]
    assert lines[3].strip("| ").split(" | ")[6:] == ["—", "—"]  # mixed: none run
