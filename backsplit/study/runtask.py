"""Run one unit of a study plan: ``python -m backsplit.study.runtask STUDY_DIR UNIT_ID``.

The only code that executes work; both executors (local, SLURM) start this module. It calls the engine:
``backsplit.study.derive`` (export code) and ``backsplit.training.prepare.prepare`` for a prepare unit;
``backsplit.training.worker.run`` (training), ``backsplit.inference.files.predict_files`` (prediction) and
``backsplit.evaluation.evaluate`` (metrics) for a run unit. Steps already done with the planned content hash are
skipped; an interrupted training continues from its last checkpoint. Progress goes to stdout (the unit's log.txt);
the outcome to ``<study>/units/<unit>/status.json`` (keys: unit, ok, returncode, message, seconds, host, hashes).
The unit ends as every BackSplit worker does (``runtime.workerprocess.finish_job``): exit code 0 done, 1 the user's
error (a full disk and out of memory included), 2 unexpected error, with a final 'done' or 'error' event.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import read_dataset_json
from backsplit.errors import InputError
from backsplit.runtime.devices import usable_cpu_count
from backsplit.runtime.exits import EXIT_UNEXPECTED
from backsplit.runtime.progress import ProgressEvent, Stage, format_event_line
from backsplit.runtime.workerprocess import finish_job
from backsplit.study.curves import unit_curve
from backsplit.study.markers import clear_markers, read_marker, step_done, write_marker
from backsplit.study.plan import EVALUATE, PREDICT, PREPARE, TRAIN, Plan, Unit
from backsplit.training.environment import nnunet_environment
from backsplit.training.options import TrainOptions
from backsplit.training.paths import preprocessed_folder as work_preprocessed_folder
from backsplit.training.paths import results_folder

CURVE_FIELDS = ["epoch", "train_loss", "val_loss", "target_pseudo_dice", "ema_fg_dice", "learning_rate", "epoch_time",
                "pseudo_dice_all"]


MAX_PROCESSES = 8     # nnU-Net's preprocessing pools of a unit: more rarely helps and costs memory


def emit(stage: str, message: str, **data) -> None:
    """Print one progress event (``stage``, ``message``, ``data``) on stdout for the unit's log."""
    sys.stdout.write(format_event_line(ProgressEvent(stage, message, None, None, data)) + "\n")
    sys.stdout.flush()


def unit_dir(plan: Plan, unit: Unit) -> Path:
    """``<study>/units/<unit id>``: the unit's log, status, markers, work folder and results."""
    return Path(plan.study_dir) / "units" / unit.id


def processes() -> int:
    """Processes for nnU-Net's preprocessing in a unit: the usable cores (``runtime.devices.usable_cpu_count``:
    the CPU affinity, e.g. a SLURM allocation), at most ``MAX_PROCESSES``."""
    return max(1, min(MAX_PROCESSES, usable_cpu_count()))


def _set_environment(raw_dir: Path, work_dir: Path) -> None:
    """nnU-Net reads its variables when first imported: set them in this process before that."""
    os.environ.update(nnunet_environment(raw_dir, work_dir, augmentation_workers=0, processes=processes()))


def model_dir(plan: Plan, unit: Unit) -> Path:
    """Where the unit's trained model folder is (nnU-Net's output folder with backsplit_model.json)."""
    from backsplit.training.colab.spec import trainer_name

    trainer = trainer_name(unit.spec.get("context", "none"))      # the learned-context arm has its own trainer
    return results_folder(unit_dir(plan, unit) / "work", Path(unit.spec["dataset_dir"]).name,
                          plan.settings.configuration, trainer)


def preprocessed_folder(plan: Plan, prepare: Unit) -> Path:
    """The nnU-Net preprocessed folder a prepare unit writes (``<its work folder>/nnUNet_preprocessed/<dataset>``)."""
    return work_preprocessed_folder(Path(prepare.spec["work_dir"]), Path(prepare.spec["dataset_dir"]).name)


# ---- prepare --------------------------------------------------------------------------------------------------

