"""Show what a learned-context generator learned: find its checkpoint, run it with nnU-Net's predictor, and turn
its context probabilities into a label map of a training case (the pure step, ``context_label_map``).

The generator's weights live only in the training work folder's nnU-Net checkpoints (``GENERATOR_KEY`` in
``nnUNet_results/<dataset>/BackSplitLearnedContextTrainer__<plans>__<configuration>/fold_<f>/checkpoint_*.pth``);
exported model folders have them stripped. Everything else the generator needs travels in the same checkpoint:
nnU-Net stores the trainer's ``init_args`` (plans, configuration, the extended dataset.json with the spec).

The generator runs through nnU-Net's own ``nnUNetPredictor`` (``manual_initialization`` with the generator network
and a dataset.json naming ``t`` classes): the same preprocessing as in training, sliding window, and the resampling
of its softmax ``q`` (Eq. 4) back to the case's original grid. Torch and nnU-Net are imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.training.colab.spec import LEARNED_TRAINER, LearnedContextSpec, spec_from_json

CHECKPOINTS = {"final": "checkpoint_final.pth", "latest": "checkpoint_latest.pth"}
EXTENTS = ("margin", "label")
STRIPPED_ADVICE = ("exported model folders (--model-dir of 'backsplit train') hold the segmentation network only: "
                   "the generator is stripped from them. Point to the training work folder instead (the --work-dir "
                   "of 'backsplit train', which holds nnUNet_results/), or to a fold folder or checkpoint inside it")


@dataclass
class GeneratorModel:
    """A learned-context generator read from a training checkpoint (no torch objects but the weights)."""
    checkpoint: Path
    spec: LearnedContextSpec
    plans: dict                    # nnU-Net plans the trainer ran with
    configuration: str
    dataset_json: dict             # the extended dataset.json (targets, supports, context classes)
    weights: dict                  # the generator's state_dict
    updates: int                   # generator updates (meta steps) so far

    @property
    def schema(self) -> dict:
        return self.dataset_json.get("backsplit", {}).get("schema", {})

    @property
    def target_values(self) -> list[int]:
        """Label values of the target classes (targets come first, from 1)."""
        return list(range(1, len(self.schema.get("targets", [])) + 1)) or [1]

    @property
    def first_context_value(self) -> int:
        """Label value of 'learned context 1 of t' (after the targets and supports)."""
        return len(self.dataset_json["labels"]) - int(self.spec.classes)

    @property
    def original_labels(self) -> dict:
        """The dataset's own labels (the extended labels without the context classes)."""
        names = set(self.spec.class_names())
        return {k: int(v) for k, v in self.dataset_json["labels"].items() if k not in names}


def find_generator_checkpoint(location: Path, dataset_folder_name: Optional[str] = None, fold: Optional[str] = None,
                              checkpoint: str = "final", configuration: Optional[str] = None) -> Path:
    """The learned-context checkpoint under ``location``: a training work folder, its trainer folder, a fold folder,
    or a checkpoint file. ``dataset_folder_name`` (DatasetNNN_Name) picks the dataset in a work folder; ``fold`` and
    ``configuration`` pick among several trainings. Raises InputError naming the folder and the choices."""
    location = Path(location)
    if checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint '{checkpoint}' is unknown; choose final or latest")
    if not location.exists():
        raise InputError("the training work folder does not exist; give the --work-dir used by 'backsplit train'",
                         path=str(location))
    if location.is_file():
        return location
    if (location / "backsplit_model.json").is_file() and not (location / "nnUNet_results").is_dir() and \
            not location.name.startswith(f"{LEARNED_TRAINER}__"):
        raise InputError(f"this is an exported model folder, not a training work folder: {STRIPPED_ADVICE}",
                         path=str(location))
    name = CHECKPOINTS[checkpoint]
    if location.name.startswith("fold_"):
        folds = [location]
    else:
        trainers = [location] if location.name.startswith(f"{LEARNED_TRAINER}__") else \
            _trainer_folders(location, dataset_folder_name)
        if configuration:
            trainers = [t for t in trainers if t.name.rsplit("__", 1)[-1] == configuration]
        if not trainers:
            raise InputError(f"no learned-context training (results folder {LEARNED_TRAINER}__*) was found"
                             f"{' for ' + dataset_folder_name if dataset_folder_name else ''}"
                             f"{' in configuration ' + configuration if configuration else ''}; train with "
                             "'backsplit train ... --context learned' into this work folder, or point to the work "
                             f"folder that training used ({STRIPPED_ADVICE.split('. ')[0]})", path=str(location))
        if len(trainers) > 1:
            raise InputError("several learned-context trainings are here (" + ", ".join(t.name for t in trainers)
                             + "); choose one with --configuration", path=str(location))
        folds = sorted(p for p in trainers[0].glob("fold_*") if p.is_dir())
        if fold is not None:
            folds = [p for p in folds if p.name == f"fold_{fold}"]
        if len(folds) != 1:
            found = ", ".join(p.name[5:] for p in sorted(trainers[0].glob("fold_*"))) or "none"
            problem = "several folds were trained" if len(folds) > 1 else \
                f"fold {fold} was not trained" if fold is not None else "no fold has been trained yet"
            raise InputError(f"{problem} (folds here: {found}); choose one with --fold", path=str(trainers[0]))
    path = folds[0] / name
    if not path.is_file():
        other = [k for k, v in CHECKPOINTS.items() if (folds[0] / v).is_file()]
        hint = f"; use --checkpoint {other[0]}" if other else "; the training has not saved a checkpoint yet"
        raise InputError(f"there is no {name} here (training unfinished?){hint}", path=str(folds[0]))
    return path


