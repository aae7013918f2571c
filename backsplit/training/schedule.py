"""When the support structures enter the loss: support schedules that start from binary training's loss and bring
the supports in over a number of optimiser steps. Pure Python, no torch.

A ``LossSchedule`` maps the optimiser step (0-based, counted over the whole run: ``epoch * iterations_per_epoch +
iteration``, so a resumed run continues the schedule) to the two weights of ``losses.BackSplitLoss``:

    w_multi(step) = r(step)                     the paper's multi-class DC+CE over 1 + T + S classes
    w_lvr(step)   = lvr + (1 - r(step)) * hold  binary training's DC+CE on lesion vs the summed rest

with the ramp ``r(step) = clip((step - delay) / ramp, 0, 1)`` (``ramp = 0``: r = 1 from step 0).
``hold = 1`` when a ramp is set (the lesion-vs-rest term carries the weight the supports do not yet have), so at
step 0 with ``ramp > 0`` the loss *is* binary training's loss: together with the function-preserving output layers
(``headinit``) a fine-tuned model starts exactly as the binary model and keeps its gradient, and the supports come in
linearly over ``ramp`` steps (a linear warm-up, as curriculum / loss warm-ups do; e.g. Bengio et al., "Curriculum
learning", ICML 2009). ``lvr`` is the constant extra lesion-vs-rest weight; ``cap`` (the supports' share
of the Dice term, ``losses.capped_support_weights``) is constant and does not depend on the step.

Variants as text (the ``--support-schedule`` option and study arm parameter), parsed by ``parse_schedule``:
``plain`` (the paper: w_multi 1, w_lvr 0), ``lvr:W``, ``ramp:N[,delay=D][,lvr=W][,cap=C]``, ``cap:C[,lvr=W]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class LossSchedule:
    lvr: float = 0.0              # constant lesion-vs-rest weight; 0 = the paper's loss
    ramp: int = 0                 # steps over which the supports' weight goes 0 -> 1 (0: from the start)
    delay: int = 0                # steps of pure binary loss before the ramp starts (only with ramp > 0)
    cap: Optional[float] = None   # supports' maximal share of the Dice term (None: nnU-Net's uniform mean)

    def weights(self, step: int) -> tuple[float, float]:
        """(w_multi, w_lvr) at optimiser step ``step`` (0-based)."""
        r = ramp_value(step, self.ramp, self.delay)
        return r, self.lvr + (1.0 - r if self.ramp > 0 else 0.0)

    def to_option(self) -> str:
        """Canonical text (round trip with ``parse_schedule``; the study arm's name uses it)."""
        if self.ramp == 0 and self.cap is None:
            return "plain" if self.lvr == 0 else f"lvr:{self.lvr:g}"
        head = f"ramp:{self.ramp}" if self.ramp else f"cap:{self.cap:g}"
        extras = [f"delay={self.delay}"] if self.delay else []
        extras += [f"lvr={self.lvr:g}"] if self.lvr else []
        extras += [f"cap={self.cap:g}"] if self.ramp and self.cap is not None else []
        return ",".join([head] + extras)

    def to_json(self) -> dict:
        """Manifest / content-hash record."""
        return {"option": self.to_option(), **asdict(self)}

    @property
    def is_plain(self) -> bool:
        return self.lvr == 0 and self.ramp == 0 and self.cap is None


def ramp_value(step: int, ramp: int, delay: int = 0) -> float:
    """``clip((step - delay) / ramp, 0, 1)``; 1 when ``ramp`` is 0."""
    if ramp <= 0:
        return 1.0
    return min(1.0, max(0.0, (step - delay) / float(ramp)))


FORMS = "plain, lvr:W, ramp:N[,delay=D][,lvr=W][,cap=C] or cap:C[,lvr=W] (e.g. ramp:200,lvr=1)"


def parse_schedule(text: Optional[str]) -> LossSchedule:
    """``"ramp:200,lvr=0.5"`` -> LossSchedule. Raises ValueError naming the accepted forms (the engine wraps it in
    InputError with the option name)."""
    text = (text or "plain").strip().lower()
    head, *extras = [part.strip() for part in text.split(",") if part.strip()]
    kind, _, value = head.partition(":")
    values: dict = {}
    try:
        if kind == "plain" and not value:
            pass
        elif kind == "lvr":
            values["lvr"] = float(value)
        elif kind == "ramp":
            values["ramp"] = int(value)
        elif kind == "cap":
            values["cap"] = float(value)
        else:
            raise ValueError
        for extra in extras:
            key, _, number = extra.partition("=")
            if key not in ("delay", "lvr", "cap") or key in values or (key == "delay" and kind != "ramp"):
                raise ValueError
            values[key] = int(number) if key == "delay" else float(number)
    except ValueError:
        raise ValueError(f"support schedule '{text}' is not understood; use {FORMS}") from None
    schedule = LossSchedule(**values)
    if schedule.lvr < 0 or schedule.ramp < 0 or schedule.delay < 0:
        raise ValueError(f"support schedule '{text}': weights and step counts must not be negative")
    if schedule.cap is not None and not 0 < schedule.cap < 1:
        raise ValueError(f"support schedule '{text}': cap is the supports' share of the Dice term, between 0 and 1")
    if kind == "plain" and extras:
        raise ValueError(f"support schedule '{text}': 'plain' takes no settings; use {FORMS}")
    return schedule


# ---- recipes: the named sets of the three training options (``backsplit train --recipe``) -----------------------

HEAD_INITS = ("preserve", "reinit")
RECIPES = {
    # the paper's BackSplit: multi-class loss from step 0, one head, fine-tuning re-initialises the output layers
    "paper": {"support_schedule": "plain", "support_head": None, "head_init": "reinit"},
    # the default is chosen by measurement (docs/results/2026-12-07-cpu2-dynamics.md, the rule in
    # backsplit/study/decision.py): never CI-worse than the binary baseline at 240, 800 and 1520 optimiser steps, and
    # the best of the recipes that meet the rule at the largest; fine-tuning a binary baseline starts from its
    # prediction (function-preserving output layers)
    "default": {"support_schedule": "ramp:200,lvr=0.5", "support_head": None, "head_init": "preserve"},
}


def default_differs_from_paper() -> dict:
    """The default recipe's settings that differ from the paper's (``{}`` while they are the same): the study's arms
    that train with the default record them so that their content hash changes when the default changes (a study
    never reuses a paper-recipe model for a changed default). Keys: ``loss`` (support schedule text),
    ``support_head``, ``head_init``."""
    default, paper = RECIPES["default"], RECIPES["paper"]
    fields = {}
    if default["support_schedule"] != paper["support_schedule"]:
        fields["loss"] = parse_schedule(default["support_schedule"]).to_option()
    if default["support_head"] != paper["support_head"]:
        fields["support_head"] = default["support_head"]
    if default["head_init"] != paper["head_init"]:
        fields["head_init"] = default["head_init"]
    return fields


def resolve_recipe(recipe: Optional[str], support_schedule: Optional[str] = None,
                   support_head: Optional[float] = None, head_init: Optional[str] = None) -> dict:
    """The training's effective settings: the recipe's values, each replaced by an explicit option when given.

    An explicit ``support_head`` without an explicit ``support_schedule`` trains with the plain schedule beside it
    (the head replaces the recipe's schedule; both given explicitly is refused).
    Returns ``{"recipe", "support_schedule" (canonical text), "loss_schedule" (LossSchedule), "support_head"
    (weight or None), "head_init"}``. Raises ValueError naming the allowed values (the engine wraps it in InputError).
    """
    name = (recipe or "default").strip().lower()
    if name not in RECIPES:
        raise ValueError(f"recipe '{recipe}' is unknown; choose {' or '.join(RECIPES)}")
    values = dict(RECIPES[name])
    if support_schedule is not None:
        values["support_schedule"] = support_schedule
    elif support_head is not None:
        values["support_schedule"] = "plain"   # an explicit support head replaces the recipe's schedule
    if support_head is not None:
        if not float(support_head) > 0:
            raise ValueError(f"the support head's weight must be above 0, got {support_head}")
        values["support_head"] = float(support_head)
    if head_init is not None:
        if head_init not in HEAD_INITS:
            raise ValueError(f"head init '{head_init}' is unknown; choose preserve (start from the binary model's "
                             "prediction) or reinit (nnU-Net's rule: new output layers)")
        values["head_init"] = head_init
    schedule = parse_schedule(values["support_schedule"])
    if values["support_head"] is not None and not schedule.is_plain:
        raise ValueError(f"the support schedule '{schedule.to_option()}' and the separate support head cannot be "
                         "combined: with the support head the lesion head is trained with binary training's loss "
                         "already; use one of them")
    return {"recipe": name, "support_schedule": schedule.to_option(), "loss_schedule": schedule,
            "support_head": values["support_head"], "head_init": values["head_init"]}
