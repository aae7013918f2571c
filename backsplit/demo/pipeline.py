"""The demo pipeline, end to end, on the shipped demo cases (``backsplit demo`` parses its options and calls
``run_demo``): write the cases as a user's files, export the BackSplit dataset, its binary twin and a held-out
reference dataset, train both models side by side, predict the held-out cases with both, evaluate and compare.

Every line the pipeline prints goes through ``say`` (default ``print``, stdout); progress bars go to stderr.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from backsplit.datasets.export import ExportRequest, ExportResult, export_dataset
from backsplit.datasets.layout import read_dataset_json
from backsplit.demo.cases import DEMO_COLORS, DEMO_SUPPORTS, DEMO_TARGETS, demo_label_files, write_demo_case_files
from backsplit.errors import InputError, OutputError
from backsplit.evaluation.compare import comparison_picture, comparison_table, slice_view_for_case
from backsplit.evaluation.evaluate import evaluate_folders, write_evaluation
from backsplit.inference.files import discover_inputs, predict_files
from backsplit.io.readers import cases_from_folder
from backsplit.labels.schema import LabelSchema
from backsplit.runtime.progress import TextProgressBar
from backsplit.training.follow import follow as follow_in_terminal
from backsplit.training.options import TrainOptions
from backsplit.training.process import TrainingProcess

TRAIN_ID, TEST_ID = 501, 503
EARLIER_DEMO = ("cases", "test-cases", "nnUNet_raw")
DEMO_FOLDERS = ("cases", "test-cases", "nnUNet_raw", "work", "predictions", "evaluation")

Say = Callable[[str], None]


@dataclass
class DemoSettings:
    """What ``backsplit demo`` asks for (its options, same defaults). ``batch_size`` 0 means as planned;
    ``stop_after`` is None, "export" or "train"."""
    out: Path = Path("demo-output")
    cases: int = 12
    test_cases: int = 4
    epochs: int = 8
    iterations: int = 100
    batch_size: int = 12
    configuration: str = "2d"
    device: str = "auto"
    seed: int = 0
    overwrite: bool = False
    stop_after: Optional[str] = None


def check_demo_settings(settings: DemoSettings) -> None:
    """Raise InputError for case counts the shipped cases cannot give, OutputError when ``out`` holds an earlier
    demo and ``overwrite`` is off; checked before any file is written."""
    available = len(demo_label_files())
    if settings.cases + settings.test_cases > available:
        raise InputError(f"only {available} demo cases are shipped; ask for at most {available} training + test cases")
    if settings.cases < 1 or settings.test_cases < 1:
        raise InputError(f"--cases {settings.cases} --test-cases {settings.test_cases}: the demo needs at least 1 of "
                         "each (defaults 12 and 4)")
    out = Path(settings.out)
    earlier = [sub for sub in EARLIER_DEMO if (out / sub).exists()]
    if earlier and not settings.overwrite:   # nothing of the earlier demo changes
        raise OutputError(f"'{out}' already holds a demo ({', '.join(s + '/' for s in earlier)}); add --overwrite "
                          "to replace it, or choose another --out")


def write_cases(settings: DemoSettings, say: Say = print) -> None:
    """``out/cases`` (training) and ``out/test-cases`` (held out): CT .nii.gz + .seg.nrrd per case."""
    out = Path(settings.out)
    if settings.overwrite:
        for sub in DEMO_FOLDERS:
            shutil.rmtree(out / sub, ignore_errors=True)
    say(f"[1] writing {settings.cases} training and {settings.test_cases} held-out demo cases (synthetic CT from "
        f"KiTS23 label maps) to {out}")
    written = write_demo_case_files(out / "all-cases", settings.cases + settings.test_cases, settings.seed)
    for index, (image, seg) in enumerate(written):
        folder = out / ("cases" if index < settings.cases else "test-cases")
        folder.mkdir(parents=True, exist_ok=True)
        image.replace(folder / image.name)
        seg.replace(folder / seg.name)
    shutil.rmtree(out / "all-cases", ignore_errors=True)


def export_demo(settings: DemoSettings, say: Say = print) -> tuple[ExportResult, ExportResult]:
    """Export the training cases (BackSplit dataset + binary twin) and the held-out reference dataset."""
    out = Path(settings.out)
    raw = out / "nnUNet_raw"
    request = ExportRequest(out_root=raw, dataset_id=TRAIN_ID, dataset_name="DemoKidneyCyst",
                            targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                            overwrite=settings.overwrite)
    say(f"[2] exporting: target {list(DEMO_TARGETS)}, support structures {list(DEMO_SUPPORTS)}")
    result = export_dataset(cases_from_folder(out / "cases"), request, progress=TextProgressBar())
    say("\n".join("    " + line for line in result.summary_lines()))
    labels = read_dataset_json(result.dataset_dir)["labels"]
    say(f"    labels: {labels}")
    test = export_dataset(cases_from_folder(out / "test-cases"),
                          ExportRequest(out_root=raw, dataset_id=TEST_ID, dataset_name="DemoKidneyCystTest",
                                        targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                                        binary_twin=False, overwrite=settings.overwrite))
    say(f"    held-out reference dataset: {test.dataset_dir}")
    return result, test


def train_demo(settings: DemoSettings, dataset_dir: Path, say: Say = print,
               follow: Optional[Callable[[object], int]] = None) -> tuple[int, list[Path]]:
    """Train the BackSplit model and its binary twin side by side in a child process, followed by ``follow``
    (default ``backsplit.training.follow.follow``: a progress bar on stderr). Returns (exit code, [BackSplit
    model, binary model]); the list is empty when the code is not 0."""
    say(f"[3] training BackSplit and binary models side by side: {settings.configuration}, {settings.epochs} epochs "
        f"x {settings.iterations} iterations, batch size {settings.batch_size or 'as planned'}, target-aware "
        f"sampling, device {settings.device}")
    options = TrainOptions(dataset_dir=dataset_dir, work_dir=Path(settings.out) / "work",
                           configuration=settings.configuration, fold="all", epochs=settings.epochs,
                           iterations_per_epoch=settings.iterations,
                           val_iterations_per_epoch=max(2, settings.iterations // 5), device=settings.device,
                           with_binary=True, seed=settings.seed, save_every=max(1, settings.epochs // 4),
                           batch_size=settings.batch_size or None, extra={"overwrite": True})
    process = TrainingProcess(options).start()
    code = (follow or follow_in_terminal)(process)
    if code != 0:
        return code, []
    models = [Path(m) for m in process.result_models]
    say(f"    BackSplit model: {models[0]}\n    binary model:    {models[1]}")
    return 0, models


def predict_demo(settings: DemoSettings, test_dir: Path, models: dict[str, Path], say: Say = print) -> list:
    """Predict the held-out cases with each model (``models``: name -> model folder) into ``out/predictions/<name>``;
    returns the discovered inputs (``backsplit.inference.files.InputCase`` list)."""
    out = Path(settings.out)
    say(f"[4] predicting {settings.test_cases} held-out cases with both models")
    inputs = discover_inputs(test_dir / "imagesTr", 1)
    timings = {}
    for name, model in models.items():
        events = []

        def keep(event, events=events):
            events.append(event)

        predict_files(model, inputs, out / "predictions" / name, device=settings.device, overwrite=True,
                      progress=keep)
        timings[name] = sum(e.data.get("seconds", 0.0) for e in events if e.stage == "predict")
        say(f"    {name}: {timings[name]:.1f} s for {len(inputs)} cases")
    say(f"    BackSplit / binary prediction time: {timings['backsplit'] / max(timings['binary'], 1e-9):.2f}")
    return inputs


def evaluate_demo(settings: DemoSettings, test_dir: Path, models: dict[str, Path], inputs: list,
                  say: Say = print) -> Path:
    """Evaluate both models' predictions against the held-out references; write ``out/evaluation`` (per-model
    CSV, comparison.txt, comparison.png) and return the picture's path."""
    out = Path(settings.out)
    say("[5] evaluating against the held-out references")
    reference_schema = LabelSchema.from_json(read_dataset_json(test_dir)["backsplit"]["schema"])
    rows = {}
    for name, model in models.items():
        manifest = json.loads((model / "backsplit_model.json").read_text(encoding="utf-8"))
        schema = LabelSchema.from_json(manifest["schema"])
        rows[name] = evaluate_folders(out / "predictions" / name, test_dir / "labelsTr", schema, 2.0,
                                      reference_schema)
        write_evaluation(rows[name], out / "evaluation" / f"{name}.csv")
    table = comparison_table(rows["binary"], rows["backsplit"], ["binary", "BackSplit"])
    case = inputs[0].case_id
    view = slice_view_for_case(case, inputs[0].images[0], test_dir / "labelsTr" / f"{case}.nii.gz",
                               out / "predictions" / "binary" / f"{case}.nii.gz",
                               out / "predictions" / "backsplit" / f"{case}.nii.gz", 1, 1)
    picture = comparison_picture(rows["binary"], rows["backsplit"], ["binary", "BackSplit"],
                                 out / "evaluation" / "comparison.png", view)
    (out / "evaluation" / "comparison.txt").write_text(table + "\n", encoding="utf-8")
    say(table)
    say(f"    picture: {picture}")
    return picture


def run_demo(settings: DemoSettings, say: Say = print, follow: Optional[Callable[[object], int]] = None) -> int:
    """The whole demo (or up to ``settings.stop_after``). Returns 0, or the training's exit code when it failed or
    was cancelled. Raises InputError / OutputError (see ``check_demo_settings``) before writing anything, and the
    export's, training's and prediction's own errors."""
    check_demo_settings(settings)
    write_cases(settings, say)
    result, test = export_demo(settings, say)
    if settings.stop_after == "export":
        return 0
    code, trained = train_demo(settings, result.dataset_dir, say, follow)
    if code != 0:
        return code
    if settings.stop_after == "train":
        return 0
    models = {"binary": trained[1], "backsplit": trained[0]}
    inputs = predict_demo(settings, test.dataset_dir, models, say)
    evaluate_demo(settings, test.dataset_dir, models, inputs, say)
    say("    (synthetic images, short CPU training: see README for what these numbers mean)")
    return 0