def _trainer_folders(work_dir: Path, dataset_folder_name: Optional[str]) -> list[Path]:
    results = work_dir / "nnUNet_results" if (work_dir / "nnUNet_results").is_dir() else work_dir
    datasets = [results / dataset_folder_name] if dataset_folder_name else sorted(results.glob("Dataset*"))
    return sorted(p for d in datasets for p in d.glob(f"{LEARNED_TRAINER}__*") if p.is_dir())


def load_generator_model(path: Path) -> GeneratorModel:
    """Read the generator, its spec and the trainer's plans and dataset.json from a checkpoint. Raises InputError for
    an unreadable file or a checkpoint without a generator (an exported model, or an ordinary BackSplit training)."""
    import torch

    from backsplit.training.colab.checkpoints import read_generator_state

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise InputError(f"the checkpoint cannot be read ({type(exc).__name__}: {exc}); it is damaged, or a running "
                         "training is writing it: try again in a moment, or use --checkpoint final/latest for the "
                         "other one", path=str(path)) from None
    state = read_generator_state(checkpoint) if isinstance(checkpoint, dict) else None
    if state is None:
        raise InputError(f"the checkpoint has no learned-context generator: {STRIPPED_ADVICE}", path=str(path))
    init = checkpoint.get("init_args") or {}
    if not {"plans", "configuration", "dataset_json"} <= set(init):
        raise InputError("the checkpoint does not record the plans and dataset.json it was trained with (not an "
                         "nnU-Net v2 training checkpoint)", path=str(path))
    return GeneratorModel(Path(path), spec_from_json(state["spec"]), init["plans"], str(init["configuration"]),
                          init["dataset_json"], state["weights"], int(state.get("updates", 0)))


def generator_dataset_json(model: GeneratorModel) -> dict:
    """The dataset.json that makes nnU-Net's label manager expect the generator's ``t`` outputs (plain softmax)."""
    import json

    meta = json.loads(json.dumps(model.dataset_json))
    meta["labels"] = {"background": 0, **{f"context {i + 1}": i for i in range(1, int(model.spec.classes))}}
    meta.pop("regions_class_order", None)
    return meta


def generator_predictor(model: GeneratorModel, device: str = "auto", use_mirroring: bool = False):
    """nnU-Net's predictor (preprocessing, sliding window with Gaussian weighting, resampling back) around the
    generator network (``generator.build_generator``: the plans' network, width factor w, ``t`` outputs)."""
    import contextlib
    import io

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from backsplit.runtime.devices import resolve_device
    from backsplit.training.colab.generator import build_generator

    torch_device = resolve_device(device)
    plans = PlansManager(model.plans)
    configuration = plans.get_configuration(model.configuration)
    meta = generator_dataset_json(model)
    network = build_generator(configuration, len(meta["channel_names"]), int(model.spec.classes),
                              float(model.spec.generator_width))
    try:
        network.load_state_dict(model.weights)
    except RuntimeError as exc:
        raise InputError(f"the generator's weights do not fit the network built from the plans ({exc})",
                         path=str(model.checkpoint)) from None
    with contextlib.redirect_stdout(io.StringIO()):   # nnU-Net prints a CUDA-only notice on every CPU predictor
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                    perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    mirror_axes = tuple(range(len(configuration.patch_size))) if use_mirroring else None
    predictor.manual_initialization(network, plans, configuration, [model.weights], meta, LEARNED_TRAINER,
                                    mirror_axes)
    return predictor


