"""``backsplit demo``: the main job, end to end, on the shipped demo cases (synthetic CT from real KiTS23 labels).

  1. write demo cases as a user's files (CT .nii.gz + Slicer .seg.nrrd): training cases and held-out test cases
  2. export the training cases as a BackSplit dataset (target cyst; supports tumor, kidney) and its binary twin,
     and the test cases as a reference dataset
  3. train the BackSplit model and the binary baseline side by side with identical settings (short run)
  4. predict the held-out cases with both models (lesion-only output costs nothing extra)
  5. evaluate both against the references and print the comparison; write the comparison picture

The images are synthetic, the budget is a few minutes of CPU: the numbers say what this short run reached, not what
BackSplit reaches on real CT with a full training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRAIN_ID, TEST_ID = 501, 503


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the end-to-end demo on shipped KiTS23-based synthetic cases",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="working folder (default ./demo-output)")
    p.add_argument("--cases", type=int, default=12, help="training cases (the shipped 20 minus --test-cases at most; default 12)")
    p.add_argument("--test-cases", type=int, default=4, help="held-out cases for prediction and evaluation (default 4)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    p.add_argument("--iterations", type=int, default=100, help="training iterations per epoch (default 100)")
    p.add_argument("--batch-size", type=int, default=12,
                   help="batch size (default 12: nnU-Net plans 58 slices for these small images; on a CPU, more "
                        "optimiser steps of smaller batches learn the small lesions within minutes; 0 = planned)")
    p.add_argument("--configuration", default="2d", choices=["2d", "3d_fullres"],
                   help="nnU-Net configuration (default 2d: fastest)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where to train and predict; auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the cases and the training (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in the same folder")
    p.add_argument("--stop-after", choices=["export", "train"], default=None, help="stop after this stage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shutil

    from backsplit.demo.cases import DEMO_COLORS, DEMO_SUPPORTS, DEMO_TARGETS, demo_label_files, write_demo_case_files
    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.runtime.progress import TextProgressBar
    from backsplit.io.readers import cases_from_folder

    out = Path(args.out)
    available = len(demo_label_files())
    if args.cases + args.test_cases > available:
        from backsplit.errors import InputError

        raise InputError(f"only {available} demo cases are shipped; ask for at most {available} training + test cases")
    if args.cases < 1 or args.test_cases < 1:
        from backsplit.errors import InputError

        raise InputError(f"--cases {args.cases} --test-cases {args.test_cases}: the demo needs at least 1 of each "
                         "(defaults 12 and 4)")
    earlier = [sub for sub in ("cases", "test-cases", "nnUNet_raw") if (out / sub).exists()]
    if earlier and not args.overwrite:  # checked before any file is written: nothing of the earlier demo changes
        from backsplit.errors import OutputError

        raise OutputError(f"'{out}' already holds a demo ({', '.join(s + '/' for s in earlier)}); add --overwrite "
                          "to replace it, or choose another --out")
    if args.overwrite:
        for sub in ("cases", "test-cases", "nnUNet_raw", "work", "predictions", "evaluation"):
            shutil.rmtree(out / sub, ignore_errors=True)
    print(f"[1] writing {args.cases} training and {args.test_cases} held-out demo cases (synthetic CT from KiTS23 "
          f"label maps) to {out}")
    written = write_demo_case_files(out / "all-cases", args.cases + args.test_cases, args.seed)
    for index, (image, seg) in enumerate(written):
        folder = out / ("cases" if index < args.cases else "test-cases")
        folder.mkdir(parents=True, exist_ok=True)
        image.replace(folder / image.name)
        seg.replace(folder / seg.name)
    shutil.rmtree(out / "all-cases", ignore_errors=True)
    raw = out / "nnUNet_raw"
    request = ExportRequest(out_root=raw, dataset_id=TRAIN_ID, dataset_name="DemoKidneyCyst",
                            targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                            overwrite=args.overwrite)
    print(f"[2] exporting: target {list(DEMO_TARGETS)}, support structures {list(DEMO_SUPPORTS)}")
    result = export_dataset(cases_from_folder(out / "cases"), request, progress=TextProgressBar())
    print("\n".join("    " + line for line in result.summary_lines()))
    labels = json.loads((result.dataset_dir / "dataset.json").read_text())["labels"]
    print(f"    labels: {labels}")
    test = export_dataset(cases_from_folder(out / "test-cases"),
                          ExportRequest(out_root=raw, dataset_id=TEST_ID, dataset_name="DemoKidneyCystTest",
                                        targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                                        binary_twin=False, overwrite=args.overwrite))
    print(f"    held-out reference dataset: {test.dataset_dir}")
    if args.stop_after == "export":
        return 0

    from backsplit.commands.train import follow
    from backsplit.training.options import TrainOptions
    from backsplit.training.process import TrainingProcess

    print(f"[3] training BackSplit and binary models side by side: {args.configuration}, {args.epochs} epochs x "
          f"{args.iterations} iterations, batch size {args.batch_size or 'as planned'}, target-aware sampling, "
          f"device {args.device}")
    options = TrainOptions(dataset_dir=result.dataset_dir, work_dir=out / "work", configuration=args.configuration,
                           fold="all", epochs=args.epochs, iterations_per_epoch=args.iterations,
                           val_iterations_per_epoch=max(2, args.iterations // 5), device=args.device,
                           with_binary=True, seed=args.seed, save_every=max(1, args.epochs // 4),
                           batch_size=args.batch_size or None,
                           extra={"overwrite": True})
    process = TrainingProcess(options).start()
    code = follow(process)
    if code != 0:
        return code
    backsplit_model, binary_model = (Path(m) for m in process.result_models)
    print(f"    BackSplit model: {backsplit_model}\n    binary model:    {binary_model}")
    if args.stop_after == "train":
        return 0

    from backsplit.evaluation.evaluate import evaluate_folders, write_evaluation
    from backsplit.inference.files import discover_inputs, predict_files
    from backsplit.evaluation.compare import comparison_picture, comparison_table, slice_view_for_case
    from backsplit.labels.schema import LabelSchema

    print(f"[4] predicting {args.test_cases} held-out cases with both models")
    inputs = discover_inputs(test.dataset_dir / "imagesTr", 1)
    timings = {}
    for name, model in (("binary", binary_model), ("backsplit", backsplit_model)):
        events = []

        def keep(event, events=events):
            events.append(event)

        predict_files(model, inputs, out / "predictions" / name, device=args.device, overwrite=True, progress=keep)
        timings[name] = sum(e.data.get("seconds", 0.0) for e in events if e.stage == "predict")
        print(f"    {name}: {timings[name]:.1f} s for {len(inputs)} cases")
    print(f"    BackSplit / binary prediction time: {timings['backsplit'] / max(timings['binary'], 1e-9):.2f}")

    print("[5] evaluating against the held-out references")
    reference_schema = LabelSchema.from_json(json.loads((test.dataset_dir / "dataset.json").read_text())["backsplit"]
                                             ["schema"])
    rows = {}
    for name, model in (("binary", binary_model), ("backsplit", backsplit_model)):
        schema = LabelSchema.from_json(json.loads((model / "backsplit_model.json").read_text())["schema"])
        rows[name] = evaluate_folders(out / "predictions" / name, test.dataset_dir / "labelsTr", schema, 2.0,
                                      reference_schema)
        write_evaluation(rows[name], out / "evaluation" / f"{name}.csv")
    table = comparison_table(rows["binary"], rows["backsplit"], ["binary", "BackSplit"])
    case = inputs[0].case_id
    view = slice_view_for_case(case, inputs[0].images[0], test.dataset_dir / "labelsTr" / f"{case}.nii.gz",
                               out / "predictions" / "binary" / f"{case}.nii.gz",
                               out / "predictions" / "backsplit" / f"{case}.nii.gz", 1, 1)
    picture = comparison_picture(rows["binary"], rows["backsplit"], ["binary", "BackSplit"],
                                 out / "evaluation" / "comparison.png", view)
    (out / "evaluation" / "comparison.txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"    picture: {picture}")
    print("    (synthetic images, short CPU training: see README for what these numbers mean)")
    return 0
