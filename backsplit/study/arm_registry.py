"""The arm registry itself: the ``Arm`` a study trains, the ``ArmType`` that builds it from its text, and the parsing
of ``--arms``. The arms are registered by ``arms.py`` (built-in) and ``arms_dynamics.py`` (how the support structures
enter training).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from backsplit.errors import InputError
from backsplit.training.schedule import default_differs_from_paper

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
        if self.dataset != TWIN and self.loss is None and self.support_head is None:
            # the arm trains with ``backsplit train``'s default recipe: its settings enter the hash when they differ
            # from the paper's, so a study never reuses a model of the paper's recipe for a changed default
            for key, value in default_differs_from_paper().items():
                raw.setdefault(key, value)
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
