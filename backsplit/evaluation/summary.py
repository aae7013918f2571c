"""Case-level summary of a prediction: lesion volume, lesion count, largest lesion, maximum lesion probability, and
a lesion present / absent decision from a summarising rule (segmentation for classification: a case is positive when
the lesion voxels whose probability reaches a threshold add up to at least a minimum volume).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from backsplit.io.geometry import Geometry


@dataclass
class DecisionRule:
    threshold: float = 0.5        # lesion probability a voxel must reach
    min_volume_ml: float = 0.0    # total volume of such voxels needed to call the case positive

    def present(self, score_ml: float) -> bool:
        """The case decision from its score (volume of voxels at or above the threshold)."""
        return score_ml > 0 and score_ml >= self.min_volume_ml


@dataclass
class CaseSummary:
    case_id: str
    lesion_volume_ml: float
    lesion_count: int
    largest_lesion_ml: float
    max_lesion_probability: Optional[float]
    lesion_score_ml: float        # volume of voxels above the rule's threshold (the case-level score)
    lesion_present: bool
    threshold: float
    min_volume_ml: float

    def to_json(self) -> dict:
        return asdict(self)


SUMMARY_FIELDS = list(CaseSummary.__dataclass_fields__)


def lesion_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected lesions (26-connectivity): label array and count."""
    from scipy import ndimage

    if not mask.any():
        return np.zeros(mask.shape, np.int32), 0
    return ndimage.label(mask, structure=np.ones((3, 3, 3), bool))


def summarise(case_id: str, labels: np.ndarray, geometry: Geometry, target_values: Sequence[int],
              target_probability: Optional[np.ndarray] = None, rule: Optional[DecisionRule] = None) -> CaseSummary:
    rule = rule if rule is not None else DecisionRule()
    voxel_ml = geometry.voxel_volume_ml()
    lesion = np.isin(labels, list(target_values))
    components, count = lesion_components(lesion)
    sizes = np.bincount(components.ravel())[1:] if count else np.zeros(0, int)
    if target_probability is not None:
        score_mask = target_probability >= rule.threshold
        max_probability = float(target_probability.max()) if target_probability.size else 0.0
    else:  # without probabilities the segmentation itself is the thresholded map
        score_mask = lesion
        max_probability = None
    score_ml = float(score_mask.sum()) * voxel_ml
    present = rule.present(score_ml)
    return CaseSummary(case_id, round(float(lesion.sum()) * voxel_ml, 4), int(count),
                       round(float(sizes.max()) * voxel_ml if count else 0.0, 4),
                       None if max_probability is None else round(max_probability, 4), round(score_ml, 4),
                       present, rule.threshold, rule.min_volume_ml)


def calibrate_min_volume(scores_ml: Sequence[float], positives: Sequence[bool], sensitivity: float = 0.95) -> float:
    """The largest minimum volume (ml) that still calls at least ``sensitivity`` of the positive cases positive.

    ``scores_ml``: each validation case's lesion score (volume above the probability threshold); ``positives``: whether
    the case truly has a lesion. Fewer false positives at the chosen sensitivity.
    """
    positive_scores = sorted(s for s, p in zip(scores_ml, positives) if p)
    if not positive_scores:
        raise ValueError("calibration needs at least one case with a lesion")
    if not 0 < sensitivity <= 1:
        raise ValueError("sensitivity must be in (0, 1]")
    # keep at least ceil(sensitivity * n) positives at or above the cut
    import math

    keep = math.ceil(sensitivity * len(positive_scores))
    return float(positive_scores[len(positive_scores) - keep])


def decision_counts(scores_ml: Sequence[float], positives: Sequence[bool], min_volume_ml: float) -> dict:
    """Sensitivity and specificity of 'lesion present when score > 0 and score >= min volume' on labelled cases."""
    rule = DecisionRule(min_volume_ml=min_volume_ml)
    calls = [rule.present(s) for s in scores_ml]
    tp = sum(c and p for c, p in zip(calls, positives))
    fn = sum((not c) and p for c, p in zip(calls, positives))
    tn = sum((not c) and (not p) for c, p in zip(calls, positives))
    fp = sum(c and (not p) for c, p in zip(calls, positives))
    return {"true_positive": tp, "false_negative": fn, "true_negative": tn, "false_positive": fp,
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan")}


def read_rule(path: Path) -> DecisionRule:
    """A decision rule written by ``backsplit calibrate`` (JSON with threshold and min_volume_ml)."""
    from backsplit.errors import InputError

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return DecisionRule(float(raw["threshold"]), float(raw["min_volume_ml"]))
    except OSError as exc:
        raise InputError(f"the rule file cannot be read ({exc.strerror})", path=str(path)) from None
    except (ValueError, KeyError, TypeError):
        raise InputError("the rule file is not a decision rule (JSON with threshold and min_volume_ml); write it "
                         "with backsplit calibrate", path=str(path)) from None


def write_summaries(summaries: Sequence[CaseSummary], folder: Path) -> tuple[Path, Path]:
    folder = Path(folder)
    csv_path, json_path = folder / "summary.csv", folder / "summary.json"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for summary in summaries:
            writer.writerow(summary.to_json())
    json_path.write_text(json.dumps([s.to_json() for s in summaries], indent=2), encoding="utf-8")
    return csv_path, json_path
