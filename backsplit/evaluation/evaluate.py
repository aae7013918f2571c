"""Evaluate predicted labelmaps against reference labelmaps, per case and target class."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from backsplit.errors import InputError
from backsplit.evaluation.metrics import INTEGER_FIELDS, METRIC_FIELDS, class_metrics, finite_mean, parse_lesion_match
from backsplit.io.readers import read_image
from backsplit.labels.schema import LabelSchema


@dataclass
class EvaluationRow:
    case_id: str
    target: str
    value: int
    metrics: dict

    def flat(self) -> dict:
        return {"case_id": self.case_id, "target": self.target, "value": self.value, **self.metrics}


def evaluate_case(case_id: str, prediction_path: Path, reference_path: Path, schema: LabelSchema,
                  nsd_tolerance_mm: float = 2.0, reference_schema: Optional[LabelSchema] = None,
                  lesion_match: str = "overlap") -> list[EvaluationRow]:
    """Metrics for every target class. The reference may use another label numbering (``reference_schema``);
    ``lesion_match``: the lesion-wise matching criterion (``metrics.parse_lesion_match``)."""
    prediction, pred_geometry = read_image(Path(prediction_path), case_id, "prediction")
    reference, ref_geometry = read_image(Path(reference_path), case_id, "reference")
    for array, what, path in ((prediction, "prediction", prediction_path), (reference, "reference", reference_path)):
        check_labelmap(array, what, case_id, Path(path))
    problems = pred_geometry.differences(ref_geometry)
    if problems:
        raise InputError(f"the reference is on another grid than the prediction: {'; '.join(problems)}; resample the "
                         "reference to the image that was predicted", case=case_id, path=str(reference_path))
    reference_schema = reference_schema or schema
    rows = []
    for spec in schema.targets:
        value = schema.value_of(spec.name)
        ref_value = reference_schema.value_of(spec.name)
        metrics = class_metrics(reference == ref_value, prediction == value, pred_geometry.spacing, nsd_tolerance_mm,
                                lesion_match)
        rows.append(EvaluationRow(case_id, spec.name, value, metrics.to_json()))
    return rows


EVALUATION_COLUMNS = ("case_id", "target", "value", "dice", "nsd")  # what compare and the study reports need
MAX_LABEL = 255  # nnU-Net label values are small non-negative integers; an image (CT in HU, MR) is not


def check_labelmap(array, what: str, case_id: str, path: Path) -> None:
    """Refuse an image given where a labelmap is expected (e.g. ``<case>.nii.gz`` CT next to ``<case>.seg.nrrd``):
    negative, non-integer or > 255 values. Raises InputError."""
    import numpy as np

    if array.size == 0:
        return
    low, high = float(np.min(array)), float(np.max(array))
    fractional = np.issubdtype(array.dtype, np.floating) and bool(np.any(array != np.round(array)))
    if low < 0 or high > MAX_LABEL or fractional:
        found = f"values {low:g} to {high:g}" + (", not whole numbers" if fractional else "")
        raise InputError(f"the {what} is not a labelmap ({found}; label values are whole numbers 0-{MAX_LABEL}): it "
                         f"looks like an image; give the folder of {what} labelmaps"
                         + (" (e.g. labelsTr of a dataset written by backsplit export)" if what == "reference" else
                            " written by backsplit predict"),
                         case=case_id, path=str(path))


# What a prediction run writes beside its labelmaps (backsplit predict; nnUNetv2_predict); a reference folder
# (labelsTr, or a folder of drawn labelmaps) holds none of them.
PREDICTION_MARKERS = ("labels.json", "prediction_run.json", "summary.json",
                      "predict_from_raw_data_args.json", "plans.json", "dataset.json")


def prediction_markers(folder: Path) -> list[str]:
    """The files of ``PREDICTION_MARKERS`` that ``folder`` holds."""
    return [name for name in PREDICTION_MARKERS if (Path(folder) / name).is_file()]


def check_not_swapped(prediction_dir: Path, reference_dir: Path, command: str = "evaluate") -> None:
    """Refuse predictions and references given the other way round: swapped, precision and recall trade places, and
    so do missed and false-positive lesions, without an error. ``nnUNetv2_evaluate_folder`` takes the reference
    folder first, BackSplit the predictions first. Only a clear sign counts: the reference folder holds files a
    prediction run writes (``PREDICTION_MARKERS``) and the prediction folder holds none. Raises InputError with the
    command line in the right order."""
    in_refs, in_preds = prediction_markers(reference_dir), prediction_markers(prediction_dir)
    if in_refs and not in_preds:
        raise InputError(f"the folders look swapped: the references folder holds {', '.join(in_refs)}, which a "
                         "prediction run writes, and the predictions folder holds none. backsplit "
                         f"{command} takes the predictions first, then the references (nnUNetv2_evaluate_folder "
                         f"takes the references first); run: backsplit {command} --predictions '{reference_dir}' "
                         f"--references '{prediction_dir}' ...", path=str(reference_dir))


def find_pairs(prediction_dir: Path, reference_dir: Path, file_ending: str = ".nii.gz") -> list[tuple[str, Path, Path]]:
    """(case id, prediction, reference) for every ``<case><file_ending>`` of ``prediction_dir`` (probability maps
    left out). Raises InputError for a missing folder, folders given the other way round (``check_not_swapped``), a
    prediction without its reference, or no prediction at all."""
    prediction_dir, reference_dir = Path(prediction_dir), Path(reference_dir)
    for folder, what in ((prediction_dir, "prediction"), (reference_dir, "reference")):
        if not folder.is_dir():
            raise InputError(f"the {what} folder does not exist", path=str(folder))
    check_not_swapped(prediction_dir, reference_dir)
    pairs = []
    for pred in sorted(prediction_dir.glob(f"*{file_ending}")):
        case_id = pred.name[: -len(file_ending)]
        if case_id.endswith("_lesion_probability"):
            continue
        ref = reference_dir / pred.name
        if not ref.is_file():
            raise InputError("no reference for this prediction (same file name expected in the reference folder)",
                             case=case_id, path=str(ref))
        pairs.append((case_id, pred, ref))
    if not pairs:
        seg_nrrd = any(prediction_dir.glob("*.seg.nrrd"))
        raise InputError(f"no predictions (*{file_ending}) found" + (
            "; the folder holds .seg.nrrd predictions: evaluation reads labelmaps, predict again with the default "
            "--format nii.gz" if seg_nrrd else ""), path=str(prediction_dir))
    return pairs


def evaluate_folders(prediction_dir: Path, reference_dir: Path, schema: LabelSchema, nsd_tolerance_mm: float = 2.0,
                     reference_schema: Optional[LabelSchema] = None,
                     lesion_match: str = "overlap") -> list[EvaluationRow]:
    """Rows of ``evaluate_case`` for every pair of ``find_pairs``; ``lesion_match`` checked before the first case."""
    parse_lesion_match(lesion_match)
    rows = []
    for case_id, pred, ref in find_pairs(prediction_dir, reference_dir):
        rows += evaluate_case(case_id, pred, ref, schema, nsd_tolerance_mm, reference_schema, lesion_match)
    return rows


SUMMARY_METRICS = ("dice", "hd95", "nsd", "precision", "recall")
CONVENTION_NOTE = ("empty masks: Dice 1 / HD95 0 mm / NSD 1 when both are empty; Dice 0 / NSD 0 / HD95 = the image "
                   "diagonal (worst value) when one is (BraTS 2023 lesion-wise convention; Metrics Reloaded: no case "
                   "silently dropped); see docs/METRICS.md")


def left_out_reason(metric: str, metrics: dict) -> str:
    """Why ``metric`` has no value for a case (it is NaN or inf), from the case's other ``metrics`` (empty masks,
    volumes in ml): a short phrase for tables, e.g. 'nothing predicted' or 'reference empty'."""
    if metric == "precision" and metrics.get("prediction_empty", 0):
        return "nothing predicted"
    if metric == "recall" and metrics.get("reference_empty", 0):
        return "reference empty"
    if metric == "precision" and metrics.get("predicted_ml", 1) == 0:
        return "nothing predicted"
    if metric == "recall" and metrics.get("reference_ml", 1) == 0:
        return "reference empty"
    return "one mask empty (evaluated before worst-value scoring)" if metric in ("hd95", "nsd") else "undefined"


def aggregate(rows: Sequence[EvaluationRow]) -> dict:
    """Per target class: for each metric the mean and sd over the cases where it is defined, how many cases that
    covers (``n``), how many were left out and why (``left_out``, ``reasons``), how many were scored with an
    empty-mask convention (``by_convention``); lesion totals; how many cases had an empty reference / prediction."""
    result = {}
    for target in dict.fromkeys(r.target for r in rows):
        selected = [r.metrics for r in rows if r.target == target]
        ref_empty = [bool(m.get("reference_empty", 0)) for m in selected]
        pred_empty = [bool(m.get("prediction_empty", 0)) for m in selected]
        entry = {"cases": len(selected), "case_ids": [r.case_id for r in rows if r.target == target],
                 "reference_empty": sum(ref_empty), "prediction_empty": sum(pred_empty),
                 "both_empty": sum(a and b for a, b in zip(ref_empty, pred_empty)),
                 "one_empty": sum(a != b for a, b in zip(ref_empty, pred_empty))}
        for name in SUMMARY_METRICS:
            values = [m[name] for m in selected]
            mean, sd, left_out = finite_mean(values)
            reasons: dict[str, int] = {}
            for m, v in zip(selected, values):
                if not math.isfinite(v):
                    reason = left_out_reason(name, m)
                    reasons[reason] = reasons.get(reason, 0) + 1
            by_convention = entry["one_empty"] + entry["both_empty"] if name in ("dice", "hd95", "nsd") else 0
            entry[name] = {"mean": mean, "sd": sd, "n": len(values) - left_out, "left_out": left_out,
                           "reasons": reasons, "by_convention": by_convention}
        for name in ("reference_lesions", "detected_lesions", "missed_lesions", "false_positive_lesions"):
            entry[name] = int(sum(m[name] for m in selected))
        result[target] = entry
    return result


def reasons_text(reasons: dict) -> str:
    """{'nothing predicted': 2} -> 'nothing predicted'; several reasons -> '2 nothing predicted, 1 reference empty'."""
    if len(reasons) == 1:
        return next(iter(reasons))
    return ", ".join(f"{k} {r}" for r, k in reasons.items())


def coverage(entry: dict, metric: str) -> str:
    """'4/4 cases' or '2/4 cases; 2 left out: nothing predicted'."""
    item = entry[metric]
    text = f"{item['n']}/{entry['cases']} cases"
    if item["left_out"]:
        text += f"; {item['left_out']} left out: {reasons_text(item['reasons'])}"
    return text


def summary_lines(rows: Sequence[EvaluationRow]) -> list[str]:
    """What ``backsplit evaluate`` prints: per target, every mean with the cases it covers and those left out (and
    why), the empty-mask cases, lesion counts and the convention followed."""
    lines = []
    for target, entry in aggregate(rows).items():
        for index, (metric, label, digits, unit) in enumerate((
                ("dice", "Dice", 3, ""), ("hd95", "HD95", 1, " mm"), ("nsd", "NSD", 3, ""),
                ("precision", "precision", 3, ""), ("recall", "recall", 3, ""))):
            item = entry[metric]
            extra = ""
            if item["by_convention"]:
                extra = f", {item['by_convention']} scored by the empty-mask convention"
            lines.append(f"{target + ': ' if index == 0 else '  '}{label} {fmt(item['mean'], digits)}{unit} "
                         f"(mean over {coverage(entry, metric)}{extra})")
        lines.append(f"  cases: {entry['cases']} ({entry['reference_empty']} with an empty reference, "
                     f"{entry['prediction_empty']} with an empty prediction, {entry['both_empty']} both empty)")
        lines.append(f"  lesions detected {entry['detected_lesions']}/{entry['reference_lesions']}, missed "
                     f"{entry['missed_lesions']}, false positives {entry['false_positive_lesions']}")
    lines.append(f"Conventions: {CONVENTION_NOTE}.")
    return lines


def write_evaluation(rows: Sequence[EvaluationRow], csv_path: Path) -> tuple[Path, Path]:
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "target", "value"] + METRIC_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.flat())
    json_path = csv_path.with_suffix(".json")
    json_path.write_text(json.dumps({"cases": [r.flat() for r in rows], "summary": aggregate(rows)}, indent=2,
                                    default=lambda v: None), encoding="utf-8")
    return csv_path, json_path


def read_evaluation(csv_path: Path) -> list[EvaluationRow]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError("the evaluation file does not exist", path=str(csv_path))
    rows = []
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in EVALUATION_COLUMNS if c not in columns]
        if missing:  # an empty file, or another CSV: used to end in IndexError/KeyError
            raise InputError(f"not an evaluation written by backsplit evaluate: the column(s) {', '.join(missing)} "
                             f"are missing (columns found: {', '.join(columns) or 'none, the file is empty'}); give "
                             "the evaluation.csv that backsplit evaluate wrote", path=str(csv_path))
        for raw in reader:
            try:
                metrics = {k: (int(float(raw[k])) if k in INTEGER_FIELDS else float(raw[k]))
                           for k in METRIC_FIELDS if raw.get(k) not in (None, "")}
                value = int(raw["value"])
            except (TypeError, ValueError) as exc:
                raise InputError(f"line {reader.line_num} holds a value that is not a number ({exc}); give the "
                                 "evaluation.csv that backsplit evaluate wrote", path=str(csv_path)) from None
            for k in INTEGER_FIELDS:  # evaluations written before these columns existed
                metrics.setdefault(k, 0)
            if "reference_empty" not in raw:
                metrics["reference_empty"] = int(metrics.get("reference_ml", 1) == 0)
                metrics["prediction_empty"] = int(metrics.get("predicted_ml", 1) == 0)
            rows.append(EvaluationRow(raw["case_id"], raw["target"], value, metrics))
    if not rows:
        raise InputError("the evaluation holds no case (only its header); evaluate some cases first",
                         path=str(csv_path))
    return rows


def schema_from_model_or_dataset(path: Path) -> LabelSchema:
    """The label schema of a model folder (backsplit_model.json) or a dataset (dataset.json)."""
    path = Path(path)
    for name in ("backsplit_model.json", "dataset.json"):
        candidate = path / name if path.is_dir() else path
        if candidate.is_file() and (path.is_dir() or candidate.name == name):
            content = json.loads(candidate.read_text(encoding="utf-8"))
            section = content.get("schema") or content.get("backsplit", {}).get("schema")
            if section:
                return LabelSchema.from_json(section)
            labels = content.get("labels", {})
            return LabelSchema.create([k for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if int(v) > 0])
    raise InputError("no backsplit_model.json or dataset.json found to tell the label values", path=str(path))


def fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
