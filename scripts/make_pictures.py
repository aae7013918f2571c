"""Make the documentation pictures from real BackSplit output (issue 22), and say what was run.

    python scripts/make_pictures.py --only demo --demo-output /work/bench/demo-pic   # reuse a finished demo
    python scripts/make_pictures.py --only demo --run-demo --demo-output demo-output # run `backsplit demo` first
    python scripts/make_pictures.py --only compare --demo-output demo-output         # docs/images/compare-demo.png
    python scripts/make_pictures.py --only study                                     # docs/results/*/ PNGs

``demo``: ``docs/images/slicer-result.png``, the demo's BackSplit model on a held-out case as BackSplit Segment shows
it after *Apply* (``BackSplitSegmentLib/prediction_import.py``): CT in Slicer's abdomen window (W 350, L 40), the
target filled in its colour, support structures muted (light fill and outline), the lesion probability in Slicer's
Inferno colours with lower threshold 0.1 (p < 0.1 transparent) at foreground opacity 0.4, the reference lesion as a
dashed outline, a colour bar, a 10 mm scale bar, R/L/A/P letters, a legend of the classes on the slice, and the
summary line the panel prints. The case is chosen by a fixed rule (the held-out case with the largest reference
lesion volume), the slice by the reference (largest reference lesion area), never by how good the prediction looks.
Budget: ``backsplit demo``'s default (12 training cases, 2d, 8 epochs x 100 iterations, batch 12) found most cysts in
the README's run (10-15 min on 2 free CPU cores; far longer on a loaded machine). With a GPU: ``--device cuda``.

``compare``: ``backsplit compare`` on the demo's two evaluations with the same case (needs the full demo: both models).
``study``: re-draws ``learning_curves.png`` and ``paired_differences.png`` in each ``docs/results/<run>/`` from its
``curves.csv`` / ``per_case.csv`` with the current plotting code (the detection curves need the study folder's
per-lesion rows: ``backsplit study ... --report-only`` where it still exists).

matplotlib comes with nnU-Net. Rendered outside Slicer (no Slicer runs where this project is built); the caption on
the image says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BACKSPLIT = [sys.executable, "-m", "backsplit"]
TEST_DATASET = "Dataset503_DemoKidneyCystTest"
PROBABILITY_THRESHOLD, PROBABILITY_OPACITY = 0.1, 0.4   # what prediction_import.py sets in Slicer
NOTE = ("Rendered outside Slicer by scripts/make_pictures.py from BackSplit's prediction files (labelmap, labels.json, "
        "lesion probability map) with the display settings BackSplit Segment applies; not a Slicer screenshot.")


def run(command: list[str]) -> None:
    print("+ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=ROOT)


def find_model(demo: Path) -> Path:
    """The BackSplit (not the binary baseline) model folder of a demo output: a folder with backsplit_model.json
    whose path does not name the binary baseline; the newest when there are several."""
    found = [p.parent for p in demo.rglob("backsplit_model.json") if "binary" not in str(p.parent).lower()]
    if not found:
        raise SystemExit(f"make_pictures: no BackSplit model folder under {demo}; run with --run-demo or give --model")
    return max(found, key=lambda p: (p / "backsplit_model.json").stat().st_mtime)


def predictions(demo: Path, model: Path, device: str, case: str) -> Path:
    """The chosen held-out case predicted with probabilities into <demo>/pictures/predictions (made once; one case
    only: the choice does not depend on the prediction, and a CPU takes minutes per case)."""
    out = demo / "pictures" / "predictions"
    if not (out / "summary.json").is_file() or case not in (out / "summary.json").read_text(encoding="utf-8"):
        run(BACKSPLIT + ["predict", model, demo / "nnUNet_raw" / TEST_DATASET / "imagesTr" / f"{case}_0000.nii.gz",
                         "--out", out, "--probabilities", "--device", device, "--overwrite", "--quiet"])
    return out


def choose_case(references: Path, target_values: list[int]) -> tuple[str, float]:
    """(case id, reference lesion volume in ml) of the held-out case with the largest reference lesion volume."""
    from backsplit.evaluation.slices import read_lps

    best = ("", -1.0)
    for path in sorted(references.glob("*.nii.gz")):
        case = path.name[:-7]
        labels, spacing = read_lps(path, case, "reference")
        volume = float(np.isin(labels, target_values).sum() * np.prod(spacing) / 1000.0)
        best = max(best, (case, volume), key=lambda item: item[1])
    return best


def summary_line(summary: dict) -> str:
    """The line BackSplit Segment prints after Apply: its own ``summary_text`` (BackSplitSegmentLib/prediction_run.py,
    importable without Slicer), so the picture cannot drift from the panel."""
    sys.path.insert(0, str(ROOT / "BackSplitSegment"))
    from BackSplitSegmentLib.prediction_run import summary_text

    return summary_text(summary)


def budget_line(manifest: dict) -> str:
    epochs = manifest.get("completed_epochs", manifest.get("epochs"))
    return (f"model: nnU-Net v2 {manifest.get('configuration', '')}, {epochs} epochs x "
            f"{manifest.get('iterations_per_epoch')} iterations of batch {manifest.get('batch_size')}, "
            f"device {manifest.get('device')}")


def demo_case(demo: Path, model: Path) -> tuple[str, float]:
    """The held-out case the picture shows (``choose_case`` with the model's target values)."""
    from backsplit.labels.schema import LabelSchema

    schema = LabelSchema.from_json(json.loads((model / "backsplit_model.json").read_text(encoding="utf-8"))["schema"])
    return choose_case(demo / "nnUNet_raw" / TEST_DATASET / "labelsTr", list(schema.target_values))


def render_demo(demo: Path, model: Path, pred: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backsplit.evaluation.slices import (
        draw_slice,
        largest_slice,
        legend_handles,
        read_label_table,
        read_lps,
        values_with_role,
    )

    table = read_label_table(pred)
    targets = values_with_role(table, "target")
    test = demo / "nnUNet_raw" / TEST_DATASET
    case, reference_ml = choose_case(test / "labelsTr", targets)
    image, spacing = read_lps(test / "imagesTr" / f"{case}_0000.nii.gz", case)
    labels, _ = read_lps(pred / f"{case}.nii.gz", case, "prediction")
    probability, _ = read_lps(pred / f"{case}_lesion_probability.nii.gz", case, "probability")
    reference, _ = read_lps(test / "labelsTr" / f"{case}.nii.gz", case, "reference")
    reference_lesion = np.isin(reference, targets)
    predicted_lesion = np.isin(labels, targets)
    total = int(reference_lesion.sum() + predicted_lesion.sum())
    dice = 2.0 * int((reference_lesion & predicted_lesion).sum()) / total if total else 1.0
    k = largest_slice(reference_lesion)
    summaries = {s["case_id"]: s for s in json.loads((pred / "summary.json").read_text(encoding="utf-8"))}
    manifest = json.loads((model / "backsplit_model.json").read_text(encoding="utf-8"))

    shape_mm = (image.shape[1] * spacing[1], image.shape[2] * spacing[0])     # rows, columns of a slice in mm
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 6.0 * shape_mm[0] / shape_mm[1] + 1.3), dpi=110,
                             layout="constrained")
    present = draw_slice(axes[0], image[k], labels[k], table, spacing, reference_lesion[k])
    axes[0].set_title("segmentation: targets filled, support structures muted", fontsize=11)
    draw_slice(axes[1], image[k], None, None, spacing, reference_lesion[k])
    shown = np.ma.masked_less(probability[k], PROBABILITY_THRESHOLD)
    layer = axes[1].imshow(shown, cmap="inferno", vmin=0.0, vmax=1.0, alpha=PROBABILITY_OPACITY,
                           interpolation="nearest", aspect=spacing[1] / spacing[0])
    axes[1].set_title(f"lesion probability (Inferno, p >= {PROBABILITY_THRESHOLD:g}, opacity "
                      f"{PROBABILITY_OPACITY:g})", fontsize=11)
    bar = fig.colorbar(layer, ax=axes[1], shrink=0.9, pad=0.02, aspect=15, ticks=[0.1, 0.5, 0.9])
    bar.solids.set_alpha(1.0)
    bar.set_label("lesion probability")
    for ax in axes:
        for x, y, letter in ((0.5, 0.985, "A"), (0.5, 0.015, "P")):
            ax.text(x, y, letter, color="yellow", transform=ax.transAxes, fontsize=9, ha="center",
                    va="top" if letter == "A" else "bottom", fontweight="bold")
    height = fig.get_figheight()
    fig.legend(handles=legend_handles(table, present), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               fontsize=9, frameon=False)               # under the panels; bbox_inches="tight" keeps it
    fig.suptitle(f"BackSplit Segment after Apply: held-out demo case {case}, axial slice {k}\n"
                 f"{summary_line(summaries.get(case, {}))}", fontsize=12)
    footer = [NOTE,
              f"Case: the held-out case with the largest reference lesion ({reference_ml:.2f} ml); slice: the largest "
              f"reference lesion area. Lesion Dice of this case: {dice:.2f}. Synthetic CT from KiTS23 kidney "
              f"labelmaps; target cyst, support structures tumor and kidney; {budget_line(manifest)}."]
    fig.text(0.5, -0.45 / height, "\n".join(textwrap.fill(line, 170) for line in footer), ha="center", va="top",
             fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.png")
    fig.savefig(tmp, bbox_inches="tight", pad_inches=0.12, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(out)
    print(f"{out}: case {case}, slice {k}, lesion Dice {dice:.2f}")
    return out


def make_compare(demo: Path, out: Path) -> None:
    evaluation = demo / "evaluation"
    if not (evaluation / "binary.csv").is_file():
        print(f"compare: {evaluation}/binary.csv missing (needs the full demo with both models); skipped")
        return
    from backsplit.evaluation.slices import read_label_table, values_with_role

    test = demo / "nnUNet_raw" / TEST_DATASET
    targets = values_with_role(read_label_table(demo / "predictions" / "backsplit"), "target")
    case, _ = choose_case(test / "labelsTr", targets)
    run(BACKSPLIT + ["compare", evaluation / "binary.csv", evaluation / "backsplit.csv", "--out", out,
                     "--case", case, "--images", test / "imagesTr", "--references", test / "labelsTr",
                     "--predictions-a", demo / "predictions" / "binary",
                     "--predictions-b", demo / "predictions" / "backsplit"])


def make_study() -> None:
    import csv

    from backsplit.study.plots import learning_curves, paired_differences

    for folder in sorted((ROOT / "docs" / "results").glob("*/")):
        report = folder / "report.md"
        steps = re.search(r"(\d+) epochs x (\d+) iterations", report.read_text(encoding="utf-8")) \
            if report.is_file() else None
        per_case = list(csv.DictReader((folder / "per_case.csv").open())) if (folder / "per_case.csv").is_file() \
            else []
        curves = list(csv.DictReader((folder / "curves.csv").open())) if (folder / "curves.csv").is_file() else []
        arms = list(dict.fromkeys(r["arm"] for r in per_case or curves))
        if curves:
            print(learning_curves(curves, arms, folder / "learning_curves.png", int(steps.group(2)) if steps else None))
        if per_case:
            print(paired_differences(per_case, arms, "binary", per_case[0]["target"],
                                     folder / "paired_differences.png"))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["demo", "compare", "study"], action="append",
                   help="make only these pictures (repeatable; default: demo and compare when a demo output exists, "
                        "and study)")
    p.add_argument("--demo-output", type=Path, default=ROOT / "demo-output", help="backsplit demo's --out folder")
    p.add_argument("--run-demo", action="store_true", help="run `backsplit demo` into --demo-output first")
    p.add_argument("--model", type=Path, help="BackSplit model folder (default: found in --demo-output)")
    p.add_argument("--device", default="auto", help="for the demo and the prediction (default auto)")
    p.add_argument("--epochs", type=int, default=8, help="demo training epochs (default 8, backsplit demo's)")
    p.add_argument("--iterations", type=int, default=100, help="iterations per epoch (default 100)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images", help="where the pictures go")
    args = p.parse_args(argv)
    only = set(args.only or ["demo", "compare", "study"])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    demo = args.demo_output.resolve()
    if args.run_demo:
        run(BACKSPLIT + ["demo", "--out", demo, "--device", args.device, "--epochs", args.epochs,
                         "--iterations", args.iterations, "--overwrite"])
    if "demo" in only:
        model = args.model or find_model(demo)
        case, _ = demo_case(demo, model)
        render_demo(demo, model, predictions(demo, model, args.device, case), args.out_dir / "slicer-result.png")
    if "compare" in only:
        make_compare(demo, args.out_dir / "compare-demo.png")
    if "study" in only:
        make_study()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
