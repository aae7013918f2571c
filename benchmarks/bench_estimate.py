"""Up-front estimates against the real time, and probability map sizes (prints numbers; no assertions).

1. Training: a short 2d training on the demo data, ``--runs`` times (the first run also plans and preprocesses):
   the first estimate (after a few timed iterations) and the refined one (after epoch 1) against the real time
   of the job. Target: actual / estimate within 0.67-1.5.
2. Prediction: the held-out demo cases, ``--runs`` times (with mirroring, as by default): estimate (a few tiles
   timed) against the real time (``prediction_run.json``).
3. Probability map per case: float32 .nii.gz (the former format) against scaled uint8 (the current one), on a
   demo case and on the same map resampled to a 512x512x120 grid (0.7 x 0.7 x 1.6 mm, IRCADb-like).

    python benchmarks/bench_estimate.py --out /tmp/bench-estimate [--runs 3] [--epochs 3] [--iterations 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def ensure_demo(out: Path, cases: int, test_cases: int) -> tuple[Path, Path]:
    """The demo's exported training dataset and held-out reference dataset (``backsplit demo --stop-after export``);
    also used by ``bench_preview.py``."""
    raw = out / "nnUNet_raw"
    dataset, test = raw / "Dataset501_DemoKidneyCyst", raw / "Dataset503_DemoKidneyCystTest"
    if not (dataset / "dataset.json").is_file() or not (test / "dataset.json").is_file():
        subprocess.run([sys.executable, "-m", "backsplit", "demo", "--out", str(out), "--cases", str(cases),
                        "--test-cases", str(test_cases), "--stop-after", "export", "--overwrite"], check=True,
                       stdout=subprocess.DEVNULL)
    return dataset, test


def spread(values: list[float]) -> str:
    return f"mean {np.mean(values):.2f}, min {min(values):.2f}, max {max(values):.2f} (n={len(values)})"


def bench_training(dataset: Path, work: Path, args) -> Path:
    from backsplit.training.options import TrainOptions
    from backsplit.training.process import TrainingProcess

    first, refined, model = [], [], None
    print(f"training: 2d, {args.epochs} epochs x ({args.iterations} + {args.val_iterations} validation) iterations, "
          f"batch {args.batch_size}, cpu")
    for run in range(args.runs):
        options = TrainOptions(dataset_dir=dataset, work_dir=work, configuration="2d", fold="all",
                               epochs=args.epochs, iterations_per_epoch=args.iterations,
                               val_iterations_per_epoch=args.val_iterations, device="cpu", seed=run,
                               batch_size=args.batch_size, save_every=args.epochs, extra={"overwrite": True})
        started = time.time()
        process = TrainingProcess(options).start()
        process.wait()
        actual = time.time() - started
        events = [e for e in process.poll_events() if e.stage != "log"]
        if process.returncode != 0:
            raise SystemExit("training failed:\n" + "\n".join(process.log_lines[-30:]))
        estimates = [e for e in events if e.stage == "estimate"]
        e1 = estimates[0].data
        e2 = next((e.data for e in estimates if e.data.get("refined")), None)
        first.append(actual / e1["seconds"])
        line = (f"  run {run + 1}: actual {actual:.1f} s; estimate {e1['seconds']:.1f} s made after "
                f"{e1['made_after_s']:.1f} s (ratio {first[-1]:.2f})")
        if e2:
            refined.append(actual / e2["seconds"])
            line += f"; refined after epoch 1: {e2['seconds']:.1f} s (ratio {refined[-1]:.2f})"
        print(line)
        model = Path(process.result_models[0])
    print(f"  actual / estimate: {spread(first)}")
    if refined:
        print(f"  actual / refined estimate: {spread(refined)}")
    return model


def bench_prediction(model: Path, test: Path, out: Path, args) -> None:
    from backsplit.inference.files import discover_inputs, predict_files

    inputs = discover_inputs(test / "imagesTr", 1)[: args.predict_cases]
    ratios = []
    print(f"prediction: {len(inputs)} demo case(s), mirroring {'off' if args.no_mirroring else 'on'}, cpu")
    for run in range(args.runs):
        folder = out / f"prediction-{run}"
        predict_files(model, inputs, folder, device="cpu", overwrite=True, use_mirroring=not args.no_mirroring)
        record = json.loads((folder / "prediction_run.json").read_text(encoding="utf-8"))
        ratios.append(record["actual_s"] / record["estimate"]["seconds"])
        print(f"  run {run + 1}: actual {record['actual_s']:.1f} s; estimate {record['estimate']['seconds']:.1f} s "
              f"(tile {record['estimate']['details']['tile_s']:.3f} s x {sum(record['tiles'])} tiles; ratio "
              f"{ratios[-1]:.2f})")
    print(f"  actual / estimate: {spread(ratios)}")


def bench_probability_sizes(model: Path, test: Path, maps: list) -> None:
    """Sizes of the exact float32 map (as computed by the network, written as before) and of the uint8 map."""
    import SimpleITK as sitk

    from backsplit.inference.files import discover_inputs
    from backsplit.inference.model import load_predictor, read_model_info
    from backsplit.inference.predict import predict_arrays
    from backsplit.inference.probability import PRECISION, read_probability_map, write_probability_map
    from backsplit.io.geometry import Geometry
    from backsplit.io.readers import read_image

    case = discover_inputs(test / "imagesTr", 1)[0]
    info = read_model_info(model)
    array, geometry = read_image(case.images[0], case.case_id)
    prediction = predict_arrays(load_predictor(info, "cpu", use_mirroring=False), info, [array], geometry,
                                probabilities=True)
    image = geometry.to_sitk(prediction.target_probability.astype(np.float32))
    print("probability map per case (float32 .nii.gz before, scaled uint8 .nii.gz now):")
    items = [("demo case, exact float32 map", image), ("the same map resampled to 512x512x120", _resampled_512(image))]
    items += [(f"{Path(m).name} (float32 = its decoded uint8 values: a lower bound of the former size)",
               sitk.ReadImage(str(m))) for m in maps]
    with tempfile.TemporaryDirectory() as tmp:
        for name, img in items:
            array = sitk.GetArrayFromImage(img).astype(np.float32)
            before = Path(tmp) / "float32.nii.gz"
            sitk.WriteImage(sitk.Cast(img, sitk.sitkFloat32), str(before), True)
            geometry = Geometry.create(img.GetSpacing(), img.GetOrigin(), img.GetDirection(), array.shape)
            after = write_probability_map(array, geometry, Path(tmp) / "uint8.nii.gz")
            error = float(np.abs(read_probability_map(after) - array).max())
            b, a = before.stat().st_size, after.stat().st_size
            print(f"  {name} {array.shape[::-1]}: {b / 1e6:.2f} MB -> {a / 1e6:.2f} MB ({b / a:.1f}x smaller); "
                  f"largest difference {error:.4f} (stated: {PRECISION:.4f}); {100 * np.mean(array > 0.01):.1f}% "
                  "of voxels above 0.01")


def _resampled_512(image):
    """The map on a 512x512x120 grid of 0.7 x 0.7 x 1.6 mm around the same centre (linear; 0 outside)."""
    import SimpleITK as sitk

    size, spacing = [512, 512, 120], [0.7, 0.7, 1.6]
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(centre) - direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
    return sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), size, sitk.Transform(), sitk.sitkLinear,
                         origin.tolist(), spacing, image.GetDirection(), 0.0, sitk.sitkFloat32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-estimate",
                        help="working folder (default: <tmp>/bench-estimate)")
    parser.add_argument("--runs", type=int, default=3, help="repeats of each timing (default 3)")
    parser.add_argument("--cases", type=int, default=6, help="demo training cases (default 6)")
    parser.add_argument("--predict-cases", type=int, default=3, help="held-out cases predicted (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per run (default 3)")
    parser.add_argument("--iterations", type=int, default=10, help="training iterations per epoch (default 10)")
    parser.add_argument("--val-iterations", type=int, default=5, help="validation iterations per epoch (default 5)")
    parser.add_argument("--batch-size", type=int, default=12, help="batch size (default 12, as the demo)")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="predict without test-time mirroring (4x fewer network passes; default: mirroring on)")
    parser.add_argument("--sizes-only", action="store_true", help="only the probability map sizes (needs "
                        "--skip-training MODEL)")
    parser.add_argument("--map", action="append", default=[], type=Path, metavar="FILE",
                        help="also measure this probability map written by backsplit predict (repeatable; default: "
                             "none)")
    parser.add_argument("--skip-training", type=Path, metavar="MODEL",
                        help="use this trained model folder instead of training (prediction and sizes only)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    dataset, test = ensure_demo(args.out / "demo", args.cases, args.predict_cases)
    model = args.skip_training or bench_training(dataset, args.out / "work", args)
    if not args.sizes_only:
        bench_prediction(model, test, args.out, args)
    bench_probability_sizes(model, test, args.map)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
