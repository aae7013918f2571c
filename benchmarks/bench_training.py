"""Training benchmarks (print numbers; no assertions).

1. Wrapper overhead: seconds per epoch of the same configuration on the same preprocessed data through
   `backsplit train` (child process, BackSplitTrainer, progress events; stock sampling for a like-for-like
   comparison) and through the raw `nnUNetv2_train` (a stock nnUNetTrainer whose iteration count is set to the
   same value; found through nnUNet_extTrainer). Runs alternate raw / wrapper; the first epoch (warm-up) is dropped.
   Target: ratio <= 1.02.
2. BackSplit vs binary: seconds per epoch of the BackSplit model and its binary twin with identical settings and
   shared plans, each in its own run, the order alternating. Target: ratio <= 1.03.

    python benchmarks/bench_training.py                 # demo cases, 2d, CPU-sized
    python benchmarks/bench_training.py --configuration 3d_fullres --iterations 50 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

BENCH_TRAINER = textwrap.dedent('''
    import os
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


    class nnUNetTrainer_BackSplitBench(nnUNetTrainer):
        """The stock trainer with the iteration counts of the benchmark (and no final validation)."""

        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = int(os.environ["BENCH_EPOCHS"])
            self.num_iterations_per_epoch = int(os.environ["BENCH_ITERATIONS"])
            self.num_val_iterations_per_epoch = int(os.environ["BENCH_VAL_ITERATIONS"])

        def perform_actual_validation(self, *args, **kwargs):
            pass
''')


def epoch_times_from_log(folder: Path) -> list[float]:
    logs = sorted(folder.rglob("training_log_*.txt"))
    return [float(v) for v in re.findall(r"Epoch time: ([\d.]+) s", logs[-1].read_text(encoding="utf-8"))]


def run_wrapper(dataset: Path, work: Path, args, with_binary=False, sampling="stock") -> dict[str, list[float]]:
    command = [sys.executable, "-m", "backsplit", "train", str(dataset), "--work-dir", str(work),
               "--configuration", args.configuration, "--fold", "all", "--epochs", str(args.epochs),
               "--iterations-per-epoch", str(args.iterations), "--val-iterations", str(args.val_iterations),
               "--device", args.device, "--sampling", sampling, "--overwrite", "--jsonl", "--save-every", "1000",
               "--recipe", args.recipe]
    if with_binary:
        command.append("--with-binary")
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"backsplit train failed:\n{out.stderr[-3000:]}")
    times: dict[str, list[float]] = {}
    model = "model"
    for line in out.stdout.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event["stage"] == "train" and "model" in event["data"]:
            model = event["data"]["model"]
        if event["stage"] == "epoch":
            times.setdefault(model, []).append(event["data"]["epoch_time"])
    return times


def run_raw(dataset_id: int, env: dict, args, ext_dir: Path, results: Path) -> list[float]:
    env = dict(env, nnUNet_results=str(results), nnUNet_extTrainer=str(ext_dir), BENCH_EPOCHS=str(args.epochs),
               BENCH_ITERATIONS=str(args.iterations), BENCH_VAL_ITERATIONS=str(args.val_iterations),
               nnUNet_n_proc_DA="0")
    device = "cpu" if args.device == "cpu" else ("cuda" if args.device in ("auto", "cuda") else args.device)
    command = [str(Path(sys.executable).with_name("nnUNetv2_train")), str(dataset_id), args.configuration, "all",
               "-tr", "nnUNetTrainer_BackSplitBench", "-device", device]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"nnUNetv2_train failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return epoch_times_from_log(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--configuration", default="2d")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--val-iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipe", default="paper", choices=["paper", "default"],
                        help="paper (default): nnU-Net's own loss, like for like with raw nnUNetv2_train (the "
                             "figures in docs/benchmarks.md); default: the default recipe's loss schedule as well")
    args = parser.parse_args()

    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.demo.cases import demo_case_sources
    from backsplit.training.environment import nnunet_environment

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = export_dataset(demo_case_sources(args.cases),
                                ExportRequest(tmp / "raw", 601, "Bench", ["cyst"], ["tumor", "kidney"]))
        work = tmp / "work"
        print(f"dataset: {args.cases} demo cases; {args.configuration}, {args.epochs} epochs x {args.iterations} "
              f"iterations (+{args.val_iterations} validation), device {args.device}")
        run_wrapper(result.dataset_dir, work, args, with_binary=True)  # plans + preprocessing for both, warm caches
        ext = tmp / "ext"
        ext.mkdir()
        (ext / "nnUNetTrainer_BackSplitBench.py").write_text(BENCH_TRAINER, encoding="utf-8")
        env = nnunet_environment(result.dataset_dir.parent, work)
        raw_times, wrapper_times = [], []
        for repeat in range(args.repeats):
            raw_times += run_raw(601, env, args, ext, tmp / f"raw_results_{repeat}")[1:]
            wrapper_times += run_wrapper(result.dataset_dir, work, args)["BackSplit model"][1:]
        raw, wrapped = statistics.median(raw_times), statistics.median(wrapper_times)
        per_iteration = raw / (args.iterations + args.val_iterations)
        print(f"raw nnUNetv2_train:   {raw:.2f} s/epoch = {per_iteration:.3f} s/iteration"
              f" (median of {len(raw_times)} epochs)")
        print(f"backsplit train:      {wrapped:.2f} s/epoch = "
              f"{wrapped / (args.iterations + args.val_iterations):.3f} s/iteration (median of {len(wrapper_times)})")
        print(f"wrapper overhead ratio (backsplit / raw): {wrapped / raw:.3f}  (target <= 1.02)")
        # BackSplit vs binary: each model in its own run (same shared plans, same settings), the order alternating, so
        # that warm caches favour neither (in a side-by-side run the twin always trains second)
        for sampling in ("target", "stock"):
            times = {"BackSplit model": [], "binary model": []}
            for repeat in range(args.repeats):
                order = [result.dataset_dir, result.binary_dataset_dir]
                for dataset in (order if repeat % 2 else order[::-1]):
                    for model, epochs in run_wrapper(dataset, work, args, sampling=sampling).items():
                        times[model] += epochs[1:]
            backsplit, binary = statistics.median(times["BackSplit model"]), statistics.median(times["binary model"])
            print(f"{sampling} sampling: BackSplit model {backsplit:.2f} s/epoch, binary model {binary:.2f} s/epoch "
                  f"(medians of {len(times['BackSplit model'])} epochs, separate runs, alternating order)")
            print(f"{sampling} sampling: BackSplit / binary ratio: {backsplit / binary:.3f}  (target <= 1.03)")
        try:
            import torch

            if torch.cuda.is_available():
                print(f"GPU: {torch.cuda.get_device_name(0)}")
        except ImportError:
            pass


if __name__ == "__main__":
    main()
