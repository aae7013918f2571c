"""One-GPU check of the training variants: the binary baseline vs the candidate default BackSplit recipe, 3d_fullres,
shipped cases.

  python benchmarks/bench_dynamics_gpu.py --out /tmp/bench-dynamics-gpu            # about 8 min on one H100

Trains, with ``backsplit study`` (content-hashed units, resumable): arms ``binary`` and ``--candidate`` (default
``backsplit``: the study arm that follows ``backsplit train``'s default recipe; give e.g. ``ramp:200,lvr=0.5`` or
``head`` to check a variant before it becomes the default), 2 folds, seed 1, 20 shipped KiTS23-based cases (4
cyst-free), 3d_fullres with the planned batch, 8 epochs x 50 iterations, 10 validation iterations, no mirroring,
``nnUNet_compile`` as nnU-Net decides (so a support head's forward hooks run under torch.compile where it compiles).
Prints per model: median time per epoch (the unit's learning curve), peak GPU memory
(``torch.cuda.max_memory_allocated``, recorded in the model's manifest as ``peak_gpu_memory_mb``), the GPU's name,
and the study report's verdict lines; writes everything to ``<out>/bench_dynamics_gpu.json``. Exits 2 at once,
saying so, when PyTorch sees no CUDA GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = dict(folds=2, seeds=(1,), configuration="3d_fullres", epochs=8, iterations=50, val_iterations=10,
                batch_size=None, cases=20, negatives=4, mirroring=False, device="cuda")


def gpu_or_exit() -> str:
    import torch

    if not torch.cuda.is_available():
        print("bench_dynamics_gpu: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False; "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}); run it on a machine with an NVIDIA GPU",
              file=sys.stderr)
        sys.exit(2)
    return torch.cuda.get_device_name(0)


def model_figures(plan) -> list[dict]:
    """Per trained unit: arm, fold, seed, median seconds per epoch, peak GPU memory (MiB), training time (s)."""
    from backsplit.study.runtask import model_dir

    rows = []
    curves = Path(plan.study_dir) / "results" / "curves.csv"
    curve_rows = list(csv.DictReader(curves.open(encoding="utf-8"))) if curves.is_file() else []
    for unit in plan.units:
        if unit.kind != "run":
            continue
        manifest_path = model_dir(plan, unit) / "backsplit_model.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        spec = unit.spec
        times = [float(r["epoch_time"]) for r in curve_rows if r.get("arm") == spec["arm"] and
                 str(r.get("fold")) == str(spec["fold"]) and str(r.get("seed")) == str(spec["seed"]) and
                 r.get("epoch_time") not in (None, "")]
        rows.append({"arm": spec["arm"], "fold": spec["fold"], "seed": spec["seed"],
                     "epoch_time_s": round(statistics.median(times), 2) if times else None,
                     "peak_gpu_memory_mb": manifest.get("peak_gpu_memory_mb"),
                     "training_time_s": manifest.get("training_time_s"),
                     "recipe": manifest.get("recipe"), "loss_schedule": (manifest.get("loss_schedule") or {}).get(
                         "option"), "support_head": bool(manifest.get("support_head"))})
    return rows


def verdict_lines(report: Path) -> list[str]:
    if not report.is_file():
        return ["(no report)"]
    lines, inside = [], False
    for line in report.read_text(encoding="utf-8").splitlines():
        if line.startswith("### Verdict"):
            inside = True
        elif line.startswith("#"):
            inside = False
        elif inside and line.startswith("- "):
            lines.append(line[2:])
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-dynamics-gpu"))
    parser.add_argument("--candidate", default="backsplit", help="the arm compared with binary (default backsplit: "
                                                                  "the train default recipe)")
    parser.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    args = parser.parse_args()
    gpu = gpu_or_exit()

    from bench_study import versions, write_cases

    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.demo.cases import DEMO_COLORS, DEMO_SUPPORTS, DEMO_TARGETS
    from backsplit.io.readers import cases_from_folder
    from backsplit.study.arms import split_arms
    from backsplit.study.local import LocalExecutor
    from backsplit.study.plan import StudySettings
    from backsplit.study.runner import plan_study, run_study

    s = dict(SETTINGS, epochs=args.epochs)
    out = args.out.resolve()
    started = time.time()
    write_cases(out / "cases", s["cases"], s["negatives"])
    dataset = out / "raw" / "Dataset602_BenchKidneyCystGPU"
    if not dataset.is_dir():
        export_dataset(cases_from_folder(out / "cases"),
                       ExportRequest(out_root=out / "raw", dataset_id=602, dataset_name="BenchKidneyCystGPU",
                                     targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                                     allow_negative_cases=True))
    settings = StudySettings(configuration=s["configuration"], folds=s["folds"], seeds=s["seeds"],
                             epochs=s["epochs"], iterations_per_epoch=s["iterations"],
                             val_iterations_per_epoch=s["val_iterations"], batch_size=s["batch_size"],
                             device=s["device"], mirroring=s["mirroring"], save_every=s["epochs"])
    plan = plan_study(dataset, out / "study", split_arms(f"binary,{args.candidate}"), settings)

    def echo(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    outcome = run_study(plan, LocalExecutor(parallel=1), echo)
    figures = model_figures(plan)
    report = out / "study" / "report" / "report.md"
    record = {"gpu": gpu, "candidate": args.candidate, "settings": {k: v for k, v in s.items() if k != "seeds"},
              "command": " ".join(sys.argv), "wall_s": round(time.time() - started), "models": figures,
              "verdict": verdict_lines(report), "units_failed": sorted(outcome.failed), "versions": versions(),
              "report": str(report)}
    (out / "bench_dynamics_gpu.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"\nGPU: {gpu}")
    print(f"{'arm':<24} {'fold':>4} {'s/epoch':>8} {'peak GPU MiB':>13} {'train s':>8}")
    for row in figures:
        print(f"{row['arm']:<24} {row['fold']:>4} {row['epoch_time_s'] or '-':>8} "
              f"{row['peak_gpu_memory_mb'] or '-':>13} {row['training_time_s'] or '-':>8}")
    print("verdict (one run, 2 folds, 1 seed; GPU " + gpu + "):")
    for line in record["verdict"]:
        print("  " + line)
    return 0 if not outcome.failed else 1


if __name__ == "__main__":
    sys.exit(main())
