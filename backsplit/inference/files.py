"""Predict image files or folders with a model folder: labelmaps with names and colours, probability maps and a
case summary (CSV + JSON). Existing outputs are never replaced unless asked; each file is written aside, then moved.
Every input's header is checked before the model loads; a case whose voxels turn out unusable (NaN, channel grids,
damaged data) is reported and the others go on: the run ends with ``PartialPredictionError`` after writing the summary
of the cases done and ``failed_cases.json``, never with labelmaps and no summary."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from backsplit.errors import BackSplitError, CancelledError, InputError, OutputError
from backsplit.evaluation.summary import CaseSummary, DecisionRule, summarise, write_summaries
from backsplit.inference.estimate import plan_prediction
from backsplit.inference.model import load_predictor, read_model_info
from backsplit.inference.predict import Prediction, predict_arrays
from backsplit.inference.probability import write_probability_map
from backsplit.inference.watch import PredictionWatch
from backsplit.io.cases import unique_case_ids
from backsplit.io.dicom import is_dicom
from backsplit.io.readers import IMAGE_SUFFIXES, read_image
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, Stage, ignore_progress

CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


FAILURES_FILE = "failed_cases.json"


@dataclass
class InputCase:
    case_id: str
    images: list[Path]


@dataclass
class CaseFailure:
    """A case that could not be predicted (its inputs), while the others were."""
    case_id: str
    error: str


class PartialPredictionError(BackSplitError):
    """Raised by ``predict_files`` after the whole run when some cases failed on their inputs: the other cases'
    labelmaps, ``summary.csv``/``summary.json`` and ``prediction_run.json`` are written, the failures listed in
    ``failed_cases.json``. ``summaries``: the cases done; ``failures``: ``CaseFailure`` per failed case."""

    def __init__(self, summaries: list, failures: list[CaseFailure], out_dir: Path):
        self.summaries, self.failures = summaries, failures
        listed = "; ".join(f.error for f in failures)
        super().__init__(f"{len(failures)} of {len(failures) + len(summaries)} case(s) failed: {listed}. The other "
                         f"cases are written to '{out_dir}' (summary.csv lists them, {FAILURES_FILE} the failures); "
                         "fix the failed inputs and predict them into another folder (or with --overwrite)")


def write_failures(failures: Sequence[CaseFailure], out_dir: Path) -> Optional[Path]:
    """failed_cases.json ([{"case", "error"}]) when some cases failed; an earlier run's file is removed otherwise."""
    path = Path(out_dir) / FAILURES_FILE
    if not failures:
        path.unlink(missing_ok=True)
        return None
    path.write_text(json.dumps([{"case": f.case_id, "error": f.error} for f in failures], indent=2,
                               ensure_ascii=False), encoding="utf-8")
    return path


def _stem(path: Path) -> Optional[str]:
    lower = path.name.lower()
    if lower.endswith(".seg.nrrd"):
        return None
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _case_id(path: Path) -> str:
    """The case id of a plain input: the file name without its suffix, or a DICOM series folder's name."""
    return path.name if path.is_dir() else _stem(path)


def discover_inputs(path: Path, n_channels: int) -> list[InputCase]:
    """One file (``case.nii.gz`` or ``case_0000.nii.gz`` with its other channels beside it), or a folder of them.
    A DICOM series (its folder, or one of its files) is one case named after its folder; in a folder of inputs,
    each sub-folder holding a DICOM series is a case too. Case ids are unique (InputError naming both files)."""
    path = Path(path)
    if is_dicom(path):
        files = [p for p in path.iterdir() if p.is_file() and _stem(p)] if path.is_dir() else []
        if files:
            raise InputError(f"the folder holds DICOM files and image files (e.g. '{files[0].name}'); put the DICOM "
                             "series in a folder of its own", path=str(path))
        case_id = (path if path.is_dir() else path.parent).name
        return [InputCase(case_id, [path])] if n_channels == 1 else _refuse_single(path, n_channels)
    if path.is_file():
        stem = _stem(path)
        if stem is None:
            raise InputError("not an image file (.nii.gz, .nii, .nrrd, .mha, or a DICOM series)", path=str(path))
        match = CHANNEL_SUFFIX.match(stem)
        if match and n_channels > 1:
            folder_cases = [c for c in discover_inputs(path.parent, n_channels) if c.case_id == match["case"]]
            return folder_cases
        return [InputCase(match["case"] if match else stem, [path])] if n_channels == 1 else \
            _refuse_single(path, n_channels)
    if not path.is_dir():
        raise InputError("the input does not exist", path=str(path))
    grouped: dict[str, dict[int, Path]] = {}
    plain: list[Path] = []
    for item in sorted(path.iterdir()):
        if item.is_dir() and n_channels == 1 and is_dicom(item):  # a DICOM series per sub-folder, named after it
            plain.append(item)
            continue
        stem = _stem(item) if item.is_file() else None
        if stem is None:
            continue
        match = CHANNEL_SUFFIX.match(stem)
        if match:
            channels = grouped.setdefault(match["case"], {})
            if int(match["channel"]) in channels:  # a_0000.nii.gz and a_0000.nrrd: which one is channel 0?
                unique_case_ids([(stem, channels[int(match["channel"])]), (stem, item)], path)
            channels[int(match["channel"])] = item
        else:
            plain.append(item)
    # plain files are cases only for a one-channel model; then 'a.nii.gz' beside 'a_0000.nii.gz' is one id twice
    unique_case_ids([(_case_id(p), p) for p in (plain if n_channels == 1 else [])]
                    + [(c, min(ch.values())) for c, ch in grouped.items()], path)
    cases = []
    for case_id, channels in sorted(grouped.items()):
        if sorted(channels) != list(range(n_channels)):
            raise InputError(f"the case has channels {sorted(channels)} but the model needs {list(range(n_channels))}"
                             " (files <case>_0000, <case>_0001, ...)", case=case_id, path=str(path))
        cases.append(InputCase(case_id, [channels[i] for i in range(n_channels)]))
    if n_channels == 1:
        cases += [InputCase(_case_id(p), [p]) for p in plain]
    if not cases:
        raise InputError("no input images found (.nii.gz, .nii, .nrrd, .mha, or sub-folders holding a DICOM series)",
                         path=str(path))
    return cases


