"""Render docs/screenshot.png (the catalogue screenshot) from real BackSplit prediction files.

No Slicer runs where this project is built, so the figure is drawn with matplotlib from the files a prediction
writes, and says so on the image. It shows one axial slice of a held-out demo case: the CT, the predicted lesion
(target) and auxiliary (support structure) classes in the colours of the model's label table (``labels.json``,
from the model manifest), the reference lesion outline, and the lesion probability map.

Reproduce (about 10 minutes on 2 CPU cores; numbers in the figure's footnote come from the model manifest):

    export OMP_NUM_THREADS=1 OUT=/tmp/bs_shot
    .venv/bin/backsplit demo --out $OUT --cases 8 --test-cases 2 --stop-after export --overwrite
    .venv/bin/backsplit train $OUT/nnUNet_raw/Dataset501_DemoKidneyCyst --work-dir $OUT/work \\
        --model-dir $OUT/model -c 2d --fold all --epochs 6 --iterations-per-epoch 40 --val-iterations 4 \\
        --batch-size 12 --workers 0 --device cpu --seed 0 --overwrite
    .venv/bin/backsplit predict $OUT/model $OUT/nnUNet_raw/Dataset503_DemoKidneyCystTest/imagesTr \\
        --out $OUT/predictions --probabilities --device cpu --overwrite
    .venv/bin/python scripts/render_screenshot.py --case kits23_00297 \\
        --images $OUT/nnUNet_raw/Dataset503_DemoKidneyCystTest/imagesTr --predictions $OUT/predictions \\
        --references $OUT/nnUNet_raw/Dataset503_DemoKidneyCystTest/labelsTr --model $OUT/model \\
        --out docs/screenshot.png

matplotlib comes with nnU-Net (a dependency of nnunetv2); it is not needed by BackSplit itself.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

CT_WINDOW = (-160.0, 240.0)  # HU, soft-tissue window (level 40, width 400)
NOTE = ("Rendered from BackSplit prediction files (labelmap, labels.json, lesion probability map), "
        "not a Slicer screenshot.")


@dataclass(frozen=True)
class CaseFiles:
    image: Path
    labels: Path
    probability: Path
    label_table: Path
    reference: Optional[Path] = None
    manifest: Optional[Path] = None


def read_lps(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read an image re-oriented to LPS (SimpleITK's DICOMOrient), as a (z, y, x) array: axial slices ``a[k]`` have
    rows running anterior -> posterior and columns patient right -> left (radiological view). Spacing (x, y, z) mm."""
    import SimpleITK as sitk

    image = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    return sitk.GetArrayFromImage(image), tuple(image.GetSpacing())


def choose_slice(labels: np.ndarray, lesion_values: list[int], reference: Optional[np.ndarray]) -> int:
    """Axial slice with the most reference lesion voxels (chosen by the reference, not by how good the prediction
    looks); without a reference or lesion there, the most predicted lesion voxels; else the middle slice."""
    for volume in (reference, labels):
        if volume is None:
            continue
        counts = np.isin(volume, lesion_values).sum(axis=(1, 2))
        if counts.max() > 0:
            return int(counts.argmax())
    return labels.shape[0] // 2


