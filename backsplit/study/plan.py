"""The study plan: pure data. Arms x folds x seeds become units with content hashes; nothing here runs anything.

Units (what an executor starts; ``python -m backsplit.study.runtask STUDY UNIT``):

* ``prepare-<dataset>``: derive the arm's dataset if it needs one, plan and preprocess it with nnU-Net (every
  dataset gets the BackSplit dataset's plans: same network, same intensity normalisation), write the study's folds.
* ``<arm>-fold<k>-seed<s>``: train the arm on the other folds, predict fold k's cases, evaluate them.

Each step has a content hash over everything that decides its result: dataset file contents (not times or paths),
the derivation recipe, the plans' source, the folds, the training settings, the seed, the upstream model, the
held-out images and references, the evaluation settings. A step whose recorded hash equals the planned one is
reused; any change of an input changes exactly the hashes downstream of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from backsplit.errors import InputError
from backsplit.evaluation.metrics import parse_lesion_match
from backsplit.study.arms import BINARY, DERIVED, SOURCE, TWIN, Arm
from backsplit.study.hashing import stable_hash
from backsplit.training.options import CONFIGURATIONS, SAMPLINGS, check_options

SPLIT_SEED = 12345        # nnU-Net's generate_crossval_split seed: the same folds nnU-Net would make
DERIVE_VERSION = 1        # bump when derive.py changes what a recipe writes
EVALUATION_VERSION = 1    # bump when the evaluate step's outputs change
PREPARE, TRAIN, PREDICT, EVALUATE = "prepare", "train", "predict", "evaluate"


@dataclass(frozen=True)
class StudySettings:
    configuration: str = "2d"
    folds: int = 5
    seeds: tuple[int, ...] = (1,)
    epochs: int = 50
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    batch_size: Optional[int] = None
    sampling: str = "target"                # arms that do not set their own
    device: str = "auto"                    # not part of any hash
    mirroring: bool = True                  # test-time mirroring at prediction
    nsd_tolerance_mm: float = 2.0
    lesion_match: str = "overlap"           # lesion-wise matching (metrics.parse_lesion_match); hashed unless overlap
    sensitivity: float = 0.95               # the case rule's calibration target (training folds only)
    save_every: int = 5                     # epochs between resume checkpoints (not part of any hash)
    num_gpus: int = 1                       # GPUs per training (> 1: PyTorch DDP); in the hash only when > 1

    def validate(self, n_cases: int) -> None:
        if self.configuration not in CONFIGURATIONS:
            raise InputError(f"configuration '{self.configuration}' is not supported; choose "
                             f"{' or '.join(CONFIGURATIONS)}")
        if self.sampling not in SAMPLINGS:
            raise InputError(f"sampling '{self.sampling}' is unknown; choose target or stock")
        if not 2 <= self.folds <= 5:
            raise InputError(f"--folds {self.folds}: a study uses 2 to 5 cross-validation folds")
        if n_cases < max(5, self.folds):
            raise InputError(f"the dataset has {n_cases} cases; a study needs at least 5 (nnU-Net's fold training) "
                             "and at least one per fold")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise InputError("give at least one seed, each once (e.g. --seeds 1,2,3)")
        for name in ("epochs", "iterations_per_epoch", "val_iterations_per_epoch"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be at least 1")
        if not 0 < self.sensitivity <= 1:
            raise InputError(f"--sensitivity {self.sensitivity:g} is out of range; the calibration sensitivity must be "
                             "above 0 and at most 1 (e.g. 0.95)")
        parse_lesion_match(self.lesion_match)      # InputError naming the allowed forms
        if self.num_gpus != 1:
            check_options(self.num_gpus, self.device, self.batch_size, None)

    def training_json(self) -> dict:
        return {"configuration": self.configuration, "epochs": self.epochs,
                "iterations_per_epoch": self.iterations_per_epoch,
                "val_iterations_per_epoch": self.val_iterations_per_epoch, "batch_size": self.batch_size,
                "sampling": self.sampling, **({"num_gpus": self.num_gpus} if self.num_gpus > 1 else {})}

    def to_json(self) -> dict:
        raw = asdict(self)
        raw["seeds"] = list(self.seeds)
        return raw

    @staticmethod
    def from_json(raw: dict) -> "StudySettings":
        raw = dict(raw)
        raw["seeds"] = tuple(raw.get("seeds", (1,)))
        return StudySettings(**raw)


@dataclass(frozen=True)
class DatasetScan:
    """What the plan needs of an exported dataset: where it is, its cases and the hashes of its files."""
    folder: str
    case_ids: tuple[str, ...]
    meta_hash: str                            # dataset.json without its creation time
    image_hashes: dict = field(hash=False)    # case -> [hash of channel 0, 1, ...]
    label_hashes: dict = field(hash=False)    # case -> hash of the label map
    targets: tuple[str, ...] = ()
    supports: tuple[str, ...] = ()
    negative_cases: tuple[str, ...] = ()

    @property
    def content_hash(self) -> str:
        return stable_hash({"meta": self.meta_hash, "images": self.image_hashes, "labels": self.label_hashes})


@dataclass
class Unit:
    id: str
    kind: str                                  # prepare | run
    needs: list[str]
    hashes: dict[str, str]                     # step -> content hash
    spec: dict                                 # JSON-able: everything runtask needs


@dataclass
class Plan:
    study_dir: str
    source: str
    twin: str
    settings: StudySettings
    arms: list[dict]                           # [{"name", "kind", ...}] in report order (binary first)
    splits: list[dict]                         # [{"train": [...], "val": [...]}] per fold
    units: list[Unit]

    def unit(self, unit_id: str) -> Unit:
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        raise InputError(f"the study plan has no unit '{unit_id}'", path=str(Path(self.study_dir) / "plan.json"))

    def waves(self) -> list[list[Unit]]:
        """Units grouped so that every unit's needs are in earlier groups: the preparations, then the runs (all arms
        together, fold by fold, so that an interrupted or partly failed study still has paired folds), then runs
        that start from another arm's model (fine-tuning), ..."""
        level: dict[str, int] = {}
        by_id = {u.id: u for u in self.units}
        prepared = 0

        def depth(unit: Unit) -> int:
            if unit.id not in level:
                below = max((depth(by_id[n]) for n in unit.needs), default=-1)
                level[unit.id] = 1 + (max(below, prepared - 1) if unit.kind == "run" else below)
            return level[unit.id]

        prepared = 1 + max((depth(u) for u in self.units if u.kind == "prepare"), default=-1)
        arm_order = {a["name"]: i for i, a in enumerate(self.arms)}
        groups: dict[int, list[Unit]] = {}
        for unit in self.units:
            groups.setdefault(depth(unit), []).append(unit)
        for units in groups.values():
            units.sort(key=lambda u: (u.kind != "prepare", u.spec.get("fold", 0), u.spec.get("seed", 0),
                                      arm_order.get(u.spec.get("arm"), 0)))
        return [groups[k] for k in sorted(groups)]

    def to_json(self) -> dict:
        return {"study_dir": self.study_dir, "source": self.source, "twin": self.twin,
                "settings": self.settings.to_json(), "arms": self.arms, "splits": self.splits,
                "units": [asdict(u) for u in self.units]}

    @staticmethod
    def from_json(raw: dict) -> "Plan":
        return Plan(raw["study_dir"], raw["source"], raw["twin"], StudySettings.from_json(raw["settings"]),
                    raw["arms"], raw["splits"], [Unit(**u) for u in raw["units"]])

    def write(self, path: Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @staticmethod
    def read(path: Path) -> "Plan":
        path = Path(path)
        if not path.is_file():
            raise InputError("no study plan here (plan.json); start the study with backsplit study", path=str(path))
        return Plan.from_json(json.loads(path.read_text(encoding="utf-8")))


def crossval_splits(case_ids: Sequence[str], folds: int) -> list[dict]:
    """K-fold split of the sorted case ids, as nnU-Net makes it (scikit-learn KFold, shuffled, seed 12345)."""
    import numpy as np
    from sklearn.model_selection import KFold  # the splitter nnU-Net itself uses

    ids = np.array(sorted(case_ids))
    splits = []
    for train, val in KFold(n_splits=folds, shuffle=True, random_state=SPLIT_SEED).split(ids):
        splits.append({"train": [str(c) for c in ids[train]], "val": [str(c) for c in ids[val]]})
    return splits


def _dataset_hash(arm: Arm, source: DatasetScan, twin: DatasetScan) -> str:
    if arm.dataset == SOURCE:
        return source.content_hash
    if arm.dataset == TWIN:
        return twin.content_hash
    return stable_hash({"source": source.content_hash, "kind": arm.kind, "recipe": arm.recipe,
                        "derive_version": DERIVE_VERSION})


def prepare_id(arm: Arm) -> str:
    return {SOURCE: "prepare-source", TWIN: "prepare-twin"}.get(arm.dataset, f"prepare-{arm.slug}")


def run_id(arm: Arm, fold: int, seed: int) -> str:
    return f"{arm.slug}-fold{fold}-seed{seed}"


def build_plan(study_dir: Path, source: DatasetScan, twin: DatasetScan, arms: Sequence[Arm],
               settings: StudySettings) -> Plan:
    """The plan of a study (pure: same inputs, same plan and hashes). ``arms``: binary first (see parse_arms)."""
    settings.validate(len(source.case_ids))
    if tuple(sorted(twin.case_ids)) != tuple(sorted(source.case_ids)):
        raise InputError("the binary twin does not hold the same cases as the BackSplit dataset; export both again",
                         path=twin.folder)
    if not arms or arms[0].name != BINARY:
        raise ValueError("arms must start with the binary arm (use parse_arms)")
    splits = crossval_splits(source.case_ids, settings.folds)
    study_dir = Path(study_dir)
    units: list[Unit] = []
    prepare_hashes: dict[str, str] = {}
    source_prepare = {"dataset": source.content_hash, "plans": "self", "configuration": settings.configuration,
                      "splits": splits}
    prepare_hashes["prepare-source"] = stable_hash(source_prepare)
    for arm in [Arm("backsplit", "backsplit", SOURCE)] + list(arms):
        uid = prepare_id(arm)
        if any(u.id == uid for u in units):
            continue
        if uid != "prepare-source":
            prepare_hashes[uid] = stable_hash({"dataset": _dataset_hash(arm, source, twin),
                                               "plans": prepare_hashes["prepare-source"],
                                               "configuration": settings.configuration, "splits": splits})
        if arm.dataset == DERIVED:
            dataset_dir = str(study_dir / "prepared" / uid / "raw" / f"{Path(source.folder).name}-{arm.slug}")
        else:
            dataset_dir = source.folder if arm.dataset == SOURCE else twin.folder
        units.append(Unit(uid, "prepare", [] if uid == "prepare-source" else ["prepare-source"],
                          {PREPARE: prepare_hashes[uid]},
                          {"dataset": arm.dataset, "arm": arm.name, "kind": arm.kind, "recipe": arm.recipe,
                           "dataset_dir": dataset_dir, "source_dir": source.folder,
                           "work_dir": str(study_dir / "prepared" / uid),
                           "plans_from": None if uid == "prepare-source" else "prepare-source"}))
    prepare_dirs = {u.id: u.spec["dataset_dir"] for u in units}
    train_hashes: dict[str, str] = {}
    for arm in arms:
        if settings.num_gpus > 1 and arm.train_context:   # refused now rather than in every unit's training
            raise InputError(f"arm '{arm.name}' (learned context) cannot run with --num-gpus {settings.num_gpus}: "
                             "its task generator is not synchronised across GPUs; remove it from --arms, or run the "
                             "study with --num-gpus 1 (as a study of its own: --num-gpus above 1 changes the other "
                             "arms' content hashes)")
        for fold, split in enumerate(splits):
            for seed in settings.seeds:
                uid = run_id(arm, fold, seed)
                needs = [prepare_id(arm)]
                pretrained = None
                if arm.pretrained_arm:
                    pretrained_arm = next((a for a in arms if a.name == arm.pretrained_arm), None)
                    if pretrained_arm is None:
                        raise InputError(f"arm '{arm.name}' starts from arm '{arm.pretrained_arm}', which is not in "
                                         "the study")
                    pretrained = run_id(pretrained_arm, fold, seed)
                    needs.append(pretrained)
                train_hash = stable_hash({"prepare": prepare_hashes[prepare_id(arm)], "arm": arm.training_json(),
                                          "settings": settings.training_json(), "fold": fold, "seed": seed,
                                          "pretrained": train_hashes.get(pretrained) if pretrained else None})
                train_hashes[uid] = train_hash
                val = split["val"]
                predict_hash = stable_hash({"train": train_hash, "mirroring": settings.mirroring,
                                            "images": {c: source.image_hashes[c] for c in val}})
                evaluate_hash = stable_hash({"predict": predict_hash, "nsd": settings.nsd_tolerance_mm,
                                             "references": {c: source.label_hashes[c] for c in val},
                                             "version": EVALUATION_VERSION,
                                             **({"lesion_match": settings.lesion_match}   # old plans keep their hash
                                                if settings.lesion_match != "overlap" else {})})
                units.append(Unit(uid, "run", needs,
                                  {TRAIN: train_hash, PREDICT: predict_hash, EVALUATE: evaluate_hash},
                                  {"arm": arm.name, "fold": fold, "seed": seed, "dataset_dir": prepare_dirs[needs[0]],
                                   "prepare": needs[0], "pretrained_unit": pretrained, "test_cases": val,
                                   "sampling": arm.sampling or settings.sampling, "initial_lr": arm.initial_lr,
                                   "context": arm.train_context or "none",
                                   **{k: getattr(arm, k) for k in ("loss", "support_head", "head_init")
                                      if getattr(arm, k) is not None},                  # training-variant arms
                                   "unit_dir": str(study_dir / "units" / uid)}))
    arm_records = [{"name": a.name, "kind": a.kind, "dataset": a.dataset, "slug": a.slug} for a in arms]
    return Plan(str(study_dir), source.folder, twin.folder, settings, arm_records, splits, units)
