"""The default-recipe rule (``backsplit/study/decision.py``) on hand-made per-case rows with known answers, and the
script that applies it to study folders (``benchmarks/choose_default.py``) on a real ``results/per_case.csv``."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from backsplit.errors import InputError
from backsplit.study.decision import PAPER, judge, judge_studies

REPO = Path(__file__).resolve().parent.parent
FIELDS = ["arm", "fold", "seed", "case_id", "target", "dice", "reference_lesions", "detected_lesions",
          "missed_lesions", "false_positive_lesions"]


def rows_for(arm: str, dice: list, detected: list, fp: list) -> list:
    """One row per case: 4 reference lesions each; ``detected``/``fp`` lesions per case."""
    return [{"arm": arm, "fold": "0", "seed": "1", "case_id": f"c{i:02d}", "target": "cyst", "dice": str(d),
             "reference_lesions": "4", "detected_lesions": str(k), "missed_lesions": str(4 - k),
             "false_positive_lesions": str(f)} for i, (d, k, f) in enumerate(zip(dice, detected, fp))]


N = 12
BINARY = rows_for("binary", [0.40 + 0.01 * (i % 3) for i in range(N)], [2] * N, [5] * N)
SAME = rows_for("steady", [0.42 + 0.01 * (i % 4) for i in range(N)], [2 + (i % 2) for i in range(N)], [4] * N)
LOSES_RECALL = rows_for("greedy", [0.60 + 0.01 * (i % 3) for i in range(N)], [0] * N, [1] * N)
MORE_FP = rows_for("noisy", [0.41] * N, [2] * N, [9 + (i % 2) for i in range(N)])


def test_an_arm_worse_at_one_budget_fails_the_rule_and_the_steady_one_is_chosen():
    decision = judge({240: BINARY + SAME + LOSES_RECALL, 800: BINARY + SAME + LOSES_RECALL + MORE_FP},
                     ["greedy", "steady", "noisy"], "cyst")
    by_arm = {v.arm: v for v in decision.verdicts}
    assert by_arm["greedy"].worse[240] == ["lesion_recall"] and not by_arm["greedy"].meets_rule
    assert by_arm["noisy"].missing == [240] and by_arm["noisy"].worse[800] == ["fp_lesions"]
    assert by_arm["steady"].meets_rule and decision.default == "steady"
    assert decision.provisional          # no budget of 1500 steps or more
    assert "**lesion-wise recall" in decision.table()


def test_the_largest_dice_gain_at_the_largest_budget_wins_among_qualified_arms():
    better = rows_for("better", [0.50 + 0.01 * (i % 3) for i in range(N)], [2] * N, [5] * N)
    decision = judge({240: BINARY + SAME + better, 1600: BINARY + SAME + better}, ["steady", "better"], "cyst")
    assert decision.default == "better" and not decision.provisional


def test_no_qualified_arm_keeps_the_papers_recipe():
    decision = judge({240: BINARY + LOSES_RECALL}, ["greedy"], "cyst")
    assert decision.default == PAPER and "stays the default" in decision.reason


def test_a_study_without_the_binary_baseline_is_refused():
    with pytest.raises(InputError, match="no 'binary' arm"):
        judge({240: SAME}, ["steady"], "cyst")


def write_study(folder: Path, rows: list) -> Path:
    (folder / "results").mkdir(parents=True)
    with open(folder / "results" / "per_case.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_study_folders_and_the_script(tmp_path):
    comma_arm = [dict(r, arm="ramp:200,lvr=0.5") for r in SAME]     # an arm name with a comma survives the CSV
    study = write_study(tmp_path / "s240", BINARY + comma_arm)
    assert judge_studies({240: study}).default == "ramp:200,lvr=0.5"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "choose_default.py"), f"240={study}",
                          "--arms", "ramp:200,lvr=0.5"], capture_output=True, text=True, encoding="utf-8")
    assert run.returncode == 0, run.stderr
    assert "default: ramp:200,lvr=0.5" in run.stdout and "provisional" in run.stdout
    missing = subprocess.run([sys.executable, str(REPO / "benchmarks" / "choose_default.py"), f"240={tmp_path}"],
                             capture_output=True, text=True, encoding="utf-8")
    assert missing.returncode == 2 and "per_case.csv" in missing.stderr and "Traceback" not in missing.stderr
