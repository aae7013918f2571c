"""How long a BackSplit training must be before it is as good as the binary baseline, and how many support
structures a budget carries. Pure Python: read by ``backsplit train`` (a warning before a short training),
``supports suggest --accept``, the Slicer support list and the training panel, so every number they show comes from
here.

A budget is counted in optimiser steps (epochs x iterations per epoch). Every number has a source, named next to it:

* ``MEASURED``: what ``backsplit study`` measured for the paper's BackSplit (one output head, multi-class loss from
  the first step) and the support schedules against the binary baseline on the shipped KiTS23-based cases (15 cases,
  target cyst, supports tumor + kidney, 3 folds, 2d, batch 12, 2-core CPU). Sources: the results files
  ``docs/results/2026-11-30-cpu2-quick.md`` (240 and 800 steps, one seed; fine-tuning with new output layers) and
  ``docs/results/2026-12-07-cpu2-dynamics.md`` (240 steps, 2 seeds, all 15 cases: the paper's recipe, ``lvr:1``,
  ``ramp:200,lvr=0.5``, ``head``; 800 and 1520 steps, one seed: binary and ``ramp:200,lvr=0.5``, the default
  since then by the rule of ``backsplit/study/decision.py``).
  "worse" means a paired 95 % bootstrap CI of the difference to the binary baseline excludes 0 in the binary baseline's
  favour for lesion Dice, lesion recall or false-positive lesions per case.
* ``PAPER_STATEMENTS``: what the BackSplit paper (appendix J, Fig. 6) says about supports and fine-tuning budgets.
  These are **the paper's statements, not our measurement**.
* ``SUPPORTS_FOR_BUDGET``: the most support structures to advise per budget; derived from the paper's Fig. 6
  statements (9 supports too many at 250 fine-tuning epochs, 1 support fine). Our study did not vary the number of
  supports in a way that replaces it (``drop:tumor``, 1 support, also found no cyst at 240 steps).

The break-even budget is the first measured budget at which the paper's BackSplit was not worse; while none is, the
advice is "above the largest budget measured worse" (``break_even_text``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

QUICK_RESULTS = "docs/results/2026-11-30-cpu2-quick.md"
DYNAMICS_RESULTS = "docs/results/2026-12-07-cpu2-dynamics.md"
# A planned budget within 10 % above a measured one counts as that budget (ours were whole epochs of 40 steps, the
# in-app fine-tuning is 5 x 50 = 250 steps); beyond that, a measured budget says nothing.
TOLERANCE = 1.1
SETTING = "the shipped KiTS23-based cases (target cyst, supports tumor + kidney), 2d, batch 12"


@dataclass(frozen=True)
class Finding:
    """One measured budget for one way of training the supports: ``recipe`` is ``paper`` (the paper's BackSplit) or
    a ``--support-schedule`` / ``head`` text; ``worse`` True when CI-worse than the binary baseline (see above)."""
    recipe: str
    steps: int
    worse: bool
    what: str
    source: str


MEASURED = (
    Finding("paper", 240, True, "a cyst found in 1 of 6 trainings only (none in 3 of 3 on 2026-11-30); lesion recall "
            "0.05 vs 0.62, difference CI -0.71 to -0.44", DYNAMICS_RESULTS),
    Finding("lvr:1", 240, True, "lesion recall 0.52 vs 0.62, difference CI -0.18 to -0.03 (Dice +0.09, CI +0.04 to "
            "+0.13; 9.3 fewer false-positive lesions per case, CI 7.1 to 12.2)", DYNAMICS_RESULTS),
    Finding("ramp:200,lvr=0.5", 240, False, "Dice +0.17 (CI +0.10 to +0.28), 2.7 fewer false-positive lesions per "
            "case (CI 0.7 to 5.2), lesion recall not different; the cyst started first (epoch 1-4 of 40 steps)",
            DYNAMICS_RESULTS),
    Finding("head", 240, False, "Dice, lesion recall and false-positive lesions per case not different (lesion-wise "
            "F1 -0.04, CI -0.10 to -0.00)", DYNAMICS_RESULTS),
    Finding("ramp:200,lvr=0.5", 800, False, "Dice +0.01 (CI -0.03 to +0.06), lesion recall +0.02 (CI -0.05 to "
            "+0.16), false-positive lesions per case +0.5 (CI -2.7 to +3.4): no difference shown (one seed)",
            DYNAMICS_RESULTS),
    Finding("ramp:200,lvr=0.5", 1520, False, "Dice +0.04 (CI +0.01 to +0.07, better), lesion recall +0.03 (CI +0.00 "
            "to +0.09), false-positive lesions per case +1.2 (CI -0.9 to +3.1): not worse (one seed)",
            DYNAMICS_RESULTS),
    Finding("paper", 800, True, "level with the binary baseline in Dice and recall (36 vs 37 of 54 cysts) but more "
            "false-positive lesions per case (11.7 vs 7.8, CI +1.1 to +9.9)", QUICK_RESULTS),
    Finding("finetune:preserve", 240, True, "fine-tuning the binary baseline from its own prediction (paper's loss) "
            "for 240 more steps: Dice +0.10 and lesion recall +0.15 but 9.0 more false-positive lesions per case "
            "(CI +3.0 to +15.0) than the 240-step binary baseline", DYNAMICS_RESULTS),
    Finding("finetune", 240, True, "fine-tuning the binary baseline with new output layers lost the cyst it had found "
            "(no cyst voxel predicted)", QUICK_RESULTS),
)

PAPER_STATEMENTS = (
    # BackSplit paper, appendix J / Fig. 6 (not our measurement)
    "supports are learned before the target",
    "with 9 support structures, 250 fine-tuning epochs do not beat the binary baseline",
    "with 1 support structure, the gain over the binary baseline appears",
    "fine-tuning a binary baseline at learning rate 1e-3 gives immediate improvements",
)
PAPER_EPOCH_ITERATIONS = 250   # nnU-Net's iterations per epoch, the paper's unit of budget

# (budget in optimiser steps, most supports advised), from the paper's Fig. 6 statements above (250 fine-tuning
# epochs x 250 iterations: 9 supports too many, 1 fine).
SUPPORTS_FOR_BUDGET = ((250 * PAPER_EPOCH_ITERATIONS, 1),)
SOURCE_OF_SUPPORTS_TABLE = "the BackSplit paper's Fig. 6 statements (appendix J), not our measurement"

# The panel's "How support structures enter training" choices -> the recipe name used in ``MEASURED``.
RECIPE_OF_CHOICE = {"default": "ramp:200,lvr=0.5", "paper": "paper", "ramp:200,lvr=0.5": "ramp:200,lvr=0.5",
                    "lvr:1": "lvr:1", "head": "head"}


def recipe_key(variants: dict, fine_tuning: bool = False) -> str:
    """The ``MEASURED`` name of a training's effective settings (``TrainOptions.variants``): ``head``, the support
    schedule's text, ``finetune`` / ``finetune:preserve`` when fine-tuning a binary baseline, else ``paper``."""
    if fine_tuning:
        return "finetune:preserve" if variants.get("head_init") == "preserve" else "finetune"
    if variants.get("support_head") is not None:
        return "head"
    schedule = variants.get("support_schedule") or "plain"
    return "paper" if schedule == "plain" else schedule


def supports_advised(steps: int) -> Optional[int]:
    """The most support structures advised for a training of ``steps`` optimiser steps (epochs x iterations per
    epoch), or None when the table says nothing for that budget (above its largest budget). Source:
    ``SUPPORTS_FOR_BUDGET`` (see ``SOURCE_OF_SUPPORTS_TABLE``)."""
    for budget, supports in SUPPORTS_FOR_BUDGET:
        if steps <= budget:
            return supports
    return None


def supports_warning(n_supports: int, steps: int) -> Optional[str]:
    """A sentence for the user when ``n_supports`` exceeds the advice for ``steps`` optimiser steps, else None.
    Names the source of the advice (the paper's statements)."""
    advised = supports_advised(int(steps))
    if advised is None or n_supports <= advised:
        return None
    return (f"{n_supports} support structures for a training of {steps} optimiser steps: at this budget more than "
            f"{advised} may make the model worse than the binary baseline (the BackSplit paper, appendix J, Fig. 6: "
            "with 9 support structures 250 fine-tuning epochs do not beat the binary baseline, with 1 the gain "
            "appears; not measured by BackSplit); choose fewer support structures or train longer")


def findings(recipe: str = "paper") -> list[Finding]:
    """The measured budgets of ``recipe`` (``default``: the recipe that is the default, ``RECIPE_OF_CHOICE``)."""
    name = RECIPE_OF_CHOICE.get(recipe, recipe)
    return sorted((f for f in MEASURED if f.recipe == name), key=lambda f: f.steps)


def break_even_steps(recipe: str = "paper") -> Optional[int]:
    """The first measured budget (optimiser steps) from which ``recipe`` was not worse than the binary baseline at any
    larger measured budget, or None while it was worse at its largest measured budget (or is not measured)."""
    rows = findings(recipe)
    if not rows or rows[-1].worse:
        return None
    ok = [f.steps for f in rows if not f.worse and not any(g.worse for g in rows if g.steps > f.steps)]
    return min(ok)


def worse_up_to(recipe: str = "paper") -> Optional[int]:
    """The largest measured budget at which ``recipe`` was worse than the binary baseline, or None."""
    worse = [f.steps for f in findings(recipe) if f.worse]
    return max(worse) if worse else None


def break_even_text(recipe: str = "default") -> str:
    """One or two sentences for the training panel: the expected break-even budget of ``recipe`` and its source."""
    rows = findings(recipe)
    if not rows:
        return (f"'{recipe}' has not been measured against the binary baseline; the paper's BackSplit needed more "
                f"than {worse_up_to('paper')} optimiser steps ({QUICK_RESULTS}).")
    steps = break_even_steps(recipe)
    measured = ", ".join(f"{f.steps} steps: {'worse' if f.worse else 'not worse'}" for f in rows)
    sources = ", ".join(sorted({f.source for f in rows}))
    if steps is None:
        head = f"Expected break-even: above {worse_up_to(recipe)} optimiser steps (not reached in our measurements)"
    else:
        head = (f"Not worse than the binary baseline from {steps} optimiser steps on (measured up to "
                f"{rows[-1].steps} steps only; larger budgets not measured)")
    return f"{head}; measured against the binary baseline on {SETTING} ({measured}; {sources})."


def short_training_warning(steps: int, recipe: str = "default") -> Optional[str]:
    """The warning before a BackSplit training of ``steps`` optimiser steps that is not longer than a budget at
    which ``recipe`` was measured worse than the binary baseline, else None."""
    limit = worse_up_to(recipe)
    if limit is None or int(steps) > limit * TOLERANCE:
        return None
    row = next(f for f in findings(recipe) if f.worse and f.steps * TOLERANCE >= int(steps))   # limit's row at least
    return (f"a BackSplit training of {steps} optimiser steps is short: at {row.steps} steps the BackSplit model "
            f"({_label(recipe)}) was worse than the binary baseline ({row.what}; {row.source}). "
            f"Train longer than {limit} optimiser steps (the largest budget measured worse), or train the binary "
            "baseline beside it and compare")


def _label(recipe: str) -> str:
    name = RECIPE_OF_CHOICE.get(recipe, recipe)
    return {"paper": "the paper's recipe", "head": "separate support head", "finetune": "fine-tuned from the binary "
            "baseline, new output layers", "finetune:preserve": "fine-tuned from the binary baseline's prediction"}.get(
        name, f"support schedule {name}")
