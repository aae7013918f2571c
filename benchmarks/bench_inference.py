"""Prediction benchmarks (print numbers; no assertions).

1. Engine vs raw nnU-Net: seconds to predict the same input files with the same model through
   `backsplit.inference` (in-process, as `backsplit predict` does) and through the raw
   `nnUNetv2_predict_from_modelfolder`
   (a copy of the model whose checkpoint names the stock trainer, which builds the same network). Target ratio <= 1.02.
2. BackSplit vs binary: prediction time of the two models trained side by side (same plans). Target ratio <= 1.02.
   Lesion-only output is the full output with support classes set to 0 after the forward pass: its extra cost is the
   fold itself, timed here too.

    python benchmarks/bench_inference.py --models WORK/nnUNet_results   # models from `backsplit demo` or train
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def engine_predict(model: Path, inputs, out: Path, device: str, probabilities: bool = False) -> float:
    from backsplit.inference.files import predict_files

    started = time.perf_counter()
    predict_files(model, inputs, out, device=device, overwrite=True, probabilities=probabilities)
    return time.perf_counter() - started


def raw_predict(model: Path, input_dir: Path, out: Path, device: str, tmp: Path) -> float:
    import torch

    copy = tmp / "raw_model"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(model, copy)
    for checkpoint in copy.glob("fold_*/checkpoint_final.pth"):
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state["trainer_name"] = "nnUNetTrainer"  # same architecture; lets nnU-Net find the class by name
        torch.save(state, checkpoint)
    folds = [p.name[len("fold_"):] for p in copy.glob("fold_*")]
    command = [str(Path(sys.executable).with_name("nnUNetv2_predict_from_modelfolder")), "-i", str(input_dir), "-o",
               str(out), "-m", str(copy), "-f", *folds, "-device", "cpu" if device == "cpu" else "cuda",
               "-npp", "1", "-nps", "1"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"nnUNetv2_predict_from_modelfolder failed:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backsplit-model", type=Path, required=True)
    parser.add_argument("--binary-model", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, required=True, help="folder of <case>_0000.nii.gz")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="BackSplit/binary runs, alternated (median)")
    parser.add_argument("--probabilities", action="store_true", help="also time predictions with probability maps")
    args = parser.parse_args()

    import numpy as np
    import SimpleITK as sitk

    from backsplit.inference.files import discover_inputs
    from backsplit.inference.predict import fold_supports

    inputs = discover_inputs(args.inputs, 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # engine timing includes model loading, as the raw command does; the raw command also starts a process
        engine_predict(args.backsplit_model, inputs[:1], tmp / "warm", args.device)  # warm file caches
        engine = engine_predict(args.backsplit_model, inputs, tmp / "engine", args.device)
        raw = raw_predict(args.backsplit_model, args.inputs, tmp / "raw", args.device, tmp)
        print(f"{len(inputs)} cases: engine {engine:.1f} s, raw nnUNetv2_predict_from_modelfolder {raw:.1f} s "
              f"(includes its process start and imports)")
        print(f"engine / raw ratio: {engine / raw:.3f}  (target <= 1.02)")
        same = all(np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "engine" / f"{c.case_id}.nii.gz"))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "raw" / f"{c.case_id}.nii.gz"))))
                   for c in inputs)
        print(f"engine and raw labelmaps identical: {same}")
        import statistics

        backsplit_times, binary_times = [engine], []
        for repeat in range(args.repeats):
            binary_times.append(engine_predict(args.binary_model, inputs, tmp / "binary", args.device))
            if repeat < args.repeats - 1:
                backsplit_times.append(engine_predict(args.backsplit_model, inputs, tmp / "engine", args.device))
        bs, bn = statistics.median(backsplit_times), statistics.median(binary_times)
        print(f"BackSplit {bs:.1f} s vs binary {bn:.1f} s (medians of {len(backsplit_times)} / {len(binary_times)} "
              f"alternated runs): ratio {bs / bn:.3f}  (target <= 1.02)")
        if args.probabilities:  # with the lesion probability map: its cost grows with the number of classes
            with_p = {"backsplit": [], "binary": []}
            for _ in range(2):
                for name, model in (("binary", args.binary_model), ("backsplit", args.backsplit_model)):
                    with_p[name].append(engine_predict(model, inputs, tmp / f"p_{name}", args.device, True))
            bs_p, bn_p = min(with_p["backsplit"]), min(with_p["binary"])
            print(f"with probability maps: BackSplit {bs_p:.1f} s vs binary {bn_p:.1f} s (best of 2): ratio "
                  f"{bs_p / bn_p:.3f}; BackSplit with / without maps: {bs_p / bs:.3f}")
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "engine" / f"{inputs[0].case_id}.nii.gz")))
        started = time.perf_counter()
        for _ in range(10):
            fold_supports(labels, 1)
        print(f"lesion-only fold: {(time.perf_counter() - started) / 10 * 1000:.2f} ms per case "
              f"({labels.size / 1e6:.1f} M voxels): the only extra cost of lesion-only output")


if __name__ == "__main__":
    main()
