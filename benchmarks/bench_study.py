"""A study benchmark any developer can rerun: ``backsplit study`` on the shipped KiTS23-based demo cases.

  python benchmarks/bench_study.py --profile quick --out /tmp/bench-study     # CPU, 2d (about 45 min on 2 free cores)
  python benchmarks/bench_study.py --profile gpu --out /tmp/bench-study-gpu   # one GPU, 3d_fullres (about 12 min)
  python benchmarks/bench_study.py --profile context --out /tmp/bench-study   # learned vs rings, kmeans (after quick)

Cases: the 20 shipped KiTS23 label maps with synthetic CT (``backsplit.demo.cases``); ``--negatives`` of them get their
cysts relabelled as kidney before the image is synthesised (cyst-free kidneys), so the case-level decision (AUROC,
specificity) can be measured. Target ``cyst``, support structures ``tumor``, ``kidney``. The study runs through the
same code as the command line (local executor) and prints the report's path, the wall time and the versions.
Rerunning with the same --out reuses every finished unit (content hashes).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

PROFILES = {
    # 2 free CPU cores: 5 arms x 3 folds, 2d, 6 epochs x 40 iterations of batch 12
    "quick": dict(arms="binary,backsplit,drop:tumor,noisy:erode:2,finetune", folds=3, configuration="2d", epochs=6,
                  iterations=40, val_iterations=5, batch_size=12, cases=15, negatives=3, mirroring=False,
                  device="cpu"),
    # generated and learned context (CoLab) vs binary, the quick profile's budget: with the same --out as quick,
    # the binary units are reused (same content hash)
    "context": dict(arms="binary,learned,rings,kmeans", folds=3, configuration="2d", epochs=6,
                    iterations=40, val_iterations=5, batch_size=12, cases=15, negatives=3, mirroring=False,
                    device="cpu"),
    # one modern GPU: binary vs backsplit, 3 folds, 3d_fullres, planned batch
    "gpu": dict(arms="binary,backsplit", folds=3, configuration="3d_fullres", epochs=10, iterations=50,
                val_iterations=10, batch_size=None, cases=20, negatives=4, mirroring=True, device="cuda"),
}


def write_cases(folder: Path, n_cases: int, negatives: int, seed: int = 0) -> None:
    """Demo cases as a user's files; the last ``negatives`` cases without cysts (cyst voxels relabelled kidney)."""
    import SimpleITK as sitk

    from backsplit.demo.cases import DEMO_COLORS, _stable_hash, demo_label_files, read_label_map, synthesize_image
    from backsplit.io.segfile import write_seg_nrrd
    from backsplit.labels.terminology import terminology_for_name

    folder.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(demo_label_files()[:n_cases]):
        case_id = path.name[: -len(".nii.gz")]
        if (folder / f"{case_id}.seg.nrrd").is_file():
            continue
        labels, geometry = read_label_map(path)
        if index >= n_cases - negatives:
            labels[labels == 3] = 1
        image, _ = synthesize_image(labels, geometry, seed + _stable_hash(case_id))
        segments = {"kidney": labels > 0, "tumor": labels == 2, "cyst": labels == 3}
        sitk.WriteImage(geometry.to_sitk(image), str(folder / f"{case_id}.nii.gz"), True)
        write_seg_nrrd(folder / f"{case_id}.seg.nrrd", geometry, segments, dict(DEMO_COLORS),
                       {n: terminology_for_name(n) or "" for n in segments})


def versions() -> dict:
    import importlib.metadata as md

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("backsplit", "nnunetv2", "torch", "scipy", "scikit-learn", "numpy"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = "-"
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=Path("bench-study"))
    parser.add_argument("--arms", help="override the profile's arms")
    parser.add_argument("--folds", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--cases", type=int)
    parser.add_argument("--negatives", type=int)
    parser.add_argument("--nice", type=int, default=0, help="nice value of the units (shared machines)")
    parser.add_argument("--parallel", type=int, default=1, help="units at the same time on the CPU (study --parallel)")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    args = parser.parse_args()
    profile = dict(PROFILES[args.profile])
    for key in ("arms", "folds", "epochs", "iterations", "cases", "negatives"):
        if getattr(args, key) is not None:
            profile[key] = getattr(args, key)

    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.demo.cases import DEMO_COLORS, DEMO_SUPPORTS, DEMO_TARGETS
    from backsplit.io.readers import cases_from_folder
    from backsplit.study.arms import split_arms
    from backsplit.study.local import LocalExecutor
    from backsplit.study.plan import StudySettings
    from backsplit.study.runner import plan_study, run_study

    out = args.out.resolve()
    started = time.time()
    write_cases(out / "cases", profile["cases"], profile["negatives"])
    dataset = out / "raw" / "Dataset601_BenchKidneyCyst"
    if not dataset.is_dir():
        export_dataset(cases_from_folder(out / "cases"),
                       ExportRequest(out_root=out / "raw", dataset_id=601, dataset_name="BenchKidneyCyst",
                                     targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                                     allow_negative_cases=True))
    settings = StudySettings(configuration=profile["configuration"], folds=profile["folds"],
                             seeds=tuple(int(x) for x in args.seeds.split(",")),
                             epochs=profile["epochs"], iterations_per_epoch=profile["iterations"],
                             val_iterations_per_epoch=profile["val_iterations"], batch_size=profile["batch_size"],
                             device=profile["device"], mirroring=profile["mirroring"],
                             save_every=max(1, profile["epochs"] // 3))
    plan = plan_study(dataset, out / "study", split_arms(profile["arms"]), settings)

    def echo(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    from backsplit.commands.study import _interrupt_on_signals

    _interrupt_on_signals()  # Ctrl-C / SIGTERM end the running unit's process group
    outcome = run_study(plan, LocalExecutor(nice=args.nice, parallel=args.parallel), echo)
    elapsed = time.time() - started
    record = {"profile": args.profile, "settings": profile, "command": " ".join(sys.argv), "wall_s": round(elapsed),
              "units_run": len(outcome.done), "units_reused": len(outcome.reused),
              "units_failed": sorted(outcome.failed), "versions": versions(),
              "report": str(out / "study" / "report" / "report.md")}
    (out / "bench_study.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps(record, indent=1))
    return 0 if not outcome.failed else 1


if __name__ == "__main__":
    sys.exit(main())