def run_prepare(plan: Plan, unit: Unit) -> None:
    from backsplit.datasets.folder import load_dataset_folder

    spec, folder = unit.spec, unit_dir(plan, unit)
    content_hash = unit.hashes[PREPARE]
    if step_done(folder, PREPARE, content_hash):
        emit("prepare", f"{unit.id}: already prepared (content hash {content_hash})")
        return
    dataset_dir, work_dir = Path(spec["dataset_dir"]), Path(spec["work_dir"])
    if spec["dataset"] == "derived":
        from backsplit.study.arms import arm_type
        from backsplit.study.derive import DeriveRequest, derive_dataset

        emit("prepare", f"{unit.id}: deriving the dataset of arm '{spec['arm']}'")
        derive = arm_type(spec["kind"]).derive or derive_dataset
        dataset_dir = Path(derive(DeriveRequest(Path(spec["source_dir"]), spec["recipe"], dataset_dir)))
    _set_environment(dataset_dir.parent, work_dir)
    from backsplit.training.prepare import prepare  # after _set_environment: nnU-Net reads its variables once

    plans_from = None
    if spec.get("plans_from"):
        source = plan.unit(spec["plans_from"])
        plans_file = preprocessed_folder(plan, source) / "nnUNetPlans.json"
        if not plans_file.is_file():
            raise InputError(f"the reference plans are missing (unit {source.id} has not run)", path=str(plans_file))
        plans_from = json.loads(plans_file.read_text(encoding="utf-8"))
    dataset = load_dataset_folder(dataset_dir)
    options = TrainOptions(dataset_dir=dataset_dir, work_dir=work_dir, configuration=plan.settings.configuration,
                           preprocess_processes=processes())
    prepare(dataset, options, plans_from)
    target = preprocessed_folder(plan, unit)
    splits = target / "splits_final.json"
    splits.write_text(json.dumps(plan.splits, indent=1), encoding="utf-8")
    write_marker(folder, PREPARE, content_hash, [target / "nnUNetPlans.json", splits,
                                                target / f"backsplit_prepared_{plan.settings.configuration}.json"])
    emit("prepare", f"{unit.id}: prepared")


# ---- run: train, predict, evaluate ----------------------------------------------------------------------------

def _link_preprocessed(plan: Plan, unit: Unit, work: Path) -> None:
    source = preprocessed_folder(plan, plan.unit(unit.spec["prepare"]))
    link = work / "nnUNet_preprocessed" / source.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == source:
            return
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    os.symlink(source, link, target_is_directory=True)


def run_train(plan: Plan, unit: Unit) -> None:
    folder, settings, spec = unit_dir(plan, unit), plan.settings, unit.spec
    content_hash = unit.hashes[TRAIN]
    if step_done(folder, TRAIN, content_hash):
        emit("train", f"{unit.id}: trained model reused (content hash {content_hash})")
        return
    work = folder / "work"
    started = read_marker(folder, "train-started")
    if started and started.get("hash") != content_hash:   # other inputs than the interrupted run: start over
        emit("train", f"{unit.id}: inputs changed since the earlier training; training again from scratch")
        shutil.rmtree(work, ignore_errors=True)
        clear_markers(folder, [TRAIN, PREDICT, EVALUATE])
    write_marker(folder, "train-started", content_hash)
    _link_preprocessed(plan, unit, work)
    dataset_dir = Path(spec["dataset_dir"])
    _set_environment(dataset_dir.parent, work)
    fold_dir = model_dir(plan, unit) / f"fold_{spec['fold']}"
    resume = (fold_dir / "checkpoint_latest.pth").is_file() or (fold_dir / "checkpoint_final.pth").is_file()
    pretrained = None
    if spec.get("pretrained_unit") and not resume:
        pretrained = model_dir(plan, plan.unit(spec["pretrained_unit"]))
    options = TrainOptions(dataset_dir=dataset_dir, work_dir=work, configuration=settings.configuration,
                           fold=str(spec["fold"]), epochs=settings.epochs,
                           iterations_per_epoch=settings.iterations_per_epoch,
                           val_iterations_per_epoch=settings.val_iterations_per_epoch, device=settings.device,
                           sampling=spec["sampling"], pretrained_model=pretrained, initial_lr=spec.get("initial_lr"),
                           context=spec.get("context", "none"),
                           support_schedule=spec.get("loss"), support_head=spec.get("support_head"),
                           head_init=spec.get("head_init") if pretrained is not None else None,
                           resume=resume, seed=int(spec["seed"]), batch_size=settings.batch_size,
                           final_validation=False,   # the study evaluates its held-out fold itself
                           num_gpus=getattr(settings, "num_gpus", 1),
                           save_every=max(1, min(settings.save_every, settings.epochs)),
                           preprocess_processes=processes())
    emit("train", f"{unit.id}: {'resuming' if resume else 'training'} arm '{spec['arm']}' fold {spec['fold']} "
                  f"seed {spec['seed']}")
    from backsplit.training.worker import run as train  # after _set_environment (see there)

    train(options)
    model = model_dir(plan, unit)
    write_marker(folder, TRAIN, content_hash, [fold_dir / "checkpoint_final.pth", model / "backsplit_model.json"])


