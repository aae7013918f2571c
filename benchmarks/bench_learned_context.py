"""Learned context (CoLab) training cost: seconds per training iteration and peak memory, against the binary trainer
on the same data (prints numbers; no assertions).

Data: demo cases exported with target 'tumor'; every arm trains on the binary twin (targets only, the learned
context use case), with the same plans, batch size, seed and nnU-Net data pipeline (no augmentation workers). Each
arm runs in its own process (peak RSS per process is its peak memory; on CUDA also torch's peak allocation); the
order alternates between repeats. Time per iteration = mean over ``--iterations`` ``train_step`` calls after
``--warmup``, both rounded up to multiples of the arm's k (so that meta steps are counted at their share), as wall
time and as the process's CPU time (fairer on a shared machine; one torch thread per arm by default). Arms:

* ``binary``: BackSplitTrainer (nnU-Net's DC+CE step);
* ``learned``: the default learned context (``LearnedContextSpec()``: fd meta-gradient every k-th iteration,
  generator width 0.5);
* ``learned k=5``: the authors' interval k=5 (BackSplit's default before the cost measurement that set k=8);
* ``learned KEY=VALUE ...``: any other setting, e.g. ``learned k=8`` (= ``--context learned:2,k=8``);
* ``learned k=1 fd`` / ``learned k=1 exact``: a meta step every iteration (the meta step's own cost, both methods);
* ``learned w=1``: the paper's generator (same width as the segmentation network), default k.

    python benchmarks/bench_learned_context.py                       # 2d on the CPU
    python benchmarks/bench_learned_context.py --configuration 3d_fullres --device cuda --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = {"binary": "none", "learned": "learned:2", "learned k=1 fd": "learned:2,k=1,meta=fd",
        "learned k=1 exact": "learned:2,k=1,meta=exact", "learned w=1": "learned:2,w=1", "learned k=5": "learned:2,k=5"}


def arm_context(arm: str) -> str:
    """The ``--context`` text of an arm: a name of ARMS, or ``learned KEY=VALUE ...`` -> ``learned:2,KEY=VALUE,...``."""
    if arm in ARMS:
        return ARMS[arm]
    head, *settings = arm.split()
    if head != "learned" or not settings:
        raise SystemExit(f"arm '{arm}' is unknown: use one of {', '.join(ARMS)} or 'learned KEY=VALUE ...'")
    return ",".join(["learned:2"] + settings)


def child(args) -> None:
    """Time ``train_step`` of one arm in this process; print one JSON line."""
    import numpy as np
    import torch

    from backsplit.datasets.folder import load_dataset_folder
    from backsplit.runtime.devices import resolve_device
    from backsplit.training.colab.setup import learned_context_trainer
    from backsplit.training.trainer import BackSplitTrainer

    dataset = load_dataset_folder(Path(args.dataset))
    plans_file = Path(os.environ["nnUNet_preprocessed"]) / dataset.folder_name / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    plans["continue_training"] = False
    plans["configurations"][args.configuration]["batch_size"] = args.batch_size
    os.environ["nnUNet_n_proc_DA"] = "0"
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    np.random.seed(0)
    torch.manual_seed(0)
    BackSplitTrainer.settings = {"epochs": 1, "iterations_per_epoch": 1, "val_iterations_per_epoch": 1,
                                 "sampling": "target", "target_labels": dataset.target_labels}
    cls, meta = learned_context_trainer(arm_context(args.child), dataset.meta) or (BackSplitTrainer, dataset.meta)
    trainer = cls(plans, args.configuration, "all", meta, device)
    trainer.on_train_start()
    trainer.on_train_epoch_start()
    k = int(trainer.context_spec.update_every) if hasattr(trainer, "context_spec") else 1
    warmup, iterations = (-(-n // k) * k for n in (args.warmup, args.iterations))
    times, cpu_times = [], []
    for i in range(warmup + iterations):
        batch = next(trainer.dataloader_train)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
    peak_gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # KiB -> MiB on Linux
    print(json.dumps({"arm": args.child, "times": times, "cpu_times": cpu_times, "rss_mib": rss, "gpu_mib": peak_gpu,
                      "updates": getattr(trainer, "generator_updates", 0)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--configuration", default="2d")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per arm (default 1)")
    parser.add_argument("--arms", default="binary,learned,learned k=5,learned k=1 fd,learned k=1 exact",
                        help=f"comma-separated, from: {', '.join(ARMS)}, or 'learned KEY=VALUE ...'")
    parser.add_argument("--child")
    parser.add_argument("--dataset")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.demo.cases import demo_case_sources
    from backsplit.training.environment import nnunet_environment

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    from backsplit.training.colab.spec import parse_context
    for arm in arms:                 # fail before the export on a malformed arm
        parse_context(arm_context(arm))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = export_dataset(demo_case_sources(args.cases),
                                ExportRequest(tmp / "raw", 602, "BenchLC", ["tumor"], ["kidney"]))
        twin, work = result.binary_dataset_dir, tmp / "work"
        prepare = subprocess.run([sys.executable, "-m", "backsplit", "train", str(twin), "--work-dir", str(work),
                                  "--configuration", args.configuration, "--fold", "all", "--epochs", "1",
                                  "--iterations-per-epoch", "1", "--val-iterations", "1", "--device", args.device,
                                  "--batch-size", str(args.batch_size), "--jsonl"], capture_output=True, text=True)
        if prepare.returncode != 0:
            raise SystemExit(f"planning / preprocessing failed:\n{prepare.stdout[-3000:]}\n{prepare.stderr[-3000:]}")
        env = dict(nnunet_environment(twin.parent, work), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        print(f"dataset: {args.cases} demo cases (binary twin: target 'tumor'), {args.configuration}, batch "
              f"{args.batch_size}, device {args.device}; {args.iterations} timed iterations after {args.warmup}; "
              f"{args.repeats} repeats, alternating order; load average at start {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs", flush=True)
        results: dict[str, list[dict]] = {a: [] for a in arms}
        for repeat in range(args.repeats):
            for arm in (arms if repeat % 2 == 0 else arms[::-1]):
                out = subprocess.run([sys.executable, __file__, "--child", arm, "--dataset", str(twin),
                                      "--configuration", args.configuration, "--batch-size", str(args.batch_size),
                                      "--warmup", str(args.warmup), "--iterations", str(args.iterations),
                                      "--device", args.device, "--threads", str(args.threads)],
                                     capture_output=True, text=True, env=env)
                lines = [line for line in out.stdout.splitlines() if line.startswith('{"arm"')]
                if out.returncode != 0 or not lines:
                    raise SystemExit(f"arm '{arm}' failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
                results[arm].append(json.loads(lines[-1]))
                run = results[arm][-1]
                print(f"  run {repeat + 1}: {arm}: {statistics.mean(run['times']):.3f} s/iteration wall, "
                      f"{statistics.mean(run['cpu_times']):.3f} s CPU, peak RSS "
                      f"{run['rss_mib']:.0f} MiB", flush=True)
        base = {}
        for arm in arms:
            runs = results[arm]
            parts = []
            for key, what in (("times", "wall"), ("cpu_times", "CPU")):
                means = [statistics.mean(r[key]) for r in runs]
                value = statistics.median(means)
                base.setdefault(key, value if arm == "binary" else None)
                ratio = f" = {value / base[key]:.2f}x binary" if base.get(key) else ""
                parts.append(f"{what} {value:.3f} s/iteration (runs {', '.join(f'{m:.3f}' for m in means)}){ratio}")
            gpu = f", GPU peak {max(r['gpu_mib'] for r in runs):.0f} MiB" if runs[0]["gpu_mib"] else ""
            print(f"{arm:18s} {'; '.join(parts)}; peak RSS {max(r['rss_mib'] for r in runs):.0f} MiB{gpu}; "
                  f"generator updates per run {runs[0]['updates']}")


if __name__ == "__main__":
    main()
