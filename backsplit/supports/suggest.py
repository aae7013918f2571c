"""Which support structures to use: the three heuristics of the BackSplit paper (seed 001, Appendix B) measured on
the cases, plus coverage, and a ranked list with the reasons.

1. *host organ*: the fraction of the target's voxels inside the structure (a case counts when >= ``host_fraction``);
2. *neighbour*: the distance (mm) from the target to the structure, between the nearest voxel centres (0 when they
   overlap); a case counts when <= ``neighbour_mm``;
3. *false-positive prone*: false-positive lesions of a binary model (26-connected components of its prediction that
   do not touch the reference target) that overlap the structure;
4. *coverage*: cases where the structure is missing or empty give it no supervision: shown, and the score is scaled
   by the share of cases that have it.

Everything is in mm (per-axis spacing; the direction matrix is a rotation and does not change distances). Cases are
consumed one at a time from any iterable (a generator reads them lazily), so memory does not grow with their number.
Arrays are (z, y, x) boolean masks on one grid per case. Connected components: scipy.ndimage (well-kept, C speed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.labels.matching import near_miss
from backsplit.labels.schema import name_key as _schema_name_key
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, ignore_progress

HOST, NEIGHBOUR, FALSE_POSITIVE, NONE = "host organ", "neighbour", "false-positive prone", "not suggested"
ROLE_ORDER = {HOST: 0, NEIGHBOUR: 1, FALSE_POSITIVE: 2, NONE: 3}  # Appendix B's order of the three rules


@dataclass
class SuggestOptions:
    target: str
    candidates: Optional[Sequence[str]] = None  # default: every other segment found in the cases
    neighbour_mm: float = 10.0                  # "within d mm of the target"
    host_fraction: float = 0.5                  # share of the target's voxels inside for a case to count as host
    min_case_share: float = 0.5                 # share of the target cases a role needs


@dataclass
class SuggestCase:
    """What one case gives the suggestions: masks (z, y, x) on one grid, its spacing, optional binary prediction."""
    case_id: str
    spacing_zyx: tuple[float, float, float]
    masks: dict[str, np.ndarray]
    prediction: Optional[np.ndarray] = None


def name_key(name: str) -> str:
    """Segment names compared as the export compares them (NFKC, invisible characters dropped, whitespace folded,
    case ignored): ``backsplit.labels.schema.name_key``."""
    return _schema_name_key(name)


# ---- pure measures over masks ---------------------------------------------------------------------------------------
def bounding_box(mask: np.ndarray) -> Optional[tuple[slice, ...]]:
    """The smallest box (slices per axis) holding the mask's voxels, or None for an empty mask."""
    box = [slice(0, n) for n in mask.shape]
    for axis in range(mask.ndim):  # each axis on the part already cropped: about one pass over the volume
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask[tuple(box)], axis=other))
        if hits.size == 0:
            return None
        box[axis] = slice(box[axis].start + int(hits[0]), box[axis].start + int(hits[-1]) + 1)
    return tuple(box)


def host_fraction(target: np.ndarray, structure: np.ndarray, box: Optional[tuple[slice, ...]] = None) -> float:
    """Fraction (0..1) of the target's voxels that lie inside the structure (0 for an empty target)."""
    box = box if box is not None else bounding_box(target)
    if box is None:
        return 0.0
    t = target[box]
    n = int(np.count_nonzero(t))
    return float(np.count_nonzero(t & structure[box])) / n if n else 0.0


def distance_mm(target: np.ndarray, structure: np.ndarray, spacing_zyx: Sequence[float], max_mm: float,
                box: Optional[tuple[slice, ...]] = None) -> Optional[float]:
    """Distance (mm) between the nearest target and structure voxel centres (0 when they overlap), or None when
    the structure is farther than ``max_mm`` (or either mask is empty). Computed in the target's box grown by
    ``max_mm``, with an exact Euclidean distance transform (scipy.ndimage.distance_transform_edt)."""
    from scipy import ndimage

    box = box if box is not None else bounding_box(target)
    if box is None:
        return None
    grown = tuple(slice(max(0, s.start - int(math.ceil(max_mm / sp))), min(n, s.stop + int(math.ceil(max_mm / sp))))
                  for s, sp, n in zip(box, spacing_zyx, target.shape))
    near = structure[grown]
    if not near.any():
        return None
    if (near & target[grown]).any():
        return 0.0
    distances = ndimage.distance_transform_edt(~target[grown], sampling=spacing_zyx)
    value = float(distances[near].min())
    return value if value <= max_mm + 1e-9 else None


