"""The BackSplit label schema: which segments become which label values.

Values: 0 background, 1..T targets (lesions), T+1..T+S support structures, in the user's order.
A voxel claimed by several segments takes the earliest class in that order, so a lesion always wins over
its host organ. The binary twin keeps the targets and folds every support class into background.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.labels.terminology import terminology_for_name


def _visible(name: str) -> str:
    """NFKC-normalised text without invisible characters (Unicode category Cf: zero-width space, joiners, soft
    hyphen, byte-order mark; and control characters) and with every run of whitespace folded to one space."""
    text = unicodedata.normalize("NFKC", str(name))
    text = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or unicodedata.category(ch) not in ("Cf", "Cc"))
    return " ".join(text.split())


def name_key(name: str) -> str:
    """The key two names are compared by, the way a person reads them: Unicode NFKC (full-width and compatibility
    forms become plain letters), invisible characters removed, whitespace folded, case ignored (``casefold``).
    Used everywhere names are matched: export, name maps, manifests, the Slicer panel."""
    return unicodedata.normalize("NFKC", _visible(name).casefold())


def display_name(name: str) -> str:
    """A name as it is stored and shown: NFKC, invisible characters removed, whitespace folded (case kept)."""
    return _visible(name)


TARGET = "target"
SUPPORT = "support"

# Lesions in warm, saturated colours; support structures in muted ones (RGB, 0..1).
TARGET_COLORS = [(0.95, 0.2, 0.15), (1.0, 0.65, 0.0), (0.95, 0.1, 0.6), (1.0, 0.9, 0.1)]
SUPPORT_COLORS = [(0.55, 0.65, 0.8), (0.6, 0.75, 0.6), (0.75, 0.7, 0.55), (0.7, 0.6, 0.75),
                  (0.6, 0.75, 0.75), (0.8, 0.65, 0.65), (0.65, 0.65, 0.65)]


@dataclass(frozen=True)
class ClassSpec:
    """One output class: its name in dataset.json, role, colour and the segment names that feed it."""
    name: str
    role: str
    color: tuple[float, float, float]
    sources: tuple[str, ...] = ()
    terminology: str = field(default="", compare=False)  # Slicer terminology entry ('' when unknown)

    def __post_init__(self) -> None:
        if not self.terminology:  # a well-known name gets its standard entry (e.g. SNOMED CT 'Kidney')
            object.__setattr__(self, "terminology", terminology_for_name(self.name) or "")

    def to_json(self, value: int) -> dict:
        item = {"name": self.name, "value": value, "role": self.role,
                "color": [round(c, 4) for c in self.color], "sources": list(self.sources or (self.name,))}
        if self.terminology:
            item["terminology"] = self.terminology
        return item


@dataclass(frozen=True)
class LabelSchema:
    targets: tuple[ClassSpec, ...]
    supports: tuple[ClassSpec, ...] = field(default=())

    @staticmethod
    def create(targets: Sequence[str], supports: Sequence[str] = (),
               colors: Mapping[str, Sequence[float]] | None = None) -> "LabelSchema":
        """Build a schema from class names in priority order, checking names are usable and unique."""
        colors = {name_key(k): v for k, v in (colors or {}).items()}
        if not targets:
            raise InputError("no target (lesion) segment was chosen; choose at least one target segment")
        seen: dict[str, str] = {}
        for name in list(targets) + list(supports):
            if not name or not name_key(name):
                raise InputError("a segment name is empty; give every target and support segment a name")
            if name_key(name) == "background":
                raise InputError("'background' is reserved for label 0; rename that segment",
                                 segment=name)
            key = name_key(name)
            if key in seen:
                raise InputError(f"the name is used twice (also as '{seen[key]}'; names are compared ignoring "
                                 "case, spacing and invisible characters); give each target and support class its "
                                 "own name", segment=name)
            seen[key] = name

        def spec(name: str, role: str, index: int) -> ClassSpec:
            palette = TARGET_COLORS if role == TARGET else SUPPORT_COLORS
            color = colors.get(name_key(name)) or palette[index % len(palette)]
            return ClassSpec(display_name(name), role, tuple(float(c) for c in color[:3]), (display_name(name),))

        return LabelSchema(tuple(spec(n, TARGET, i) for i, n in enumerate(targets)),
                           tuple(spec(n, SUPPORT, i) for i, n in enumerate(supports)))

    @property
    def classes(self) -> tuple[ClassSpec, ...]:
        return self.targets + self.supports

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def value_of(self, name: str) -> int:
        for value, spec in enumerate(self.classes, start=1):
            if name_key(spec.name) == name_key(name):
                return value
        raise KeyError(name)

    @property
    def target_values(self) -> list[int]:
        return list(range(1, len(self.targets) + 1))

    @property
    def support_values(self) -> list[int]:
        return list(range(len(self.targets) + 1, len(self.classes) + 1))

    def labels_json(self) -> dict[str, int]:
        """The ``labels`` entry of nnU-Net's dataset.json: consecutive values from 0."""
        labels = {"background": 0}
        for value, spec in enumerate(self.classes, start=1):
            labels[spec.name] = value
        return labels

    def binary(self) -> "LabelSchema":
        """The schema of the binary twin: same targets, no support classes."""
        return LabelSchema(self.targets, ())

    def merge(self, masks: Mapping[str, np.ndarray], shape: Sequence[int]) -> np.ndarray:
        """Merge boolean masks (keyed by class name) into one label array; earlier classes win overlaps.

        Classes without a mask (absent in this case) simply stay background.
        """
        dtype = np.uint8 if len(self.classes) < 255 else np.uint16
        labels = np.zeros(tuple(shape), dtype=dtype)
        # Paint from the last class to the first so that the earliest class is painted last and wins.
        for value in range(len(self.classes), 0, -1):
            mask = masks.get(self.classes[value - 1].name)
            if mask is None:
                continue
            if mask.shape != labels.shape:
                raise ValueError(f"mask for '{self.classes[value - 1].name}' has shape {mask.shape}, "
                                 f"expected {labels.shape}")
            labels[mask.astype(bool, copy=False)] = value
        return labels

    def fold_to_binary(self, labels: np.ndarray) -> np.ndarray:
        """Support classes become background; targets keep their values (works in place on a copy)."""
        folded = labels.copy()
        folded[folded > len(self.targets)] = 0
        return folded

    def to_json(self) -> dict:
        return {"targets": [c.to_json(v) for v, c in zip(self.target_values, self.targets)],
                "supports": [c.to_json(v) for v, c in zip(self.support_values, self.supports)]}

    @staticmethod
    def from_json(raw: Mapping) -> "LabelSchema":
        def specs(items, role):
            return tuple(ClassSpec(str(i["name"]), role, tuple(float(c) for c in i.get("color", (1, 1, 1))),
                                   tuple(i.get("sources", [i["name"]])), str(i.get("terminology") or ""))
                         for i in items)
        return LabelSchema(specs(raw.get("targets", []), TARGET), specs(raw.get("supports", []), SUPPORT))
