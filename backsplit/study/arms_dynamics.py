"""Study arms for how the support structures enter training: each arm trains on the BackSplit dataset
with one setting of ``backsplit train --support-schedule / --support-head / --head-init``.

* ``paper``: the paper's recipe (plain multi-class loss), whatever the train default becomes;
* ``lvr[:W]`` (W default 1): plain + W x lesion-vs-rest (binary training's loss on the same softmax);
* ``ramp[:N][,lvr=W][,delay=D][,cap=C]`` (N default 200): binary training's loss at step 0, supports ramped in
  over N optimiser steps;
* ``cap[:C][,lvr=W]`` (C default 0.5): the supports hold at most C of the Dice term;
* ``head[:W]`` (W default 1): a separate support head (autoPET III); the exported lesion head is evaluated;
* ``finetune[:preserve|reinit][,loss=SCHEDULE]``: the binary model of the same fold and seed fine-tuned at lr 1e-3;
  ``finetune`` alone stays the paper's arm (output layers re-initialised; content hash unchanged).

The new ``Arm`` fields (``loss``, ``support_head``, ``head_init``) enter ``Arm.training_json`` only when set, so
every earlier arm keeps its content hash. ``split_arms`` keeps ``ramp:200,lvr=0.5`` together.
"""

from __future__ import annotations

from backsplit.errors import InputError
from backsplit.study.arm_registry import BINARY, SOURCE, Arm, ArmType, register_arm
from backsplit.training.options import FINE_TUNE_LR
from backsplit.training.schedule import parse_schedule

SCHEDULE_DEFAULTS = {"lvr": "1", "ramp": "200", "cap": "0.5"}


def _needs_supports(name: str, context) -> None:
    if not context.supports:
        raise InputError(f"arm '{name}' needs support structures in the dataset")


def _schedule(text: str, arm: str) -> str:
    try:
        return parse_schedule(text).to_option()
    except ValueError as exc:
        raise InputError(f"arm '{arm}': {exc}") from None


def _paper(parameter, context):
    if parameter:
        raise InputError(f"arm 'paper' takes no parameter (got 'paper:{parameter}')")
    _needs_supports("paper", context)
    return Arm("paper", "paper", SOURCE, loss="plain")


def _schedule_arm(kind: str):
    def build(parameter, context):
        default = SCHEDULE_DEFAULTS[kind]
        text = f"{kind}:{parameter or default}"
        if parameter and "=" in parameter.split(",")[0]:
            text = f"{kind}:{default},{parameter}"                 # ramp:lvr=1 -> ramp:200,lvr=1
        option = _schedule(text, text)
        _needs_supports(option, context)
        return Arm(option, kind, SOURCE, loss=option)
    return build


def _head(parameter, context):
    try:
        weight = float(parameter) if parameter else 1.0
    except ValueError:
        raise InputError(f"arm 'head:{parameter}': the support head's weight must be a number, e.g. head:0.5") \
            from None
    if not weight > 0:
        raise InputError(f"arm 'head:{parameter}': the support head's weight must be above 0")
    _needs_supports("head", context)
    return Arm(f"head:{weight:g}" if parameter else "head", "head", SOURCE, support_head=weight)


def _finetune(parameter, context):
    init, *settings = (parameter or "").split(",")
    if init not in ("", "preserve", "reinit"):
        raise InputError(f"arm 'finetune:{parameter}' is unknown; choose finetune, finetune:preserve or "
                         "finetune:reinit (optionally ,loss=SCHEDULE)")
    if not context.supports:
        raise InputError("arm 'finetune' needs support structures in the dataset")
    loss = None
    for item in settings:
        key, _, value = item.partition("=")
        if key != "loss" or loss is not None:
            raise InputError(f"arm 'finetune:{parameter}': only loss=SCHEDULE may follow, e.g. "
                             "finetune:preserve,loss=ramp:200")
        loss = _schedule(value, f"finetune:{parameter}")
    name = "finetune" + (f":{init}" if init else "") + (f",loss={loss}" if loss else "")
    return Arm(name, "finetune", SOURCE, initial_lr=FINE_TUNE_LR, pretrained_arm=BINARY, head_init=init or None,
               loss=loss)


register_arm(ArmType("paper", "the paper's recipe: plain multi-class loss (stays when the default changes)", _paper))
register_arm(ArmType("lvr", "lvr[:W] plain loss + W x binary training's loss of target vs rest", _schedule_arm("lvr")))
register_arm(ArmType("ramp", "ramp[:N][,lvr=W][,delay=D][,cap=C] supports ramped in over N steps",
                     _schedule_arm("ramp")))
register_arm(ArmType("cap", "cap[:C][,lvr=W] supports hold at most C of the Dice term", _schedule_arm("cap")))
register_arm(ArmType("head", "head[:W] separate support head (exported: the target head alone)", _head))
register_arm(ArmType("finetune", "finetune[:preserve|reinit][,loss=S] binary model fine-tuned at lr 1e-3", _finetune))
