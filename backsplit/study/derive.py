"""Datasets derived from a BackSplit dataset for an arm, written by ``backsplit.datasets.export`` (no second writer).

The exported label map is read back into one segment per class, the recipe changes the segments, and the export
writes the new dataset (targets first, so a lesion still wins every overlap). Recipe keys (all optional):

* ``supports``: the support structures to keep, in order (the others are folded into background);
* ``transform``: ``{"op": "erode" | "dilate", "mm": k}``: every support segment eroded / dilated by k mm
  (Euclidean distance in physical units, SciPy's distance transform);
* ``missing_fraction`` (+ ``seed``): that fraction of cases (rounded, chosen with the seed) carries no support
  segment at all (exported with missing segments treated as absent);
* ``context``: ``"rings:5,15"`` / ``"kmeans:2"``: generated context classes (``backsplit.labels.context``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.datasets.layout import read_dataset_json
from backsplit.io.cases import Case, LazyCaseSource
from backsplit.io.readers import read_image
from backsplit.labels.context import ContextSpec
from backsplit.labels.schema import LabelSchema


@dataclass
class DeriveRequest:
    source_dir: Path          # the BackSplit dataset
    recipe: dict
    out_dir: Path             # the derived dataset's folder (DatasetNNN_Name); its parent is created


def missing_cases(case_ids, fraction: float, seed: int) -> set[str]:
    """The cases that lose their support segments: round(fraction * n), drawn with ``seed`` (deterministic)."""
    ids = sorted(case_ids)
    count = int(round(fraction * len(ids)))
    rng = np.random.default_rng(seed)
    return set(np.array(ids)[rng.permutation(len(ids))[:count]].tolist()) if count else set()


def transform_mask(mask: np.ndarray, spacing_zyx, op: str, mm: float) -> np.ndarray:
    """``mask`` (z, y, x) eroded or dilated by ``mm`` (Euclidean distance with the voxel spacing)."""
    from scipy import ndimage

    if not mask.any():
        return mask
    if op == "dilate":
        return ndimage.distance_transform_edt(~mask, sampling=spacing_zyx) <= mm
    if op == "erode":
        return ndimage.distance_transform_edt(mask, sampling=spacing_zyx) > mm
    raise ValueError(f"unknown transform '{op}' (erode or dilate)")


def _case_loader(folder: Path, meta: dict, schema: LabelSchema, case_id: str, recipe: dict, drop_supports: bool):
    def load() -> Case:
        ending = meta["file_ending"]
        channels, geometry = [], None
        for index in range(len(meta["channel_names"])):
            array, geometry_i = read_image(folder / "imagesTr" / f"{case_id}_{index:04d}{ending}", case_id)
            channels.append(array)
            geometry = geometry or geometry_i
        labels, _ = read_image(folder / "labelsTr" / f"{case_id}{ending}", case_id, "label map")
        segments = {spec.name: labels == schema.value_of(spec.name) for spec in schema.targets}
        transform = recipe.get("transform")
        if not drop_supports:
            for spec in schema.supports:
                mask = labels == schema.value_of(spec.name)
                if transform:
                    mask = transform_mask(mask, geometry.spacing[::-1], transform["op"], float(transform["mm"]))
                segments[spec.name] = mask
        return Case(case_id, channels, geometry, segments, description=f"case {case_id} of {folder.name}")
    return load


def derive_dataset(request: DeriveRequest) -> Path:
    """Write the derived dataset at ``request.out_dir`` (replacing an earlier one); returns its folder."""
    source = Path(request.source_dir)
    meta = read_dataset_json(source)
    schema = LabelSchema.from_json(meta["backsplit"]["schema"])
    recipe = request.recipe
    supports = list(recipe.get("supports", [c.name for c in schema.supports]))
    lose = missing_cases(meta["backsplit"]["case_ids"], float(recipe["missing_fraction"]), int(recipe.get("seed", 0))) \
        if recipe.get("missing_fraction") else set()
    sources = [LazyCaseSource(case, _case_loader(source, meta, schema, case, recipe, case in lose), f"case {case}")
               for case in meta["backsplit"]["case_ids"]]
    out_dir = Path(request.out_dir)
    dataset_id = int(out_dir.name[len("Dataset"):len("Dataset") + 3])
    name = out_dir.name[len("Dataset") + 4:]
    colors = {c.name: c.color for c in schema.classes}
    export = ExportRequest(out_root=out_dir.parent, dataset_id=dataset_id, dataset_name=name,
                           targets=[c.name for c in schema.targets], supports=supports,
                           channel_names=[meta["channel_names"][k] for k in sorted(meta["channel_names"], key=int)],
                           colors=colors, binary_twin=False, allow_negative_cases=True,
                           missing_segments="absent", overwrite=True,
                           require_every_class=False,   # a recipe may drop a support from every case on purpose
                           context=ContextSpec.parse(recipe.get("context")))
    result = export_dataset(sources, export)
    (result.dataset_dir / "backsplit_study_recipe.json").write_text(json.dumps(recipe, indent=2), encoding="utf-8")
    return result.dataset_dir