def false_positive_lesions(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Label image of the prediction's 26-connected components and the ids of those that do not touch the
    reference (false-positive lesions), computed in the prediction's box; the labels are on the full grid."""
    from scipy import ndimage

    labels = np.zeros(prediction.shape, np.int32)
    box = bounding_box(prediction)
    if box is None:
        return labels, []
    labels[box], count = ndimage.label(prediction[box], structure=np.ones((3, 3, 3), bool))
    hit = set(np.unique(labels[box][reference[box]]).tolist()) - {0}
    return labels, [i for i in range(1, count + 1) if i not in hit]


def lesions_touching(labels: np.ndarray, lesion_ids: Sequence[int], structure: np.ndarray) -> int:
    """How many of the given components have at least one voxel inside the structure."""
    if not lesion_ids:
        return 0
    inside = set(np.unique(labels[structure & (labels > 0)]).tolist())
    return sum(1 for i in lesion_ids if i in inside)


# ---- per case, then over the cases ----------------------------------------------------------------------------------
@dataclass
class CandidateStats:
    name: str
    cases: int = 0
    present: int = 0                       # cases that have the segment with voxels
    empty: int = 0                         # cases that have the segment, without voxels
    target_cases: int = 0                  # cases with target voxels
    host_cases: int = 0                    # target cases with >= host_fraction of the target inside
    host_fraction_sum: float = 0.0
    near_cases: int = 0                    # target cases (not host) with the structure within neighbour_mm
    distances_mm: list[float] = field(default_factory=list)
    fp_touching: int = 0
    fp_cases: int = 0
    volume_ml_sum: float = 0.0
    role: str = NONE
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.cases - self.present - self.empty

    @property
    def mean_host_fraction(self) -> float:
        return self.host_fraction_sum / self.target_cases if self.target_cases else 0.0

    @property
    def median_distance_mm(self) -> Optional[float]:
        return float(np.median(self.distances_mm)) if self.distances_mm else None

    @property
    def mean_volume_ml(self) -> float:
        return self.volume_ml_sum / self.present if self.present else 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("distances_mm")
        data.update(missing=self.missing, mean_host_fraction=round(self.mean_host_fraction, 4),
                    median_distance_mm=self.median_distance_mm, mean_volume_ml=round(self.mean_volume_ml, 3))
        return data


@dataclass
class SuggestionReport:
    target: str
    cases: int
    target_cases: int
    target_volume_ml: float                 # mean over the target cases
    predictions_given: bool
    fp_lesions: int
    ranked: list[CandidateStats]
    options: SuggestOptions

    def accepted(self, top: Optional[int] = None) -> list[str]:
        """The support list from the top suggestions (``top`` of them; default all with a role), in an order that
        respects the overlap policy (earliest class wins): smaller structures first, so a host organ comes after
        the structures it contains."""
        chosen = [c for c in self.ranked if c.role != NONE][: top if top is not None else None]
        return [c.name for c in sorted(chosen, key=lambda c: (c.mean_volume_ml, c.name))]

    def budget_warning(self, planned_steps: int, top: Optional[int] = None) -> Optional[str]:
        """The warning when the accepted support list is longer than advised for a training of ``planned_steps``
        optimiser steps (epochs x iterations per epoch), else None: ``backsplit.training.budget.supports_warning``,
        which names the source of its advice."""
        from backsplit.training.budget import supports_warning

        return supports_warning(len(self.accepted(top)), int(planned_steps))

    def to_json(self, top: Optional[int] = None) -> dict:
        return {"target": self.target, "cases": self.cases, "target_cases": self.target_cases,
                "target_volume_ml": round(self.target_volume_ml, 3), "predictions_given": self.predictions_given,
                "false_positive_lesions": self.fp_lesions, "options": asdict(self.options),
                "candidates": [c.to_json() for c in self.ranked], "accepted": self.accepted(top)}


def _measure(case: SuggestCase, target_key: str, wanted: Optional[set[str]], stats: dict[str, CandidateStats],
             options: SuggestOptions, voxel_ml: float) -> tuple[bool, float, int]:
    by_key = {name_key(n): n for n in case.masks}
    target = case.masks.get(by_key.get(target_key, ""))
    box = bounding_box(target) if target is not None else None
    has_target = box is not None
    fp_labels, fp_ids = (None, [])
    if case.prediction is not None:
        reference = target if target is not None else np.zeros(case.prediction.shape, bool)
        fp_labels, fp_ids = false_positive_lesions(case.prediction, reference)
    for key, name in by_key.items():
        if key == target_key or (wanted is not None and key not in wanted):
            continue
        stats.setdefault(key, CandidateStats(name))
    shape = next((m.shape for m in case.masks.values()), None)
    for key, entry in stats.items():
        entry.cases += 1
        mask = case.masks.get(by_key.get(key, ""))
        if mask is None:
            continue
        if mask.shape != shape:
            raise InputError(f"the segment has size {mask.shape[::-1]} but the case's other segments {shape[::-1]}; "
                             "put every segment of a case on one grid", case=case.case_id, segment=entry.name)
        voxels = int(np.count_nonzero(mask))
        if voxels == 0:
            entry.empty += 1
            continue
        entry.present += 1
        entry.volume_ml_sum += voxels * voxel_ml
        if fp_ids:
            touching = lesions_touching(fp_labels, fp_ids, mask)
            entry.fp_touching += touching
            entry.fp_cases += touching > 0
        if not has_target:
            continue
        fraction = host_fraction(target, mask, box)
        entry.host_fraction_sum += fraction
        if fraction >= options.host_fraction:
            entry.host_cases += 1
            continue
        distance = distance_mm(target, mask, case.spacing_zyx, options.neighbour_mm, box)
        if distance is not None:
            entry.near_cases += 1
            entry.distances_mm.append(distance)
    target_ml = int(np.count_nonzero(target[box])) * voxel_ml if has_target else 0.0
    return has_target, target_ml, len(fp_ids)


def suggest(cases: Iterable[SuggestCase], options: SuggestOptions,
            progress: ProgressCallback = ignore_progress, total: Optional[int] = None) -> SuggestionReport:
    """Measure every candidate on every case (one case in memory at a time) and rank them; see the module doc.
    Candidates first seen in a later case count as missing in the earlier ones."""
    target_key = name_key(options.target)
    wanted = {name_key(n) for n in options.candidates} if options.candidates else None
    if wanted is not None and target_key in wanted:
        raise InputError(f"the target '{options.target}' is also listed as a candidate; a support structure must be "
                         "another segment")
    stats: dict[str, CandidateStats] = {}
    n_cases = target_cases = fp_total = 0
    target_ml = 0.0
    predictions = False
    for case in cases:
        voxel_ml = float(np.prod(case.spacing_zyx)) / 1000.0
        seen_before = n_cases
        has_target, ml, fps = _measure(case, target_key, wanted, stats, options, voxel_ml)
        for entry in stats.values():  # a candidate first seen now was missing in the earlier cases
            entry.cases = max(entry.cases, seen_before + 1)
        n_cases += 1
        target_cases += has_target
        for entry in stats.values():
            entry.target_cases = target_cases
        target_ml += ml
        fp_total += fps
        predictions = predictions or case.prediction is not None
        progress(ProgressEvent("suggest", f"case '{case.case_id}'", n_cases, total, {"case": case.case_id}))
    if n_cases == 0:
        raise InputError("there are no cases to measure")
    if target_cases == 0:
        found = sorted(entry.name for entry in stats.values() if entry.present)
        hint = near_miss(options.target, found) if found else None
        raise InputError(f"no case has voxels of the target '{options.target}' (segments found: "
                         f"{', '.join(repr(n) for n in found) or 'none'})" + (f"; {hint}" if hint else "")
                         + "; check the target's name (--target)")
    if wanted is not None:
        for key in wanted - set(stats):
            stats[key] = CandidateStats(next(n for n in options.candidates if name_key(n) == key), cases=n_cases,
                                        target_cases=target_cases)
    ranked = rank(list(stats.values()), options, fp_total, predictions)
    return SuggestionReport(options.target, n_cases, target_cases, target_ml / target_cases, predictions, fp_total,
                            ranked, options)


def rank(entries: list[CandidateStats], options: SuggestOptions, fp_total: int,
         predictions: bool) -> list[CandidateStats]:
    """Give each candidate its role (first rule that holds, in Appendix B's order), score and reasons; sort."""
    for c in entries:
        need = options.min_case_share * c.target_cases
        coverage = c.present / c.cases if c.cases else 0.0
        reasons = []
        if c.host_cases:
            reasons.append(f"host organ: holds {c.mean_host_fraction:.0%} of the target voxels on average "
                           f"(>= {options.host_fraction:.0%} in {c.host_cases} of {c.target_cases} target cases)")
        if c.near_cases:
            reasons.append(f"neighbour: within {options.neighbour_mm:g} mm of the target in {c.near_cases} of "
                           f"{c.target_cases} target cases (median {c.median_distance_mm:.1f} mm)")
        if predictions:
            reasons.append(f"false-positive prone: touches {c.fp_touching} of {fp_total} false-positive lesions "
                           f"({c.fp_cases} case(s))")
        if c.missing or c.empty:
            reasons.append(f"coverage: missing in {c.missing} and empty in {c.empty} of {c.cases} cases (no "
                           "supervision there)")
        if c.host_cases and c.host_cases >= need:
            c.role, strength = HOST, c.host_cases / c.target_cases
        elif c.near_cases and c.near_cases >= need:
            c.role, strength = NEIGHBOUR, c.near_cases / c.target_cases
        elif c.fp_touching:
            c.role, strength = FALSE_POSITIVE, c.fp_touching / max(fp_total, 1)
        else:
            c.role, strength = NONE, 0.0
        c.score = round(strength * coverage, 4)
        c.reasons = reasons
    return sorted(entries, key=lambda c: (ROLE_ORDER[c.role], -c.score, c.name.casefold()))


def format_table(report: SuggestionReport, top: Optional[int] = None) -> str:
    """The ranked table a person reads: rank, candidate, role, score, key numbers, then the reasons."""
    lines = [f"target '{report.target}': {report.target_cases} of {report.cases} cases have it (mean "
             f"{report.target_volume_ml:.2f} ml)" + (f"; {report.fp_lesions} false-positive lesion(s) of the binary "
                                                     "model" if report.predictions_given else ""),
             f"{'#':>2} {'candidate':24s} {'role':22s} {'score':>5s} {'host':>6s} {'near':>6s} {'dist mm':>7s} "
             f"{'FP':>4s} {'cover':>7s}"]
    for i, c in enumerate(report.ranked, start=1):
        dist = "-" if c.median_distance_mm is None else f"{c.median_distance_mm:.1f}"
        lines.append(f"{i:>2} {c.name[:24]:24s} {c.role:22s} {c.score:5.2f} {c.host_cases:>3d}/{c.target_cases:<2d} "
                     f"{c.near_cases:>3d}/{c.target_cases:<2d} {dist:>7s} {c.fp_touching:>4d} "
                     f"{c.present:>3d}/{c.cases:<3d}")
        lines += [f"{'':27s}- {r}" for r in c.reasons]
    lines.append(f"support list (smaller structures first): {', '.join(report.accepted(top)) or 'none suggested'}")
    return "\n".join(lines)
