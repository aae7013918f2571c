"""The arm registry: what each arm of a study trains on and how.

An arm is a named training recipe compared against the binary model: which dataset (the BackSplit dataset, its
binary twin, or a dataset derived from the BackSplit dataset by a recipe), which sampling, which learning rate and
which other arm's model it starts from. Built-in arms:

* ``binary``: the binary twin (support classes folded into background); the reference of every comparison.
* ``backsplit``: the dataset's own support structures.
* ``drop:<support>``: one support structure left out (folded into background): which supports matter (paper Fig. 4).
* ``noisy:erode:<mm>`` / ``noisy:dilate:<mm>``: support structures eroded / dilated by a physical distance;
  ``noisy:missing:<fraction>``: that fraction of cases has no support labels at all (paper Table 4, Fig. 3 right).
* ``rings[:W1,W2]`` / ``kmeans[:T]``: generated context classes (CoLab) instead of the dataset's supports.
* ``finetune``: the binary model of the same fold and seed fine-tuned on the BackSplit dataset at lr 1e-3 (Fig. 3).
* ``sampling:stock`` / ``sampling:target``: the BackSplit dataset with nnU-Net's or target-aware patch sampling.
* ``paper``, ``lvr[:W]``, ``ramp[:N]...``, ``cap[:C]...``, ``head[:W]``, ``finetune:preserve[,loss=S]``: how the
  support structures enter training (issue 19; ``arms_dynamics.py``).

A new arm plugs in with one call, e.g. ``register_arm(ArmType("learned", "...", build, derive=my_derive))``; the
plan, the executors and the report need no change. ``derive`` (optional) writes the arm's dataset; the default is
``backsplit.study.derive.derive_dataset``, which reads the recipe keys ``supports``, ``transform``,
``missing_fraction`` and ``context`` and writes through ``backsplit.datasets.export``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from backsplit.errors import InputError
from backsplit.training.options import FINE_TUNE_LR, SAMPLINGS

SOURCE, TWIN, DERIVED = "source", "twin", "derived"
BINARY = "binary"


@dataclass(frozen=True)
class Arm:
    name: str                                   # canonical name as given on the command line, e.g. "drop:kidney"
    kind: str                                   # registry key, e.g. "drop"
    dataset: str = SOURCE                       # source | twin | derived
    recipe: dict = field(default_factory=dict, hash=False)   # JSON-able derivation recipe (derived only)
    sampling: Optional[str] = None              # None: the study's sampling
    initial_lr: Optional[float] = None          # None: nnU-Net's 1e-2 (or 1e-3 when fine-tuning)
    pretrained_arm: Optional[str] = None        # start from this arm's model of the same fold and seed
    train_context: Optional[str] = None         # training-time context (``--context learned[:t]``); None: none
    loss: Optional[str] = None                  # support schedule (training/schedule.py); None: the train default
    support_head: Optional[float] = None        # separate support head's loss weight; None: none
    head_init: Optional[str] = None             # preserve | reinit (fine-tuning arms); None: the train default

    @property
    def slug(self) -> str:
        """A file-name-safe form of the name ("noisy:erode:2" -> "noisy-erode-2")."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name.replace(":", "-").replace(",", "_")).strip("-")

    def training_json(self) -> dict:
        """What of the arm changes its training (part of the content hash)."""
        raw = {"dataset": self.dataset, "recipe": self.recipe, "sampling": self.sampling,
               "initial_lr": self.initial_lr, "pretrained_arm": self.pretrained_arm,
               "train_context": self.train_context}
        for key in ("loss", "support_head", "head_init"):   # only when set: earlier arms keep their content hash
            if getattr(self, key) is not None:
                raw[key] = getattr(self, key)
        return raw


@dataclass(frozen=True)
class ArmContext:
    """What an arm's builder may check its parameter against: the BackSplit dataset's class names."""
    targets: tuple[str, ...]
    supports: tuple[str, ...]


@dataclass(frozen=True)
class ArmType:
    kind: str
    help: str
    build: Callable[[Optional[str], ArmContext], Arm]           # (parameter after "kind:", context) -> Arm
    derive: Optional[Callable] = None                            # (DeriveRequest) -> dataset folder; None: default


_REGISTRY: dict[str, ArmType] = {}


def register_arm(arm_type: ArmType) -> ArmType:
    """Add (or replace) an arm type; returns it, so it can be used as a plain call at import time."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", arm_type.kind):
        raise ValueError(f"arm kind '{arm_type.kind}' must be lower-case letters, digits, '-' or '_'")
    _REGISTRY[arm_type.kind] = arm_type
    return arm_type


def arm_types() -> dict[str, ArmType]:
    return dict(_REGISTRY)


def arm_type(kind: str) -> ArmType:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise InputError(f"arm '{kind}' is unknown; choose among {', '.join(sorted(_REGISTRY))}") from None


def parse_arm(text: str, context: ArmContext) -> Arm:
    """``"drop:kidney"`` -> the Arm (raises InputError naming what is allowed)."""
    text = text.strip()
    kind, _, parameter = text.partition(":")
    return arm_type(kind.lower()).build(parameter or None, context)


def split_arms(text: str) -> list[str]:
    """The ``--arms`` list: comma-separated arms, where a ``key=value`` item belongs to the arm before it, so that
    ``binary,learned:2,m=10,tau=5,kmeans`` gives ``["binary", "learned:2,m=10,tau=5", "kmeans"]``. Raises InputError
    for a ``key=value`` with no arm before it."""
    arms: list[str] = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item.split("=", 1)[0]:
            if not arms:
                raise InputError(f"--arms '{text}' starts with the setting '{item}'; settings follow their arm, "
                                 "e.g. learned:2,m=10,tau=5")
            arms[-1] += "," + item
        else:
            arms.append(item)
    return arms


def parse_arms(texts: Sequence[str], context: ArmContext) -> list[Arm]:
    """Arms in the given order, ``binary`` first (added when missing: it is the reference); duplicates refused."""
    arms = [parse_arm(t, context) for t in texts if t.strip()]
    names = [a.name for a in arms]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"arm(s) {', '.join(duplicates)} given twice; list each arm once")
    if BINARY not in names:
        arms.insert(0, parse_arm(BINARY, context))
    else:
        arms.sort(key=lambda a: a.name != BINARY)
    for arm in arms:
        if arm.pretrained_arm and arm.pretrained_arm not in {a.name for a in arms}:
            arms.insert(0, parse_arm(arm.pretrained_arm, context))
    return arms


# ---- built-in arms --------------------------------------------------------------------------------------------

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
    return Arm("backsplit", "backsplit", SOURCE)


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


from backsplit.study import arms_dynamics  # noqa: E402,F401 - registers the training-variant arms (issue 19)
