"""``backsplit context show``: write the learned context of training cases as label maps and Slicer segmentations.

Per case, into a new output folder: ``<case>.nii.gz`` (the reference's targets and supports, the generator's context
classes on background voxels near the targets, far background 0; exactly the grid of the case's image in imagesTr)
and ``<case>.seg.nrrd`` (the same as named segments: Slicer shows them as segments of the case), plus
``learned_context.json`` (checkpoint, spec, label values, per case files and context volumes). Files are written in
a hidden staging folder inside the output folder, then moved into place; a non-empty output folder is refused
unless ``overwrite`` (then only files of the same names are replaced).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from backsplit.errors import InputError, OutputError
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, ignore_progress
from backsplit.runtime.workerprocess import JsonRequest
from backsplit.training.colab.show import (
    EXTENTS,
    GeneratorModel,
    context_label_map,
    context_probabilities,
    find_generator_checkpoint,
    generator_predictor,
    load_generator_model,
)

SUMMARY = "learned_context.json"
ROLE_TAG = "BackSplit.Role"              # as BackSplit Segment's prediction import tags segments
GENERATED_TAG = "BackSplit.Generated"    # as 'backsplit supports generate' tags generated segments
CONTEXT_TAG = "BackSplit.Context"        # "learned": a class proposed by the learned-context generator


@dataclass
class ShowRequest(JsonRequest):
    """What to show. ``work_dir``: the training work folder (or a trainer folder, fold folder or checkpoint in it);
    ``cases``: case ids (empty: every training case); ``extent``: see ``show.context_label_map``."""
    work_dir: str
    dataset_dir: str
    out_dir: str
    cases: list = field(default_factory=list)
    fold: Optional[str] = None
    checkpoint: str = "final"
    configuration: Optional[str] = None
    extent: str = "margin"
    device: str = "auto"
    use_mirroring: bool = False
    overwrite: bool = False


@dataclass
class ShownCase:
    case_id: str
    image: str                   # channel 0 of the case in imagesTr
    labels: str                  # <out>/<case>.nii.gz
    segmentation: str            # <out>/<case>.seg.nrrd
    context_voxels: dict         # context class name -> voxels
    context_ml: dict             # context class name -> millilitres

    def to_json(self) -> dict:
        return asdict(self)


def show_learned_context(request: ShowRequest, progress: ProgressCallback = ignore_progress) -> list[ShownCase]:
    """Run the generator of a learned-context training on training cases and write what it proposes.

    Raises InputError for a folder without a learned-context checkpoint, a dataset other than the one trained on,
    an unknown case or option; OutputError for an output folder that is not empty (without ``overwrite``) or lies
    inside the dataset. Returns one ``ShownCase`` per case, in the order asked."""
    from backsplit.datasets.folder import load_dataset_folder

    if request.extent not in EXTENTS:
        raise InputError(f"context extent '{request.extent}' is unknown; choose margin or label")
    dataset = load_dataset_folder(Path(request.dataset_dir))
    checkpoint = find_generator_checkpoint(Path(request.work_dir), dataset.folder_name, request.fold,
                                           request.checkpoint, request.configuration)
    case_ids = chosen_cases(dataset.case_ids, request.cases, dataset.folder)
    out = output_folder(Path(request.out_dir), dataset.folder, request.overwrite)
    progress(ProgressEvent("context", f"loading the generator from {checkpoint}", 0, len(case_ids)))
    model = load_generator_model(checkpoint)
    check_same_dataset(model, dataset.meta, dataset.folder)
    predictor = generator_predictor(model, request.device, request.use_mirroring)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    shown = []
    try:
        for index, case_id in enumerate(case_ids):
            progress(ProgressEvent("context", f"{case_id}: running the generator", index, len(case_ids),
                                   {"case": case_id}))
            shown.append(_show_case(model, predictor, dataset, case_id, staging, out, request.extent))
            for path in (staging / f"{case_id}.nii.gz", staging / f"{case_id}.seg.nrrd"):
                os.replace(path, out / path.name)
            progress(ProgressEvent("context", f"{case_id}: written", index + 1, len(case_ids),
                                   {"case": case_id, "file": shown[-1].segmentation}))
        summary = staging / SUMMARY
        summary.write_text(json.dumps(summary_json(model, request, shown), indent=2, ensure_ascii=False),
                           encoding="utf-8")
        os.replace(summary, out / SUMMARY)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return shown


def chosen_cases(available: list, asked: list, dataset_folder: Path) -> list:
    """The case ids to show (all when ``asked`` is empty); raises InputError naming an unknown one."""
    if not asked:
        return list(available)
    known = set(available)
    for case_id in asked:
        if case_id not in known:
            listed = ", ".join(available[:8]) + (", ..." if len(available) > 8 else "")
            raise InputError(f"not a training case of this dataset (its cases: {listed}); check the name",
                             case=case_id, path=str(dataset_folder))
    return list(dict.fromkeys(asked))


def output_folder(out: Path, dataset_folder: Path, overwrite: bool) -> Path:
    """Check the output folder: not inside the dataset, not a file, empty unless ``overwrite``."""
    resolved = out.resolve()
    dataset = dataset_folder.resolve()
    if resolved == dataset or dataset in resolved.parents:
        raise OutputError(f"the output folder '{out}' lies inside the dataset folder '{dataset_folder}'; choose a "
                          "folder outside it (nnU-Net reads everything in the dataset)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"the output '{out}' is a file; choose a new folder")
    if out.is_dir() and any(not p.name.startswith(".staging-") for p in out.iterdir()) and not overwrite:
        raise OutputError(f"the output folder '{out}' is not empty; choose a new folder, or replace the files of "
                          "the same names with --overwrite")
    return out


def check_same_dataset(model: GeneratorModel, meta: dict, dataset_folder: Path) -> None:
    """Refuse a dataset whose labels or channels differ from those the generator was trained with."""
    if {k: int(v) for k, v in meta["labels"].items()} != model.original_labels:
        raise InputError(f"the dataset's labels {meta['labels']} differ from those the generator was trained with "
                         f"{model.original_labels}; give the dataset that training used",
                         path=str(dataset_folder / "dataset.json"))
    if dict(meta["channel_names"]) != dict(model.dataset_json.get("channel_names", {})):
        raise InputError(f"the dataset's channels {meta['channel_names']} differ from those the generator was "
                         f"trained with {model.dataset_json.get('channel_names')}; give the dataset that training "
                         "used", path=str(dataset_folder / "dataset.json"))


def class_table(model: GeneratorModel) -> list[dict]:
    """name, value, role (target/support), context (a learned context class), colour, terminology of every class of
    the label map, in label order."""
    from backsplit.labels.schema import LabelSchema

    schema = LabelSchema.from_json(model.schema)
    context = set(model.spec.class_names())
    return [{"name": spec.name, "value": value, "role": spec.role, "context": spec.name in context,
             "color": [float(c) for c in spec.color], "terminology": spec.terminology}
            for value, spec in enumerate(schema.classes, start=1)]


def _show_case(model: GeneratorModel, predictor, dataset, case_id: str, staging: Path, out: Path,
               extent: str) -> ShownCase:
    import SimpleITK as sitk

    from backsplit.io.geometry import Geometry
    from backsplit.io.segfile import write_seg_nrrd

    ending = dataset.meta["file_ending"]
    images = [dataset.folder / "imagesTr" / f"{case_id}_{c:04d}{ending}"
              for c in range(len(dataset.meta["channel_names"]))]
    reference_file = dataset.folder / "labelsTr" / f"{case_id}{ending}"
    reader = predictor.plans_manager.image_reader_writer_class()      # the reader nnU-Net trained with
    data, properties = reader.read_images([str(p) for p in images])
    reference, _ = reader.read_seg(str(reference_file))
    spacing = [float(s) for s in properties["spacing"]]
    header = sitk.ImageFileReader()
    header.SetFileName(str(images[0]))
    header.ReadImageInformation()
    geometry = Geometry.create(header.GetSpacing(), header.GetOrigin(), header.GetDirection(), header.GetSize()[::-1])
    if tuple(data.shape[1:]) != geometry.shape or tuple(reference.shape[1:]) != geometry.shape:
        raise InputError(f"the image ({data.shape[1:]}) and reference ({reference.shape[1:]}) arrays do not match the "
                         f"image's grid {geometry.shape}; re-export the dataset", case=case_id, path=str(images[0]))
    index, probability = context_probabilities(predictor, data, spacing, int(model.spec.classes))
    labels = context_label_map(reference[0], index, probability, spacing, model.target_values,
                               model.first_context_value, model.spec.margin_mm, model.spec.temperature_mm, extent,
                               slice_axis=slicing_axis(model))
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(header.GetSpacing())
    image.SetOrigin(header.GetOrigin())
    image.SetDirection(header.GetDirection())
    sitk.WriteImage(image, str(staging / f"{case_id}.nii.gz"), True)
    classes = class_table(model)
    masks = {c["name"]: labels == c["value"] for c in classes}
    generated = {GENERATED_TAG: "1", CONTEXT_TAG: "learned"}
    tags = {c["name"]: {ROLE_TAG: c["role"], **(generated if c["context"] else {})} for c in classes}
    write_seg_nrrd(staging / f"{case_id}.seg.nrrd", geometry, masks, {c["name"]: c["color"] for c in classes},
                   {c["name"]: c["terminology"] for c in classes}, tags)
    voxels = {c["name"]: int(np.count_nonzero(masks[c["name"]])) for c in classes if c["context"]}
    ml = geometry.voxel_volume_ml()
    return ShownCase(case_id, str(images[0]), str(out / f"{case_id}.nii.gz"), str(out / f"{case_id}.seg.nrrd"),
                     voxels, {k: round(v * ml, 4) for k, v in voxels.items()})


def summary_json(model: GeneratorModel, request: ShowRequest, shown: list) -> dict:
    return {"checkpoint": str(model.checkpoint), "configuration": model.configuration,
            "generator_updates": model.updates, "learned_context": model.spec.to_json(), "extent": request.extent,
            "dataset": str(Path(request.dataset_dir).resolve()), "classes": class_table(model),
            "cases": [c.to_json() for c in shown]}


def read_summary(out_dir: Path) -> dict:
    """``learned_context.json`` of an output folder; raises InputError when it is missing or unreadable."""
    path = Path(out_dir) / SUMMARY
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("the folder has no learned_context.json; run 'backsplit context show' into it first",
                         path=str(out_dir)) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"learned_context.json cannot be read ({exc}); run 'backsplit context show' again",
                         path=str(path)) from None


def slicing_axis(model) -> Optional[int]:
    """The array axis (reader order, e.g. z, y, x) a 2d training sliced along: nnU-Net's 2d patches span the last two
    axes after ``transpose_forward``, so the slices run along ``transpose_forward[0]``; None for a 3d training."""
    configuration = model.plans.get("configurations", {}).get(model.configuration, {})
    if len(configuration.get("patch_size", ())) != 2:
        return None
    return int(model.plans.get("transpose_forward", [0, 1, 2])[0])