def _refuse_single(path: Path, n_channels: int):
    raise InputError(f"the model takes {n_channels} channels: name the files <case>_0000, <case>_0001, ... and give "
                     "the folder or the _0000 file", path=str(path))


def _write_image(array: np.ndarray, geometry, path: Path, compress: bool = True) -> None:
    import SimpleITK as sitk

    tmp = path.with_name(f".{path.name}.partial{''.join(path.suffixes)}")
    sitk.WriteImage(geometry.to_sitk(array), str(tmp), compress)
    os.replace(tmp, path)


def output_paths(out_dir: Path, case_id: str, output_format: str, probabilities: bool) -> dict[str, Path]:
    paths = {"labels": out_dir / f"{case_id}.{output_format}"}
    if probabilities:
        paths["probability"] = out_dir / f"{case_id}_lesion_probability.nii.gz"
    return paths


def write_prediction(prediction: Prediction, info, case_id: str, out_dir: Path, output_format: str,
                     lesion_only: bool, probabilities: bool) -> dict[str, Path]:
    paths = output_paths(out_dir, case_id, output_format, probabilities)
    labels = prediction.lesion_only() if lesion_only else prediction.labels
    classes = info.schema.targets if lesion_only else info.schema.classes
    if output_format == "seg.nrrd":
        from backsplit.io.segfile import write_seg_nrrd

        masks = {spec.name: labels == value for value, spec in enumerate(classes, start=1)}
        tmp = paths["labels"].with_name(f".{paths['labels'].name}.partial.seg.nrrd")
        write_seg_nrrd(tmp, prediction.geometry, masks, {c.name: c.color for c in classes},
                       {c.name: c.terminology for c in classes})
        os.replace(tmp, paths["labels"])
    else:
        _write_image(labels, prediction.geometry, paths["labels"])
    if probabilities and prediction.target_probability is not None:
        write_probability_map(prediction.target_probability, prediction.geometry, paths["probability"])
    return paths


