"""Read a BackSplit model folder (or a plain nnU-Net v2 model folder, its description derived with a warning) and
build nnU-Net's predictor from it, with a chosen fold set, checkpoint, tile step size and mirroring.

The network is built from the plans with nnU-Net's stock ``nnUNetTrainer.build_network_architecture`` and handed to
``nnUNetPredictor.manual_initialization``: no lookup of the trainer class by name, so models trained with
BackSplit's trainer (which lives outside nnunetv2) load anywhere. Checkpoints are read with
``torch.load(weights_only=False)`` as nnU-Net does: a model folder can run code, so use trusted models only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from backsplit.datasets.layout import read_dataset_json
from backsplit.errors import InputError
from backsplit.labels.schema import LabelSchema
from backsplit.runtime.devices import resolve_device, usable_cpu_count
from backsplit.training.manifest import MANIFEST_NAME, read_manifest

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
DERIVED_WARNING = ("no backsplit_model.json: the model's description is derived from nnU-Net's files (dataset.json, "
                   "plans.json, the folder name): every foreground class is taken as a target and the training "
                   "orientation is unknown; check the classes in labels.json")


@dataclass
class ModelInfo:
    folder: Path
    manifest: dict
    schema: LabelSchema
    dataset_json: dict
    checkpoints: list[Path]
    warnings: list[str] = field(default_factory=list)

    @property
    def channel_names(self) -> list[str]:
        names = self.manifest.get("channel_names") or self.dataset_json["channel_names"]
        return [names[k] for k in sorted(names, key=int)]

    @property
    def configuration(self) -> str:
        return self.manifest["configuration"]

    @property
    def n_targets(self) -> int:
        return len(self.schema.targets)

    @property
    def variant(self) -> str:
        return self.manifest.get("variant", "backsplit")


def plain_model_manifest(folder: Path, orientation: Optional[str] = None, folder_name: Optional[str] = None) -> dict:
    """A stand-in manifest for a plain nnU-Net v2 model folder (``<Trainer>__<Plans>__<configuration>`` with
    dataset.json, plans.json and ``fold_<f>/checkpoint_final.pth`` or ``checkpoint_best.pth``): every foreground label
    is a class, ``"derived": true``. ``orientation``: the orientation code (SimpleITK/DICOM, e.g. 'RAS') the model was
    trained in, when known; ``folder_name``: nnU-Net's folder name when the folder was renamed (an imported zip).
    Raises InputError naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("the model folder does not exist", path=str(folder))
    if not (folder / "dataset.json").is_file() or not (folder / "plans.json").is_file():
        inner = sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / "plans.json").is_file())
        hint = f" It holds model folders: {', '.join(inner)}; give one of them." if inner else \
            " Give nnU-Net's trainer output folder (<Trainer>__<Plans>__<configuration>)."
        raise InputError("this is not an nnU-Net v2 model folder, nor a BackSplit one (dataset.json and plans.json "
                         "are missing)." + hint, path=str(folder))
    dataset_json = read_dataset_json(folder, required=(), fix="copy the whole model folder again")
    try:
        plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"plans.json cannot be parsed ({exc})", path=str(folder)) from None
    labels = dataset_json.get("labels") or {}
    if any(not isinstance(v, int) for v in labels.values()):
        raise InputError("the model is region-based (labels map to lists of values); BackSplit needs one value per "
                         "class", path=str(folder / "dataset.json"))
    if sorted(labels.values()) != list(range(len(labels))):
        raise InputError(f"the model's label values {sorted(labels.values())} are not 0..{len(labels) - 1}",
                         path=str(folder / "dataset.json"))
    configurations = list(plans.get("configurations", {}))
    parts = (folder_name or folder.name).split("__")
    configuration = parts[-1] if len(parts) == 3 and parts[-1] in configurations else \
        (configurations[0] if len(configurations) == 1 else None)
    if configuration is None:
        raise InputError(f"cannot tell the configuration: the folder is not named <Trainer>__<Plans>__<configuration> "
                         f"and the plans have {', '.join(configurations) or 'none'}", path=str(folder))
    folds = sorted(p.name[len("fold_"):] for p in folder.glob("fold_*")
                   if any((p / name).is_file() for name in CHECKPOINTS))
    if not folds:
        raise InputError("the model has no fold_<f>/checkpoint_final.pth; training did not finish or the folder is "
                         "incomplete", path=str(folder))
    if orientation is None and "totalsegmentator" in str(folder).casefold():
        orientation = "RAS"  # TotalSegmentator trains and predicts on nibabel's closest canonical (RAS+) orientation
    return {"kind": "backsplit-model", "variant": "external", "derived": True, "configuration": configuration,
            "folds": folds, "trainer": parts[0] if len(parts) == 3 else "nnUNetTrainer",
            "plans_name": parts[1] if len(parts) == 3 else plans.get("plans_name", "nnUNetPlans"), "labels": labels,
            "channel_names": dataset_json.get("channel_names", {}), "training_orientation": orientation}


