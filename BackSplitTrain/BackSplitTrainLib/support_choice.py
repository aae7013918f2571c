"""The training panel's "How support structures enter training" choice: the training options each entry stands for,
and the expected break-even budget shown under it, updated when the epochs, the iterations per epoch or the choice
change. The recipes are the engine's (``backsplit.training.schedule``); every number shown comes from
``backsplit.training.budget``, which names its source. No Qt here: the widget hands in its ``ui``.
"""

from __future__ import annotations

from backsplit.errors import InputError
from backsplit.training.budget import break_even_text, short_training_warning

# The entries of the panel's combo box (the parameter node's Choice lists the same, in this order).
CHOICES = ("default", "paper", "ramp:200,lvr=0.5", "lvr:1", "head")
SCHEDULES = ("ramp:200,lvr=0.5", "lvr:1")


def choice_options(choice: str, fine_tuning: bool = False) -> dict:
    """``TrainOptions`` keyword arguments for a choice: ``default`` (the measured default, ``ramp:200,lvr=0.5``:
    ``backsplit.training.schedule.RECIPES``), ``paper`` (multi-class loss from the first step, one output head), a
    support schedule (start with the binary baseline's loss of target vs the rest, supports ramped in / added), or
    ``head`` (supports on a separate output head, exported as the target head alone). When fine-tuning a binary
    baseline, the variants start from its prediction (``head_init`` preserve). Raises InputError for an unknown
    choice."""
    if choice in ("default", "paper"):
        return {"recipe": choice}
    if choice not in CHOICES:
        raise InputError(f"'{choice}' is not a way of training the support structures; choose one of "
                         f"{', '.join(CHOICES)}")
    options = {"support_schedule": choice} if choice in SCHEDULES else {"support_head": 1.0}
    return {"recipe": "default", **options, **({"head_init": "preserve"} if fine_tuning else {})}


def budget_text(steps: int, choice: str) -> str:
    """The expected break-even budget of the choice and, for a training not longer than a budget measured worse than
    the binary baseline, the warning (``training.budget``)."""
    warning = short_training_warning(int(steps), choice)
    return break_even_text(choice) + (f"\nWarning: {warning}." if warning else "")


class BudgetLabel:
    """Keeps ``ui.breakEvenLabel`` showing ``budget_text`` for the planned training (``ui.epochs`` x
    ``ui.iterationsPerEpoch`` optimiser steps, ``ui.supportRecipe``'s choice)."""

    def __init__(self, ui) -> None:
        self.ui = ui
        self.ui.epochs.valueChanged.connect(lambda *_: self.show())
        self.ui.iterationsPerEpoch.valueChanged.connect(lambda *_: self.show())
        self.ui.supportRecipe.currentIndexChanged.connect(lambda *_: self.show())
        self.show()

    def show(self) -> None:
        steps = int(self.ui.epochs.value) * int(self.ui.iterationsPerEpoch.value)
        self.ui.breakEvenLabel.text = budget_text(steps, self.ui.supportRecipe.currentText)
