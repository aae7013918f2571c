"""What learned context to train (``--context learned[:t][,key=value...]``) and the dataset.json it trains with.

Pure (no torch). The paper's hyper-parameters are in voxels of its resampled images: margin ``m = 30`` and
temperature ``tau = 20`` (Eq. 8), on CT resampled to 1.6-1.9 mm in-plane (KiTS 1.6 x 1.6 x 3.2 mm, LiTS
1.9 x 1.9 x 2.5 mm) and MR at 1.0 mm. BackSplit states them in millimetres so that one setting means the same
physical neighbourhood at any spacing; the defaults are the paper's values at the KiTS in-plane spacing:
``m = 30 voxels x 1.6 mm = 48 mm``, ``tau = 20 voxels x 1.6 mm = 32 mm`` (for 1 mm MR, as in the paper's brain tasks,
use ``m=30,tau=20``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Optional

from backsplit.errors import InputError

LEARNED = "learned"
LEARNED_TRAINER = "BackSplitLearnedContextTrainer"     # trainer class name = nnU-Net results folder prefix
META_METHODS = ("fd", "exact")
CONTEXT_COLORS = [(0.45, 0.55, 0.45), (0.55, 0.5, 0.65), (0.65, 0.6, 0.45), (0.45, 0.6, 0.65),
                  (0.6, 0.5, 0.5), (0.5, 0.5, 0.5), (0.7, 0.7, 0.6), (0.5, 0.65, 0.55)]
_KEYS = {"m": "margin_mm", "margin": "margin_mm", "tau": "temperature_mm", "temperature": "temperature_mm",
         "k": "update_every", "every": "update_every", "lr": "generator_lr", "w": "generator_width",
         "width": "generator_width", "meta": "meta_method", "radius": "fd_radius"}


@dataclass(frozen=True)
class LearnedContextSpec:
    """Learned context settings.

    classes: ``t``, the number of learned context classes (paper: 2, or 4 when false positives sit close to the ROI).
    margin_mm / temperature_mm: Eq. 8's ``m`` and ``tau`` in mm from the target boundary (see the module docstring).
    update_every: ``k``, the generator's meta step every k-th iteration (Algorithm 1 of the paper writes one every
        iteration; the authors' default is 5). BackSplit's default is 8, for cost: a meta step (virtual step, its
        L_ROI backward, two finite-difference forwards, the generator's backward) costs about 2x a plain nnU-Net
        iteration on its own. On the CPU (2d, batch 4, ``benchmarks/bench_learned_context.py``, process CPU time,
        two benchmarks of 3 alternated runs each on a shared machine) k=5 took 1.44x and 1.33x the binary trainer's
        time per iteration (runs 1.31-1.50x), k=8 1.27x and 1.25x (runs 1.20-1.30x), k=10 1.24x: k=8 is the
        smallest measured k within the paper's "about 30% extra" (target <= 1.35x). ``k=5``: the authors' schedule.
    generator_lr: Adam learning rate of the generator (paper: 3e-4).
    generator_width: the generator is the plans' network with every stage's feature count times this factor (1.0:
        the paper's identical backbone; 0.5, the default: a lighter generator, about a quarter of the convolution cost).
    meta_method: ``fd`` (finite-difference Hessian-vector product, the authors' choice; less memory) or ``exact``
        (second-order autograd through the virtual step).
    fd_radius: the finite-difference step, ``epsilon = fd_radius / ||grad_theta L_ROI||``. DARTS and the authors use
        0.01; on nnU-Net's 2d network of the tests' tiny dataset (float32) the fd meta-gradient's relative error
        against the exact one was 14%, 4.8%, 1.7% at radius 0.01, 0.001, 0.0001 (one run): BackSplit uses 0.001.
    """
    classes: int = 2
    margin_mm: float = 48.0
    temperature_mm: float = 32.0
    update_every: int = 8
    generator_lr: float = 3e-4
    generator_width: float = 0.5
    meta_method: str = "fd"
    fd_radius: float = 0.001

    def __post_init__(self) -> None:
        if not 1 <= int(self.classes) <= 8:
            raise InputError(f"the number of learned context classes must be 1 to 8, not {self.classes}")
        if self.margin_mm < 0 or self.temperature_mm <= 0:
            raise InputError(f"learned context margin must be >= 0 mm and temperature > 0 mm (got m={self.margin_mm}, "
                             f"tau={self.temperature_mm})")
        if int(self.update_every) < 1:
            raise InputError(f"the generator update interval k must be at least 1 iteration, not {self.update_every}")
        for key, value, ok, allowed in (("lr", self.generator_lr, 0 < self.generator_lr < 1, "between 0 and 1"),
                                        ("w", self.generator_width, 0.05 <= self.generator_width <= 2,
                                         "from 0.05 to 2 (the generator's width relative to the network)"),
                                        ("radius", self.fd_radius, 0 < self.fd_radius < 1, "between 0 and 1")):
            if not ok:
                raise InputError(f"learned context: {key}={value:g} is out of range; {key} must be {allowed}")
        if self.meta_method not in META_METHODS:
            raise InputError(f"meta-gradient method '{self.meta_method}' is unknown; choose fd or exact")

    def class_names(self) -> list[str]:
        return [f"learned context {i + 1} of {self.classes}" for i in range(self.classes)]

    def to_json(self) -> dict:
        return {"method": LEARNED, **asdict(self)}

    def to_option(self) -> str:
        """The ``--context`` text that parses back to this spec."""
        default = LearnedContextSpec()
        extra = [f"{key}={getattr(self, key)}" for key in ("margin_mm", "temperature_mm", "update_every",
                                                           "generator_lr", "generator_width", "meta_method",
                                                           "fd_radius") if getattr(self, key) != getattr(default, key)]
        return ",".join([f"{LEARNED}:{self.classes}"] + extra)


def parse_context(text: Optional[str]) -> Optional[LearnedContextSpec]:
    """``none`` / empty -> None; ``learned``, ``learned:3``, ``learned:2,m=30,tau=20,k=5,w=1,meta=exact,lr=3e-4``.

    Raises InputError naming the part that is wrong and the accepted form.
    """
    text = (text or "none").strip()
    if text.lower() in ("none", ""):
        return None
    head, _, rest = text.partition(",")
    method, _, count = head.partition(":")
    usage = "use learned[:t][,m=MM,tau=MM,k=N,w=F,meta=fd|exact,lr=F]"
    if method.strip().lower() != LEARNED:
        raise InputError(f"training context '{text}' is unknown; {usage} (rings and kmeans contexts are chosen at "
                         "export)")
    values: dict = {}
    try:
        if count.strip():
            values["classes"] = int(count)
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            field_name = _KEYS.get(key.strip().lower(), key.strip().lower())
            if not sep or field_name not in LearnedContextSpec.__dataclass_fields__ or field_name == "classes":
                raise InputError(f"'{item}' in context '{text}' is not a setting; {usage}")
            kind = LearnedContextSpec.__dataclass_fields__[field_name].type
            values[field_name] = value.strip() if kind == "str" else (int(value) if kind == "int" else float(value))
    except ValueError:
        raise InputError(f"context '{text}' has a value that is not a number; {usage}") from None
    return LearnedContextSpec(**values)


def trainer_name(context: Optional[str]) -> str:
    """The nnU-Net trainer class (and results folder prefix) that trains ``context``: without torch."""
    return LEARNED_TRAINER if parse_context(context) is not None else "BackSplitTrainer"


def spec_from_json(raw: dict) -> LearnedContextSpec:
    return LearnedContextSpec(**{k: v for k, v in raw.items() if k in LearnedContextSpec.__dataclass_fields__})


def extend_dataset_json(meta: dict, spec: LearnedContextSpec) -> dict:
    """dataset.json with the ``t`` learned context classes appended after the targets and supports.

    Labels stay consecutive (``1 + T + S .. T + S + t``); the BackSplit schema lists them as support classes (so the
    predictor folds them into background for the lesion output) and ``backsplit.learned_context`` holds the spec.
    The training images and label files are unchanged: no voxel carries a context label on disk.
    Raises InputError for a dataset with an ignore label or a class already named like a context class.
    """
    extended = json.loads(json.dumps(meta))
    labels = extended["labels"]
    if "ignore" in labels:
        raise InputError("learned context cannot be trained on a dataset with an 'ignore' label; export it without "
                         "one")
    taken = {name.casefold() for name in labels}
    names = spec.class_names()
    if any(name.casefold() in taken for name in names):
        raise InputError("the dataset already has learned context classes (exported from a learned-context model?); "
                         "train learned context on the original dataset")
    first = max(int(v) for v in labels.values()) + 1
    section = extended.setdefault("backsplit", {})
    schema = section.get("schema")
    if not schema:  # a dataset without BackSplit roles: every foreground class is a target
        schema = {"targets": [{"name": k, "value": int(v), "role": "target", "color": [0.95, 0.2, 0.15],
                               "sources": [k]} for k, v in sorted(labels.items(), key=lambda kv: int(kv[1]))
                              if int(v) > 0], "supports": []}
    schema = {"targets": list(schema.get("targets", [])), "supports": list(schema.get("supports", []))}
    for i, name in enumerate(names):
        labels[name] = first + i
        schema["supports"].append({"name": name, "value": first + i, "role": "support",
                                   "color": list(CONTEXT_COLORS[i % len(CONTEXT_COLORS)]),
                                   "sources": ["generated (learned context)"]})
    section["schema"] = schema
    section["learned_context"] = spec.to_json()
    return extended
