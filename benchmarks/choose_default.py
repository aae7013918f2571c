"""Apply the default-recipe rule to finished studies at several budgets and print the verdict table.

  python benchmarks/choose_default.py 240=/path/study240 800=/path/study800 1520=/path/study1520 \
      [--arms "backsplit,ramp:200,lvr=0.5"] [--target cyst]

Each folder is a ``backsplit study`` output folder (``results/per_case.csv``). The rule is in
``backsplit/study/decision.py``: never CI-worse than the binary baseline in Dice, lesion recall or FP lesions per case
at any measured budget, then the largest Dice gain at the largest budget.
"""

import argparse
import sys
from pathlib import Path

from backsplit.errors import BackSplitError
from backsplit.study.arm_registry import split_arms
from backsplit.study.decision import LARGE_BUDGET, judge_studies


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", help="STEPS=STUDY_FOLDER, one per budget")
    parser.add_argument("--arms", help="candidate arms (comma-separated); default: every arm but binary")
    parser.add_argument("--target", default="cyst")
    args = parser.parse_args(argv)
    studies = {}
    for item in args.studies:
        steps, _, folder = item.partition("=")
        if not steps.isdigit() or not folder:
            parser.error(f"'{item}': give STEPS=STUDY_FOLDER, e.g. 240=/data/study240")
        studies[int(steps)] = Path(folder)
    arms = split_arms(args.arms) if args.arms else None
    try:
        decision = judge_studies(studies, arms, args.target)
    except BackSplitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(decision.table())
    print(f"\ndefault: {decision.default} ({decision.reason})")
    if decision.provisional:
        print(f"provisional: the rule needs a study at {LARGE_BUDGET} optimiser steps or more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