def write_run_record(out_dir: Path, plan, watch) -> Path:
    """prediction_run.json: the up-front estimate next to the real time (checks the estimate's accuracy)."""
    record = {"estimate": plan.estimate.to_json() if plan is not None else None,
              "actual_s": round(time.time() - watch.started, 2), "cases": watch.case_ids, "tiles": watch.tiles}
    path = Path(out_dir) / "prediction_run.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def write_label_table(info, out_dir: Path, lesion_only: bool) -> Path:
    """labels.json next to the labelmaps: value -> name, role, colour (what a viewer needs to show them)."""
    classes = info.schema.targets if lesion_only else info.schema.classes
    table = {"0": {"name": "background", "role": "background", "color": [0, 0, 0]}}
    for value, spec in enumerate(classes, start=1):
        table[str(value)] = {"name": spec.name, "role": spec.role, "color": list(spec.color)}
    path = out_dir / "labels.json"
    path.write_text(json.dumps(table, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def predict_files(model_dir: Path, inputs: Sequence[InputCase], out_dir: Path, *, device: str = "auto",
                  lesion_only: bool = False, probabilities: bool = False, output_format: str = "nii.gz",
                  rule: Optional[DecisionRule] = None, overwrite: bool = False, use_mirroring: bool = True,
                  progress: ProgressCallback = ignore_progress,
                  cancel: Callable[[], bool] = lambda: False, estimate: bool = True,
                  estimate_only: bool = False, folds: Optional[Sequence[str]] = None,
                  checkpoint: Optional[str] = None, step_size: float = 0.5) -> list[CaseSummary]:
    """Predict ``inputs`` into ``out_dir``. Progress: tile-level ``predict`` events (see ``watch.py``) and, unless
    ``estimate`` is False, an ``estimate`` event first (a few tiles timed; also written to
    ``prediction_run.json`` with the real time). ``estimate_only``: stop after the estimate (returns []).
    ``folds``, ``checkpoint``, ``step_size``: nnU-Net's ``-f``, ``-chk``, ``-step_size`` (``model.read_model_info``,
    ``model.load_predictor``)."""
    if output_format not in ("nii.gz", "seg.nrrd"):
        raise InputError(f"output format '{output_format}' is not supported; choose nii.gz or seg.nrrd")
    info = read_model_info(model_dir, checkpoint, folds=folds)
    rule = rule if rule is not None else DecisionRule()
    from backsplit.models.usage import ModelInUse  # 'model remove' refuses the model until this function returns

    _in_use = ModelInUse(model_dir, "prediction").hold()  # noqa: F841
    out_dir = Path(out_dir)
    from backsplit.runtime.steps import check_writable_folder  # a read-only --out: one line, before the model loads

    check_writable_folder(out_dir, writes="the labelmaps and the summary of this prediction",
                          fix="choose another output folder (--out)")
    from backsplit.datasets.validation import check_id_length

    for case in inputs:   # longest: '.<id>_lesion_probability.nii.gz.partial.nii.gz' (written, then renamed)
        check_id_length(case.case_id, len("._lesion_probability.nii.gz.partial.nii.gz"), "_lesion_probability.nii.gz",
                        out_dir)
    if not overwrite:
        for case in inputs:
            for path in output_paths(out_dir, case.case_id, output_format, probabilities).values():
                if path.exists():
                    raise OutputError(f"'{path}' already exists; choose another output folder or allow overwriting "
                                      "(--overwrite)")
    from backsplit.io.imagefile import check_image_file  # damaged, sheared or 4D inputs: refused before the model loads

    for case in inputs:
        for path in case.images:
            check_image_file(path, case.case_id)
    watch = PredictionWatch(progress, [c.case_id for c in inputs], len(info.checkpoints))
    watch.loading(f"{info.variant}, {info.configuration}")
    predictor = load_predictor(info, device, use_mirroring=use_mirroring, tile_step_size=step_size)
    predictor.tile_listener = watch.listener
    plan = plan_prediction(predictor, info, inputs, use_mirroring, device, watch.started) \
        if estimate or estimate_only else None
    if plan is not None:
        watch.planned(plan)
    if estimate_only:
        return []
    summaries, failures = [], []
    write_label_table(info, out_dir, lesion_only)
    with watch.heartbeat():   # a large case's reading and resampling are reported too
        for index, case in enumerate(inputs):
            if cancel():
                raise CancelledError("prediction cancelled")
            watch.case_started(index)
            try:
                summary, paths, seconds = _predict_case(predictor, info, case, out_dir, output_format, lesion_only,
                                                        probabilities, rule, progress)
            except InputError as exc:  # this case's voxels (NaN, channel grids, damaged data): the others go on
                failures.append(CaseFailure(case.case_id, str(exc)))
                progress(ProgressEvent(Stage.WARNING, f"case '{case.case_id}' failed, the others go on: {exc}"))
                watch.case_finished(index, f"case '{case.case_id}': failed", {"case": case.case_id,
                                                                               "failed": str(exc)})
                continue
            summaries.append(summary)
            watch.case_finished(index, f"case '{case.case_id}': {summary.lesion_count} lesion(s), "
                                       f"{summary.lesion_volume_ml:.2f} ml ({seconds:.1f} s)",
                                {"case": case.case_id, "seconds": seconds,
                                 "files": {k: str(v) for k, v in paths.items()}, "summary": summary.to_json()})
    write_summaries(summaries, out_dir)
    write_run_record(out_dir, plan, watch)
    write_failures(failures, out_dir)
    if failures:
        raise PartialPredictionError(summaries, failures, out_dir)
    return summaries


def _predict_case(predictor, info, case: InputCase, out_dir: Path, output_format: str, lesion_only: bool,
                  probabilities: bool, rule: DecisionRule, progress: ProgressCallback):
    """Read, predict and write one case: (summary, written paths, seconds). InputError for this case's inputs."""
    channels, geometries = [], []
    for path in case.images:
        array, geometry = read_image(path, case.case_id)
        channels.append(array)
        geometries.append(geometry)
    for channel_index, geometry in enumerate(geometries[1:], start=1):
        problems = geometries[0].differences(geometry)
        if problems:
            raise InputError(f"channel {channel_index} is not on the grid of channel 0: "
                             f"{'; '.join(problems)}", case=case.case_id)
    # class probabilities always: the summary needs them (maximum lesion probability, the rule's threshold);
    # measured on the demo they cost no visible time. ``probabilities`` only decides whether the map is written.
    prediction = predict_arrays(predictor, info, channels, geometries[0], probabilities=True, case=case.case_id)
    for warning in prediction.warnings:
        progress(ProgressEvent(Stage.WARNING, f"case '{case.case_id}': {warning}"))
    paths = write_prediction(prediction, info, case.case_id, out_dir, output_format, lesion_only, probabilities)
    summary = summarise(case.case_id, prediction.labels, prediction.geometry, info.schema.target_values,
                        prediction.target_probability, rule)
    return summary, paths, prediction.seconds
