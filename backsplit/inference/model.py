"""Read a BackSplit model folder and build nnU-Net's predictor from it.

The network is built from the plans with nnU-Net's stock ``nnUNetTrainer.build_network_architecture`` and handed to
``nnUNetPredictor.manual_initialization``: no lookup of the trainer class by name, so models trained with
BackSplit's trainer (which lives outside nnunetv2) load anywhere. Checkpoints are read with
``torch.load(weights_only=False)`` as nnU-Net does: a model folder can run code, so use trusted models only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import read_dataset_json
from backsplit.errors import InputError
from backsplit.labels.schema import LabelSchema
from backsplit.runtime.devices import resolve_device, usable_cpu_count
from backsplit.training.manifest import read_manifest


@dataclass
class ModelInfo:
    folder: Path
    manifest: dict
    schema: LabelSchema
    dataset_json: dict
    checkpoints: list[Path]

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


def read_model_info(folder: Path, checkpoint: Optional[str] = None, manifest: Optional[dict] = None) -> ModelInfo:
    """Check a model folder without loading torch: manifest, dataset.json, plans, checkpoints, label agreement.
    ``manifest`` stands in for ``backsplit_model.json`` (a plain nnU-Net folder: backsplit.supports.runners)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("the model folder does not exist", path=str(folder))
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
    checkpoints = []
    for fold in manifest.get("folds", ["all"]):
        path = folder / f"fold_{fold}" / name
        if not path.is_file():
            raise InputError(f"the model has no {name} for fold {fold}; training did not finish (resume it) or "
                             "the folder is incomplete", path=str(path))
        checkpoints.append(path)
    return ModelInfo(folder, manifest, schema, dataset_json, checkpoints)


def load_predictor(info: ModelInfo, device: str = "auto", use_mirroring: bool = True, tile_step_size: float = 0.5):
    """nnU-Net's own predictor (sliding window, Gaussian weighting, mirroring, resampling) for this model."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from backsplit.inference.tiles import progress_predictor_class  # nnUNetPredictor reporting sliding-window tiles

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
        parameters.append(checkpoint["network_weights"])
        mirror_axes = checkpoint.get("inference_allowed_mirroring_axes", mirror_axes)
    heads = [v for k, v in parameters[0].items() if ".seg_layers." in k and k.endswith(".weight")]
    if heads and heads[-1].shape[0] != label_manager.num_segmentation_heads:
        raise InputError(f"the network predicts {heads[-1].shape[0]} classes but the manifest and dataset.json name "
                         f"{label_manager.num_segmentation_heads}; the manifest does not match the network",
                         path=str(info.folder))
    network = nnUNetTrainer.build_network_architecture(plans, configuration, len(info.channel_names),
                                                       label_manager.num_segmentation_heads, False)
    predictor_class = progress_predictor_class()
    predictor = predictor_class(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans, configuration, parameters, info.dataset_json,
                                    info.manifest.get("trainer", "nnUNetTrainer"), mirror_axes)
    return predictor
