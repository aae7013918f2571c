"""The rule that chooses BackSplit's default training recipe from studies at several budgets.

Rule (issue "BackSplit that never loses to the binary model"): a recipe (a study arm other than the binary baseline)
may become the default only if, at **every** measured budget, it is never CI-worse than the binary baseline in any of
``RULE_METRICS`` (Dice, lesion-wise recall, FP lesions per case; paired bootstrap 95 % CI of the per-case mean
difference, ``backsplit.study.stats.compare``), and it must have been measured at every budget. Among the recipes
that meet the rule, the default is the one with the largest mean paired Dice difference to the binary baseline at the
largest budget (ties: larger lesion-recall difference). When none meets it, the paper's recipe stays the default and
the panels warn before a short BackSplit training (``backsplit.training.budget``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from backsplit.errors import InputError
from backsplit.study.stats import METRICS, Comparison, compare

RULE_METRICS = ("dice", "lesion_recall", "fp_lesions")
LARGE_BUDGET = 1500        # optimiser steps: the rule needs one study at this budget or more
REFERENCE = "binary"
PAPER = "backsplit"


@dataclass
class ArmVerdict:
    """One recipe over all budgets: ``worse[budget]`` lists the rule metrics CI-worse than the binary baseline."""

    arm: str
    comparisons: dict = field(default_factory=dict)     # budget -> [Comparison per rule metric]
    worse: dict = field(default_factory=dict)           # budget -> [metric, ...]
    missing: list = field(default_factory=list)         # budgets where the arm has no finished case

    @property
    def meets_rule(self) -> bool:
        return not self.missing and not any(self.worse.values())

    def difference(self, budget: int, metric: str) -> float:
        for c in self.comparisons.get(budget, []):
            if c.metric == metric:
                return c.difference
        return math.nan


@dataclass
class Decision:
    budgets: list                  # optimiser steps, ascending
    verdicts: list                 # ArmVerdict per candidate arm, in the order given
    default: str                   # the chosen arm, or PAPER when none meets the rule
    reason: str

    @property
    def provisional(self) -> bool:
        """True when no study reached ``LARGE_BUDGET`` steps: the rule is not complete yet."""
        return not self.budgets or self.budgets[-1] < LARGE_BUDGET

    def table(self) -> str:
        """Markdown: one row per arm, one column per budget with the rule metrics' differences and verdicts."""
        head = "| arm | " + " | ".join(f"{b} steps" for b in self.budgets) + " | meets the rule |"
        lines = [head, "|---|" + "---|" * len(self.budgets) + "---|"]
        for v in self.verdicts:
            cells = []
            for b in self.budgets:
                if b in v.missing:
                    cells.append("not measured")
                    continue
                parts = []
                for c in v.comparisons[b]:
                    mark = "**" if c.metric in v.worse[b] else ""
                    parts.append(f"{mark}{METRICS[c.metric][0]} {c.difference:+.3f} "
                                 f"({c.ci_low:+.3f} to {c.ci_high:+.3f}){mark}")
                cells.append("; ".join(parts))
            lines.append(f"| {v.arm} | " + " | ".join(cells) + f" | {'yes' if v.meets_rule else 'no'} |")
        return "\n".join(lines)


def read_per_case(study_dir: Path) -> list[dict]:
    """Rows of ``<study>/results/per_case.csv`` (written by ``backsplit study``); InputError when it is missing."""
    path = Path(study_dir) / "results" / "per_case.csv"
    if not path.is_file():
        raise InputError("no study results here; run `backsplit study ... --report-only` on the study folder first",
                         path=str(path))
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def judge(rows_by_budget: Mapping[int, Sequence[dict]], arms: Sequence[str], target: str,
          reference: str = REFERENCE) -> Decision:
    """Apply the rule to per-case rows of one study per budget (``{steps: rows}``) for the candidate ``arms``.

    Raises InputError when the binary baseline is missing at a budget (nothing to compare with)."""
    budgets = sorted(rows_by_budget)
    verdicts = []
    for arm in arms:
        verdict = ArmVerdict(arm)
        for budget in budgets:
            rows = rows_by_budget[budget]
            present = {r.get("arm") for r in rows}
            if reference not in present:
                raise InputError(f"the study at {budget} steps has no '{reference}' arm to compare with; add it to "
                                 "the study's --arms")
            if arm not in present:
                verdict.missing.append(budget)
                continue
            comparisons = [compare(rows, arm, reference, target, metric) for metric in RULE_METRICS]
            verdict.comparisons[budget] = comparisons
            verdict.worse[budget] = [c.metric for c in comparisons if is_worse(c)]
        verdicts.append(verdict)
    largest = budgets[-1] if budgets else None
    qualified = [v for v in verdicts if v.meets_rule]
    if not qualified:
        return Decision(budgets, verdicts, PAPER, "no recipe is never CI-worse than the binary baseline at every "
                        "measured budget; the paper's recipe stays the default and short trainings are warned about")
    best = max(qualified, key=lambda v: (_finite(v.difference(largest, "dice")),
                                          _finite(v.difference(largest, "lesion_recall"))))
    return Decision(budgets, verdicts, best.arm, f"never CI-worse than the binary baseline at {budgets} steps and the "
                    f"largest Dice gain at {largest} steps among the {len(qualified)} recipe(s) that meet the rule")


def is_worse(comparison: Comparison) -> bool:
    """True when the comparison's 95 % CI excludes 0 on the worse side of its metric."""
    return comparison.verdict.startswith("worse")


def _finite(value: float, default: float = -math.inf) -> float:
    return value if math.isfinite(value) else default


def judge_studies(studies: Mapping[int, Path], arms: Optional[Sequence[str]] = None, target: str = "cyst") -> Decision:
    """``judge`` over study folders (``{steps: folder}``); ``arms`` default: every arm but the binary baseline found
    in any of them, in the order first seen."""
    rows = {budget: read_per_case(folder) for budget, folder in studies.items()}
    if arms is None:
        seen = [r["arm"] for budget in sorted(rows) for r in rows[budget]]
        arms = [a for a in dict.fromkeys(seen) if a != REFERENCE]
    return judge(rows, arms, target)