def choose_folds(available: Sequence[str], chosen: Optional[Sequence[str]], folder: Path) -> list[str]:
    """``chosen`` folds (nnU-Net's ``-f``: fold numbers or 'all'; None: every fold of the model), each checked
    against the model's ``available`` folds. Raises InputError naming the folds there are."""
    if not chosen:
        return list(available)
    picked = [str(f) for f in chosen]
    unknown = [f for f in picked if f not in available]
    if unknown or len(set(picked)) != len(picked):
        raise InputError(f"fold(s) {', '.join(unknown or picked)} {'are not in' if unknown else 'repeat in'} the "
                         f"model; it has fold(s) {', '.join(available)}: choose among those", path=str(folder))
    return picked


def read_model_info(folder: Path, checkpoint: Optional[str] = None, manifest: Optional[dict] = None,
                    folds: Optional[Sequence[str]] = None) -> ModelInfo:
    """Check a model folder without loading torch: manifest, dataset.json, plans, checkpoints, label agreement.
    ``manifest`` stands in for ``backsplit_model.json``; a plain nnU-Net folder without either gets one derived
    (``plain_model_manifest``, with a warning in ``ModelInfo.warnings``). ``checkpoint``: the file name in each fold
    (default the manifest's, checkpoint_final.pth); ``folds``: a subset of the model's folds (default all)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("the model folder does not exist", path=str(folder))
    warnings = []
    if manifest is None and not (folder / MANIFEST_NAME).is_file():
        manifest = plain_model_manifest(folder)
        warnings.append(DERIVED_WARNING)
    manifest = read_manifest(folder) if manifest is None else manifest
    for name in ("dataset.json", "plans.json"):
        if not (folder / name).is_file():
            raise InputError(f"the model folder has no {name}; copy the whole model folder", path=str(folder))
    dataset_json = read_dataset_json(folder, required=("labels",), fix="copy the whole model folder again")
    if manifest.get("labels") and manifest["labels"] != dataset_json.get("labels"):
        raise InputError("the manifest's labels do not match the model's dataset.json "
                         f"({manifest['labels']} vs {dataset_json.get('labels')}); the folder mixes two models",
                         path=str(folder / "backsplit_model.json"))
    if manifest.get("schema"):
        schema = LabelSchema.from_json(manifest["schema"])
    else:  # a model without BackSplit roles: every foreground class is a target
        schema = LabelSchema.create([k for k, v in sorted(dataset_json["labels"].items(), key=lambda kv: kv[1])
                                     if int(v) > 0])
    if len(schema.classes) + 1 != len(dataset_json["labels"]):
        raise InputError(f"the manifest names {len(schema.classes)} classes but the model has "
                         f"{len(dataset_json['labels']) - 1}; the manifest does not belong to this network",
                         path=str(folder / "backsplit_model.json"))
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    if manifest["configuration"] not in plans.get("configurations", {}):
        raise InputError(f"the plans have no '{manifest['configuration']}' configuration", path=str(folder))
    name = checkpoint or manifest.get("checkpoint", "checkpoint_final.pth")
    if checkpoint is not None and checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint '{checkpoint}' is not one nnU-Net writes at the end; choose "
                         f"{' or '.join(CHECKPOINTS)}", path=str(folder))
    checkpoints = []
    for fold in choose_folds(list(manifest.get("folds", ["all"])), folds, folder):
        path = folder / f"fold_{fold}" / name
        if not path.is_file():
            raise InputError(f"the model has no {name} for fold {fold}; training did not finish (resume it) or "
                             "the folder is incomplete", path=str(path))
        checkpoints.append(path)
    return ModelInfo(folder, manifest, schema, dataset_json, checkpoints, warnings)


def load_predictor(info: ModelInfo, device: str = "auto", use_mirroring: bool = True, tile_step_size: float = 0.5):
    """nnU-Net's own predictor (sliding window, Gaussian weighting, mirroring, resampling) for this model.
    ``tile_step_size``: the step between tiles as a fraction of the patch size, 0 < s <= 1 (nnU-Net's
    ``-step_size``, default 0.5; 1: no overlap, fastest). Raises InputError for a step outside that range."""
    if not 0 < float(tile_step_size) <= 1:
        raise InputError(f"step size {tile_step_size} is outside 0 < s <= 1 (a fraction of the patch size; nnU-Net's "
                         "default 0.5, 1 = tiles without overlap)")
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from backsplit.inference.tiles import progress_predictor_class  # nnUNetPredictor reporting sliding-window tiles
    from backsplit.training.pretrained import check_weights_fit, checkpoint_weights

    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        import os

        # all cores, unless OMP_NUM_THREADS says otherwise (a SLURM allocation, a shared machine: with more threads
        # than free cores torch's threads wait on each other; measured here 0.12 s vs 1-10 s per tile, 1 vs 2 threads
        # on 2 busy cores)
        if not os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            torch.set_num_threads(usable_cpu_count())
    plans = PlansManager(json.loads((info.folder / "plans.json").read_text(encoding="utf-8")))
    configuration = plans.get_configuration(info.configuration)
    label_manager = plans.get_label_manager(info.dataset_json)
    parameters, mirror_axes = [], None
    for path in info.checkpoints:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
            raise InputError(f"the checkpoint cannot be read ({type(exc).__name__}: {exc})", path=str(path)) from None
        parameters.append(checkpoint_weights(checkpoint, path))   # InputError: a bare state dict, not a checkpoint
        mirror_axes = checkpoint.get("inference_allowed_mirroring_axes", mirror_axes)
    heads = [v for k, v in parameters[0].items() if ".seg_layers." in k and k.endswith(".weight")]
    if heads and heads[-1].shape[0] != label_manager.num_segmentation_heads:
        raise InputError(f"the network predicts {heads[-1].shape[0]} classes but the manifest and dataset.json name "
                         f"{label_manager.num_segmentation_heads}; the manifest does not match the network",
                         path=str(info.folder))
    network = nnUNetTrainer.build_network_architecture(plans, configuration, len(info.channel_names),
                                                       label_manager.num_segmentation_heads, False)
    network_state = network.state_dict()
    for path, weights in zip(info.checkpoints, parameters):
        check_weights_fit(network_state, weights, path, "the checkpoint was trained with another plans.json "
                          "or configuration; copy the model folder whole (plans.json with its fold_* checkpoints)")
    predictor_class = progress_predictor_class()
    predictor = predictor_class(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans, configuration, parameters, info.dataset_json,
                                    info.manifest.get("trainer", "nnUNetTrainer"), mirror_axes)
    return predictor