def context_probabilities(predictor, data: np.ndarray, spacing_zyx: Sequence[float], n_context: int):
    """Run the generator on one case. data: (c, z, y, x) float32 as nnU-Net's reader gives it; spacing in mm, same
    axis order. Returns (index, probability): the argmax of ``q`` over the ``t`` context classes (z, y, x) int and
    its value (z, y, x) float32, on the input's grid. Outside nnU-Net's nonzero crop ``q`` is class 1 with
    probability 1 (nnU-Net's ``revert_cropping_on_probabilities``). ``t = 1`` needs no network (``q = 1``)."""
    shape = tuple(data.shape[1:])
    if n_context == 1:
        return np.zeros(shape, np.uint8), np.ones(shape, np.float32)
    _, probabilities = predictor.predict_single_npy_array(np.asarray(data, np.float32),
                                                          {"spacing": [float(s) for s in spacing_zyx]}, None, None,
                                                          True)
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1:] != shape:
        raise RuntimeError(f"generator output {probabilities.shape[1:]} differs from the case {shape}")
    return probabilities.argmax(0).astype(np.uint8), probabilities.max(0).astype(np.float32)


def context_label_map(reference: np.ndarray, context_index: np.ndarray, context_probability: np.ndarray,
                      spacing_zyx: Sequence[float], target_values: Sequence[int], first_context_value: int,
                      margin_mm: float, temperature_mm: float, extent: str = "margin",
                      slice_axis: Optional[int] = None) -> np.ndarray:
    """The reference labels with the generator's context painted on background voxels near the targets.

    reference: (z, y, x) labels (0 background, targets, supports); context_index / context_probability: argmax of
    ``q`` (0-based) and its value, same shape; spacing in mm in the same axis order. Distances are Euclidean, in mm,
    from the nearest target voxel (scipy's exact ``distance_transform_edt`` with the voxel spacing): over the whole
    case in 3d, or, with ``slice_axis`` (a 2d training: the axis nnU-Net slices along), within each slice, as the
    trainer measured them in its 2d patches (a slice without target voxels gets no context). The trainer measured
    them inside each training patch; the whole case or slice is the view a user can look at.
    ``extent``: ``margin`` paints background voxels with ``d < m`` (where Eq. 8's mask is 1, so the soft label is
    the generator's ``q`` alone); ``label`` paints background voxels whose Eq. 9 soft label has its maximum on a
    context class (``M * max q > 1 - M``, which reaches beyond the margin as ``M`` decays with ``tau``).
    Targets and supports are kept; other background stays 0. Returns uint8 (z, y, x) with context classes
    ``first_context_value .. first_context_value + t - 1``. A case without target voxels gets no context.
    """
    from scipy.ndimage import distance_transform_edt

    if extent not in EXTENTS:
        raise InputError(f"context extent '{extent}' is unknown; choose margin or label")
    reference = np.asarray(reference)
    out = reference.astype(np.uint8)
    target = np.isin(reference, list(target_values))
    if not target.any():
        return out
    spacing = [float(s) for s in spacing_zyx]
    if slice_axis is None:
        distance = distance_transform_edt(~target, sampling=spacing)
    else:   # 2d: within each slice along slice_axis, with the in-plane spacing; no target in a slice: infinite
        planes = np.moveaxis(target, slice_axis, 0)
        in_plane = [s for axis, s in enumerate(spacing) if axis != slice_axis]
        distance = np.full(planes.shape, np.inf)
        for k, plane in enumerate(planes):
            if plane.any():
                distance[k] = distance_transform_edt(~plane, sampling=in_plane)
        distance = np.moveaxis(distance, 0, slice_axis)
    background = reference == 0
    if extent == "margin":
        region = background & (distance < margin_mm)
    else:
        mask = np.where(distance < margin_mm, 1.0, np.exp((margin_mm - distance) / temperature_mm))
        region = background & (mask * np.asarray(context_probability, np.float64) > 1.0 - mask)
    out[region] = (first_context_value + np.asarray(context_index)[region]).astype(np.uint8)
    return out