def run_predict(plan: Plan, unit: Unit) -> None:
    from backsplit.inference.files import InputCase, predict_files

    folder, content_hash = unit_dir(plan, unit), unit.hashes[PREDICT]
    if step_done(folder, PREDICT, content_hash):
        emit("predict", f"{unit.id}: predictions reused")
        return
    source = Path(plan.source)
    meta = read_dataset_json(source)
    ending, channels = meta["file_ending"], len(meta["channel_names"])
    inputs = [InputCase(c, [source / "imagesTr" / f"{c}_{k:04d}{ending}" for k in range(channels)])
              for c in unit.spec["test_cases"]]
    out = folder / "pred"
    shutil.rmtree(out, ignore_errors=True)

    def show(event: ProgressEvent) -> None:
        sys.stdout.write(format_event_line(event) + "\n")

    predict_files(model_dir(plan, unit), inputs, out, device=plan.settings.device, overwrite=True,
                  use_mirroring=plan.settings.mirroring, progress=show)
    write_marker(folder, PREDICT, content_hash,
                 [out / "summary.csv"] + [out / f"{c.case_id}.nii.gz" for c in inputs])


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_evaluate(plan: Plan, unit: Unit) -> None:
    from backsplit.evaluation.evaluate import evaluate_folders, schema_from_model_or_dataset, write_evaluation
    from backsplit.io.readers import read_image
    from backsplit.study.lesions import lesion_table

    folder, content_hash = unit_dir(plan, unit), unit.hashes[EVALUATE]
    if step_done(folder, EVALUATE, content_hash):
        emit("evaluate", f"{unit.id}: evaluation reused")
        return
    source, pred, out = Path(plan.source), folder / "pred", folder / "eval"
    model_schema = schema_from_model_or_dataset(model_dir(plan, unit))
    reference_schema = schema_from_model_or_dataset(source)
    rows = evaluate_folders(pred, source / "labelsTr", model_schema, plan.settings.nsd_tolerance_mm, reference_schema,
                            plan.settings.lesion_match)
    cases_csv, _ = write_evaluation(rows, out / "cases.csv")
    lesion_rows = []
    for case in unit.spec["test_cases"]:
        predicted, geometry = read_image(pred / f"{case}.nii.gz", case, "prediction")
        reference, _ = read_image(source / "labelsTr" / f"{case}.nii.gz", case, "reference")
        for spec in model_schema.targets:
            for row in lesion_table(reference == reference_schema.value_of(spec.name),
                                    predicted == model_schema.value_of(spec.name), geometry.voxel_volume_ml()):
                lesion_rows.append({"case_id": case, "target": spec.name, **row})
    lesions_csv = _write_csv(out / "lesions.csv", ["case_id", "target", "kind", "volume_ml", "matched_ml", "matched"],
                             lesion_rows)
    curve_csv = _write_csv(out / "curve.csv", CURVE_FIELDS,     # the log's events, else the checkpoint's logging
                           unit_curve(folder / "log.txt", model_dir(plan, unit)))
    write_marker(folder, EVALUATE, content_hash, [cases_csv, lesions_csv, curve_csv, pred / "summary.csv"])


def run_unit(plan: Plan, unit: Unit) -> None:
    """Run every step of ``unit`` that is not done yet (see the module doc); raises the step's error."""
    if unit.kind == "prepare":
        run_prepare(plan, unit)
        return
    run_train(plan, unit)
    run_predict(plan, unit)
    run_evaluate(plan, unit)


def write_status(plan: Plan, unit: Unit, ok: bool, code: int, message: str, started: float) -> None:
    """Write ``<unit>/status.json`` atomically (the executors read it: ``executors.read_result``); the format is
    kept as studies written earlier have it."""
    path = unit_dir(plan, unit) / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("status.json.partial")
    tmp.write_text(json.dumps({"unit": unit.id, "ok": ok, "returncode": code, "message": message,
                               "seconds": round(time.time() - started, 1), "host": os.uname().nodename,
                               "hashes": unit.hashes}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m backsplit.study.runtask STUDY_DIR UNIT_ID``: run the unit, write its status.json, end with a
    'done' or 'error' event; the exit status of the shared worker protocol (0, 1 the user's error, 2 unexpected;
    ``runtime.exits``). Wrong arguments: a usage line, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m backsplit.study.runtask STUDY_DIR UNIT_ID", file=sys.stderr)
        return EXIT_UNEXPECTED
    plan = Plan.read(Path(argv[0]) / "plan.json")
    unit = plan.unit(argv[1])
    started = time.time()
    (unit_dir(plan, unit) / "status.json").unlink(missing_ok=True)

    def job() -> ProgressEvent:
        run_unit(plan, unit)
        return ProgressEvent(Stage.DONE, f"{unit.id}: done in {time.time() - started:.0f} s")

    end = finish_job(job, disk_full="free space or choose another study folder (finished steps are kept and "
                                    "skipped when the study runs again)")
    if end.ok:
        write_status(plan, unit, True, end.code, "done", started)
    else:
        write_status(plan, unit, False, end.code, end.event.message, started)
        end.event.message = f"{unit.id}: {end.event.message}"
    emit(end.event.stage, end.event.message, **end.event.data)
    return end.code


if __name__ == "__main__":
    sys.exit(main())
