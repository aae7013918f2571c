"""How long a BackSplit training must be before it pays off, and how many support structures a budget carries
(issue 19). Pure Python: read by ``supports suggest``, the Slicer support list and the training panel.

Every number here has a source, named next to it:

* ``MEASURED_BREAK_EVEN``: the first budget (optimiser steps) at which the paper's BackSplit was not CI-worse than
  the binary model in lesion Dice, lesion recall and FP lesions per case, measured with ``backsplit study`` on the
  shipped KiTS23-based cases. **Not measured yet**: it stays ``None`` until the results file
  ``docs/results/<date>-cpu2-dynamics.md`` (issue 19) exists; then it is filled from that file's tables.
* ``PAPER_STATEMENTS``: what the BackSplit paper (appendix J, Fig. 6) says about supports and fine-tuning budgets.
  These are **the paper's statements, not our measurement**, kept so the warnings can cite them until ours exist.
* ``SUPPORTS_FOR_BUDGET``: the most support structures to advise per budget; a **placeholder derived from the
  paper's Fig. 6 statements** (9 supports too many at 250 fine-tuning epochs, 1 support fine), to be replaced by the
  measurement.
"""

from __future__ import annotations

from typing import Optional

RESULTS_FILE = None            # "docs/results/<date>-cpu2-dynamics.md" once the measurement of issue 19 is done
MEASURED_BREAK_EVEN: Optional[dict] = None   # e.g. {"steps": 800, "hardware": "...", "results": RESULTS_FILE}

PAPER_STATEMENTS = (
    # BackSplit paper, appendix J / Fig. 6 (not our measurement)
    "supports are learned before the target",
    "with 9 support structures, 250 fine-tuning epochs do not beat the binary model",
    "with 1 support structure, the gain over the binary model appears",
    "fine-tuning a binary model at learning rate 1e-3 gives immediate improvements",
)
PAPER_EPOCH_ITERATIONS = 250   # nnU-Net's iterations per epoch, the paper's unit of budget

# (budget in optimiser steps, most supports advised): PLACEHOLDER from the paper's Fig. 6 statements above (250
# fine-tuning epochs x 250 iterations: 9 supports too many, 1 fine); replace by the measured table.
SUPPORTS_FOR_BUDGET = ((250 * PAPER_EPOCH_ITERATIONS, 1),)
SOURCE_OF_SUPPORTS_TABLE = "placeholder: the BackSplit paper's Fig. 6 statements (appendix J), not our measurement"


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
    Names the source of the advice (the paper's statements until our measurement exists)."""
    advised = supports_advised(int(steps))
    if advised is None or n_supports <= advised:
        return None
    source = (f"measured in {RESULTS_FILE}" if MEASURED_BREAK_EVEN else
              "the BackSplit paper (appendix J, Fig. 6: with 9 support structures 250 fine-tuning epochs do not beat "
              "the binary model, with 1 the gain appears); not yet measured by BackSplit")
    return (f"{n_supports} support structures for a training of {steps} optimiser steps: at this budget more than "
            f"{advised} may make the model worse than the binary one ({source}); choose fewer support structures or "
            "train longer")


def break_even_steps() -> Optional[int]:
    """The measured break-even budget in optimiser steps, or None while it is not measured."""
    return None if not MEASURED_BREAK_EVEN else int(MEASURED_BREAK_EVEN["steps"])