def lesion_dice(labels: np.ndarray, reference: np.ndarray, lesion_values: list[int]) -> float:
    """Dice 2|P & R| / (|P| + |R|) of the lesion classes over the whole volume (1.0 when both are empty)."""
    predicted, truth = np.isin(labels, lesion_values), np.isin(reference, lesion_values)
    total = int(predicted.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((predicted & truth).sum()) / total


def _overlay(labels: np.ndarray, table: dict, alpha: dict[str, float]) -> np.ndarray:
    """RGBA image of the label slice: each class in its table colour, opacity by role."""
    rgba = np.zeros(labels.shape + (4,), dtype=float)
    for value, item in table.items():
        if int(value) == 0:
            continue
        mask = labels == int(value)
        rgba[mask, :3] = item["color"][:3]
        rgba[mask, 3] = alpha[item["role"]]
    return rgba


def render(files: CaseFiles, out: Path, case_id: str, slice_index: Optional[int] = None, dpi: int = 110) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    image, spacing = read_lps(files.image)
    labels, _ = read_lps(files.labels)
    probability, _ = read_lps(files.probability)
    reference = read_lps(files.reference)[0] if files.reference else None
    table = json.loads(files.label_table.read_text(encoding="utf-8"))
    lesion_values = [int(v) for v, item in table.items() if item["role"] == "target"]
    k = choose_slice(labels, lesion_values, reference) if slice_index is None else slice_index
    aspect = spacing[1] / spacing[0]
    ct = dict(cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], interpolation="nearest", aspect=aspect)

    fig, axes = plt.subplots(1, 3, figsize=(11.0, 3.3), dpi=dpi, layout="constrained")
    axes[0].imshow(image[k], **ct)
    axes[0].set_title("CT (synthetic demo case)")
    axes[1].imshow(image[k], **ct)
    axes[1].imshow(_overlay(labels[k], table, {"target": 0.85, "support": 0.45}), interpolation="nearest",
                   aspect=aspect)
    def role(item):
        return "lesion" if item["role"] == "target" else "support structure"
    handles = [Patch(color=item["color"][:3], label=f"{item['name']} ({role(item)})")
               for v, item in sorted(table.items(), key=lambda kv: int(kv[0])) if int(v) > 0]
    if reference is not None:
        outline = [patheffects.withStroke(linewidth=2.2, foreground="black")]  # visible on image and legend
        contour = axes[1].contour(np.isin(reference[k], lesion_values), levels=[0.5], colors="white",
                                  linewidths=1.0, linestyles="--")
        contour.set_path_effects(outline)
        handles.append(Line2D([], [], color="white", linestyle="--", path_effects=outline,
                              label="reference lesion (outline)"))
    title = "Predicted classes"
    if reference is not None:
        title += f" (lesion Dice, whole case: {lesion_dice(labels, reference, lesion_values):.2f})"
    axes[1].set_title(title, fontsize=10)
    axes[1].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8,
                   frameon=False)
    axes[2].imshow(image[k], **ct)
    shown = axes[2].imshow(np.ma.masked_less(probability[k], 0.02), cmap="magma", vmin=0.0, vmax=1.0,
                           interpolation="nearest", aspect=aspect, alpha=0.9)
    lesion_names = ", ".join(table[str(v)]["name"] for v in lesion_values)
    axes[2].set_title(f"Lesion probability ({lesion_names})")
    fig.colorbar(shown, ax=axes[2], shrink=0.8, pad=0.02, label="probability")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.01, 0.5, "R", color="yellow", transform=ax.transAxes, fontsize=8, va="center")
        ax.text(0.99, 0.5, "L", color="yellow", transform=ax.transAxes, fontsize=8, va="center", ha="right")
    fig.suptitle(f"BackSplit: lesion and auxiliary prediction on held-out demo case {case_id}, axial slice {k}",
                 fontsize=11)
    footer = [NOTE, "Images synthesised from real KiTS23 kidney label maps; target cyst, support structures tumor and "
              "kidney."]
    if files.manifest and files.manifest.is_file():
        footer.append(_training_note(json.loads(files.manifest.read_text(encoding="utf-8"))))
    import textwrap

    fig.text(0.5, -0.01, "\n".join(textwrap.fill(line, 150) for line in footer), ha="center", va="top", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.png")
    fig.savefig(tmp, bbox_inches="tight", pad_inches=0.1, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(out)
    return out


def _training_note(manifest: dict) -> str:
    """One line on how the model was trained, from backsplit_model.json (training/manifest.py's keys)."""
    epochs = manifest.get("completed_epochs", manifest.get("epochs"))
    planned = f" (of {manifest['epochs']} planned)" if manifest.get("epochs") not in (None, epochs) else ""
    parts = [f"nnU-Net v2 {manifest.get('configuration', '')}".strip(),
             f"{epochs} epochs{planned} x {manifest.get('iterations_per_epoch')} iterations of batch "
             f"{manifest.get('batch_size')}", f"device {manifest.get('device')}"]
    if manifest.get("source_dataset"):
        parts.append(f"trained on {manifest['source_dataset']}")
    if manifest.get("note"):
        parts.append(str(manifest["note"]))
    return "Model: " + ", ".join(parts) + ": a short CPU training, not a tuned model."


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", required=True, help="case id (e.g. kits23_00297)")
    p.add_argument("--images", type=Path, required=True, help="folder with <case>_0000.nii.gz")
    p.add_argument("--predictions", type=Path, required=True,
                   help="backsplit predict --probabilities output: <case>.nii.gz, <case>_lesion_probability.nii.gz, "
                        "labels.json")
    p.add_argument("--references", type=Path, default=None, help="folder with reference labelmaps <case>.nii.gz")
    p.add_argument("--model", type=Path, default=None, help="model folder (its backsplit_model.json for the footnote)")
    p.add_argument("--slice", type=int, default=None, help="axial slice index after LPS re-orientation (default: "
                                                           "the slice with the largest reference lesion area)")
    p.add_argument("--dpi", type=int, default=110, help="resolution (default 110)")
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.png"), help="PNG to write")
    args = p.parse_args(argv)
    files = CaseFiles(image=args.images / f"{args.case}_0000.nii.gz", labels=args.predictions / f"{args.case}.nii.gz",
                      probability=args.predictions / f"{args.case}_lesion_probability.nii.gz",
                      label_table=args.predictions / "labels.json",
                      reference=args.references / f"{args.case}.nii.gz" if args.references else None,
                      manifest=args.model / "backsplit_model.json" if args.model else None)
    for path in (files.image, files.labels, files.probability, files.label_table, files.reference, files.manifest):
        if path is not None and not path.is_file():
            raise SystemExit(f"render_screenshot: {path} does not exist; run the commands in this script's help first")
    out = render(files, args.out, args.case, args.slice, args.dpi)
    print(f"{out}: {out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
