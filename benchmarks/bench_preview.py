"""The Apply panel's fast preview against the full prediction, on the CPU (prints numbers; no assertions).

What the user waits for after pressing Apply: one prediction child process per case, as BackSplit Segment starts it
(``PredictionRequest`` with the up-front estimate, the probability map and the scene arrays for the import):
- full prediction: every fold of the model, ensembled, with test-time mirroring (nnU-Net's default);
- fast preview: the model's first fold only, no test-time mirroring (``prediction_run.start_prediction(preview=True)``).

The model: a short 2d (or ``--configuration 3d_fullres``) training on the shipped demo cases (fold ``all``), or
``--model``. Its single checkpoint is copied into ``fold_0`` .. ``fold_4`` of a second model folder, which then
costs what a 5-fold model costs (five networks of the same size; the weights being equal does not change the time).
Prints, per mode and case, the child's wall time (Python and torch start, model loading, estimate, prediction,
writing, the scene arrays) and the network time of the case (``seconds`` of the case-done event), then the mean.

    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/bench_preview.py --out /tmp/bench-preview
    python benchmarks/bench_preview.py --out /tmp/bench-preview --model MODEL_FOLDER   # skip the training
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench_estimate import ensure_demo  # noqa: E402 - the demo export both benchmarks use (run from benchmarks/)

FOLDS = ["0", "1", "2", "3", "4"]




def train(dataset: Path, work: Path, args) -> Path:
    from backsplit.training.options import TrainOptions
    from backsplit.training.process import TrainingProcess

    options = TrainOptions(dataset_dir=dataset, work_dir=work, configuration=args.configuration, fold="all",
                           epochs=args.epochs, iterations_per_epoch=args.iterations, val_iterations_per_epoch=2,
                           device="cpu", seed=0, batch_size=args.batch_size, save_every=args.epochs,
                           extra={"overwrite": True})
    started = time.time()
    process = TrainingProcess(options).start()
    process.wait()
    process.poll_events()   # the 'done' event names the model folder (result_models)
    if process.returncode != 0:
        raise SystemExit("training failed:\n" + "\n".join(process.log_lines[-30:]))
    print(f"trained {args.configuration}, {args.epochs} epochs x {args.iterations} iterations in "
          f"{time.time() - started:.0f} s")
    return Path(process.result_models[0])


def five_fold_copy(model: Path, target: Path) -> Path:
    """``model`` (one fold) as a 5-fold model folder: the checkpoint linked (or copied) into fold_0..fold_4."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model, target, ignore=shutil.ignore_patterns("fold_*"))
    source = next(model.glob("fold_*"))
    for fold in FOLDS:
        (target / f"fold_{fold}").mkdir()
        for checkpoint in source.glob("checkpoint_*.pth"):
            try:
                (target / f"fold_{fold}" / checkpoint.name).hardlink_to(checkpoint)
            except OSError:
                shutil.copy2(checkpoint, target / f"fold_{fold}" / checkpoint.name)
    manifest_file = target / "backsplit_model.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["folds"] = list(FOLDS)
    manifest_file.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def predict_case(model: Path, image: Path, out: Path, preview: bool) -> tuple[float, float]:
    """One child process as the panel starts it: (wall seconds, network seconds of the case)."""
    from backsplit.inference.model import read_model_info
    from backsplit.inference.process import PredictionProcess
    from backsplit.inference.worker import PredictionRequest

    info = read_model_info(model)
    shutil.rmtree(out, ignore_errors=True)
    request = PredictionRequest(str(model), [["input", [str(image)]]], str(out), device="cpu", probabilities=True,
                                use_mirroring=not preview, folds=[info.manifest["folds"][0]] if preview else None,
                                scene_arrays=True)
    started = time.perf_counter()
    job = PredictionProcess(request).start()
    job.wait()
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"prediction failed: {job.error}\n" + "\n".join(job.log_lines[-20:]))
    done = [e for e in job.poll_events() if e.stage == "predict" and (e.data or {}).get("phase") == "case done"]
    network = float(done[-1].data["seconds"]) if done else float("nan")
    return wall, network


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="working folder (demo data, model, predictions)")
    parser.add_argument("--model", type=Path, help="a trained model folder (default: train one on the demo)")
    parser.add_argument("--configuration", default="2d", choices=("2d", "3d_fullres"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--cases", type=int, default=6, help="demo training cases (default 6)")
    parser.add_argument("--test-cases", type=int, default=3, help="held-out demo cases predicted (default 3)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset, test = ensure_demo(args.out / "demo", args.cases, args.test_cases)
    model = args.model or train(dataset, args.out / "work", args)
    full_model = five_fold_copy(model, args.out / "model_5fold")
    images = sorted((test / "imagesTr").glob("*_0000.nii.gz"))[: args.test_cases]
    import SimpleITK as sitk

    size = sitk.ReadImage(str(images[0])).GetSize()
    print(f"model: {model.name} ({args.configuration}), as a 5-fold model; {len(images)} demo case(s), first "
          f"{size[0]}x{size[1]}x{size[2]} voxels; cpu, one child process per case as the panel starts it")
    results = {}
    for label, preview in (("fast preview (fold 0, no mirroring)", True), ("full (5 folds, mirroring)", False)):
        rows = [predict_case(full_model, image, args.out / "pred", preview) for image in images]
        results[label] = rows
        for image, (wall, network) in zip(images, rows):
            print(f"  {label:<38} {image.name:<24} wall {wall:6.1f} s   network {network:6.1f} s")
    print("mean seconds per case (wall / network):")
    for label, rows in results.items():
        walls, networks = [r[0] for r in rows], [r[1] for r in rows]
        print(f"  {label:<38} {sum(walls) / len(walls):6.1f} s / {sum(networks) / len(networks):6.1f} s "
              f"(wall min {min(walls):.1f}, max {max(walls):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
