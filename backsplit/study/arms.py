"""The arm registry: what each arm of a study trains on and how.

An arm is a named training recipe compared against the binary model: which dataset (the BackSplit dataset, its
binary twin, or a dataset derived from the BackSplit dataset by a recipe), which sampling, which learning rate and
which other arm's model it starts from. Built-in arms:

* ``binary``: the binary twin (support classes folded into background); the reference of every comparison.
* ``backsplit``: the dataset's own support structures, trained with ``backsplit train``'s default recipe (its
  settings enter the content hash when they differ from the paper's; ``paper`` keeps the paper's recipe).
* ``drop:<support>``: one support structure left out (folded into background): which supports matter (paper Fig. 4).
* ``noisy:erode:<mm>`` / ``noisy:dilate:<mm>``: support structures eroded / dilated by a physical distance;
  ``noisy:missing:<fraction>``: that fraction of cases has no support labels at all (paper Table 4, Fig. 3 right).
* ``rings[:W1,W2]`` / ``kmeans[:T]``: generated context classes (CoLab) instead of the dataset's supports.
* ``finetune``: the binary model of the same fold and seed fine-tuned on the BackSplit dataset at lr 1e-3 (Fig. 3).
* ``sampling:stock`` / ``sampling:target``: the BackSplit dataset with nnU-Net's or target-aware patch sampling.
* ``paper``, ``lvr[:W]``, ``ramp[:N]...``, ``cap[:C]...``, ``head[:W]``, ``finetune:preserve[,loss=S]``: how the
  support structures enter training (``arms_dynamics.py``).

A new arm plugs in with one call, e.g. ``register_arm(ArmType("learned", "...", build, derive=my_derive))``; the
plan, the executors and the report need no change. ``derive`` (optional) writes the arm's dataset; the default is
``backsplit.study.derive.derive_dataset``, which reads the recipe keys ``supports``, ``transform``,
``missing_fraction`` and ``context`` and writes through ``backsplit.datasets.export``.
"""

from __future__ import annotations

from typing import Optional

from backsplit.errors import InputError
from backsplit.study.arm_registry import (  # noqa: F401 - the registry's names, as the study's code uses them
    BINARY,
    DERIVED,
    SOURCE,
    TWIN,
    Arm,
    ArmContext,
    ArmType,
    arm_type,
    arm_types,
    parse_arm,
    parse_arms,
    register_arm,
    split_arms,
)
from backsplit.training.options import FINE_TUNE_LR, SAMPLINGS
from backsplit.training.schedule import default_differs_from_paper


def _no_parameter(kind: str, parameter: Optional[str]) -> None:
    if parameter:
        raise InputError(f"arm '{kind}' takes no parameter (got '{kind}:{parameter}')")


def _binary(parameter, context):
    _no_parameter("binary", parameter)
    return Arm("binary", "binary", TWIN)


def _backsplit(parameter, context):
    _no_parameter("backsplit", parameter)
    if not context.supports:
        raise InputError("the dataset has no support structures: arm 'backsplit' would equal 'binary'; use "
                         "generated context arms (rings, kmeans) instead")
    return Arm("backsplit", "backsplit", SOURCE, **default_differs_from_paper())   # the train default


def _drop(parameter, context):
    by_key = {s.casefold(): s for s in context.supports}
    if not parameter or parameter.casefold() not in by_key:
        raise InputError(f"arm 'drop:{parameter or ''}' needs one of the dataset's support structures: "
                         f"{', '.join('drop:' + s for s in context.supports) or '(none)'}")
    dropped = by_key[parameter.casefold()]
    kept = [s for s in context.supports if s != dropped]
    return Arm(f"drop:{dropped}", "drop", DERIVED, {"supports": kept})


NOISY_DEFAULTS = {"erode": 2.0, "dilate": 2.0, "missing": 0.5}


def _noisy(parameter, context):
    kind, _, value = (parameter or "").partition(":")
    if kind not in NOISY_DEFAULTS:
        raise InputError(f"arm 'noisy:{parameter or ''}' is unknown; choose noisy:erode:<mm>, noisy:dilate:<mm> or "
                         "noisy:missing:<fraction of cases without supports> (e.g. noisy:erode:2, noisy:missing:0.5)")
    try:
        amount = float(value) if value else NOISY_DEFAULTS[kind]
    except ValueError:
        raise InputError(f"arm 'noisy:{parameter}': '{value}' is not a number") from None
    if kind == "missing":
        if not 0 < amount <= 1:
            raise InputError(f"arm 'noisy:missing:{value}': the fraction of cases without supports must be in (0, 1]")
        return Arm(f"noisy:missing:{amount:g}", "noisy", DERIVED, {"missing_fraction": amount, "seed": 0})
    if amount <= 0:
        raise InputError(f"arm 'noisy:{kind}:{value}': the distance must be above 0 mm")
    return Arm(f"noisy:{kind}:{amount:g}", "noisy", DERIVED, {"transform": {"op": kind, "mm": amount}})


def _context(method: str):
    def build(parameter, context):
        from backsplit.labels.context import ContextSpec

        spec = ContextSpec.parse(f"{method}:{parameter}" if parameter else method)  # checks the parameter
        text = method if not parameter else f"{method}:{parameter}"
        return Arm(text, method, DERIVED, {"supports": [], "context": text, "context_json": spec.to_json()})
    return build


def _finetune(parameter, context):
    _no_parameter("finetune", parameter)
    if not context.supports:
        raise InputError("arm 'finetune' needs support structures in the dataset")
    return Arm("finetune", "finetune", SOURCE, initial_lr=FINE_TUNE_LR, pretrained_arm=BINARY)


def _sampling(parameter, context):
    if parameter not in SAMPLINGS:
        raise InputError(f"arm 'sampling:{parameter or ''}' is unknown; choose sampling:stock or sampling:target")
    return Arm(f"sampling:{parameter}", "sampling", SOURCE, sampling=parameter)


def _learned(parameter, context):
    from backsplit.training.colab.spec import parse_context

    text = f"learned:{parameter}" if parameter else "learned"
    spec = parse_context(text)                       # InputError naming what is allowed on a bad parameter
    return Arm(text, "learned", TWIN, train_context=spec.to_option())


register_arm(ArmType("binary", "the binary twin (reference)", _binary))
register_arm(ArmType("backsplit", "the dataset's support structures", _backsplit))
register_arm(ArmType("drop", "drop:<support>: leave one support structure out", _drop))
register_arm(ArmType("noisy", "noisy:erode:<mm> | noisy:dilate:<mm> | noisy:missing:<fraction>", _noisy))
register_arm(ArmType("rings", "rings[:W1,W2] generated shells around the lesions instead of supports",
                     _context("rings")))
register_arm(ArmType("kmeans", "kmeans[:T] generated intensity clusters instead of supports", _context("kmeans")))
register_arm(ArmType("finetune", "binary model fine-tuned on the BackSplit dataset at lr 1e-3", _finetune))
register_arm(ArmType("sampling", "sampling:stock | sampling:target", _sampling))
register_arm(ArmType("learned", "learned[:t] CoLab task generator: t learned context classes on the binary twin",
                     _learned))


from backsplit.study import arms_dynamics  # noqa: E402,F401 - registers the training-variant arms
