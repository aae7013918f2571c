"""Draw one axial slice the way a viewer shows a BackSplit prediction: CT in a soft-tissue window, targets filled in
their colour, support structures muted, the reference lesion as a dashed outline, a scale bar, orientation letters,
and legend entries that name each class with its role. Shared by ``backsplit compare``'s picture and the
documentation pictures (scripts/make_pictures.py).

Arrays are (z, y, x) re-oriented to LPS (``read_lps``): an axial slice ``a[k]`` has rows running anterior to posterior
and columns patient right to left (the radiological view Slicer shows). Class tables are ``labels.json`` as
``backsplit predict`` writes it: ``{"1": {"name": "cyst", "role": "target", "color": [r, g, b]}, ...}`` (colours
0-1). matplotlib is imported inside the functions (it comes with nnU-Net).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

# Slicer's "Abdomen" window preset: width 350 HU, level 40 HU.
CT_WINDOW = (40.0 - 175.0, 40.0 + 175.0)
TARGET_ALPHA, SUPPORT_ALPHA = 0.85, 0.35
ROLE_TEXT = {"target": "target (lesion)", "support": "support structure"}


def oriented_lps(array: np.ndarray, geometry) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``array`` (z, y, x) on ``geometry`` (``backsplit.io.geometry.Geometry``) re-oriented to LPS with SimpleITK's
    DICOMOrient; returns the new (z, y, x) array and its spacing (x, y, z) in mm."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    image = sitk.DICOMOrient(image, "LPS")
    return sitk.GetArrayFromImage(image), tuple(image.GetSpacing())


def read_lps(path: Path, case_id: str, what: str = "image") -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read an image with BackSplit's checks (``backsplit.io.imagefile.read_image``: InputError naming the case and
    file when it is missing, unreadable or not 3D) and re-orient it to LPS; (z, y, x) array and spacing (x, y, z)."""
    from backsplit.io.imagefile import read_image

    array, geometry = read_image(Path(path), case_id, what)
    return oriented_lps(array, geometry)


def read_label_table(folder: Path) -> Optional[dict]:
    """``labels.json`` of a predictions folder (value -> name, role, colour), or None when the folder has none."""
    path = Path(folder) / "labels.json"
    if not path.is_file():
        return None
    return {str(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def values_with_role(table: dict, role: str) -> list[int]:
    return [int(v) for v, item in table.items() if item.get("role") == role]


def largest_slice(mask: np.ndarray) -> int:
    """Index of the axial slice with the most voxels of the boolean (z, y, x) ``mask``; the middle slice if empty."""
    counts = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(counts.argmax()) if counts.max() > 0 else mask.shape[0] // 2


def class_overlay(labels: np.ndarray, table: dict) -> np.ndarray:
    """RGBA (y, x, 4) of a label slice: targets in their colour at TARGET_ALPHA, support structures at
    SUPPORT_ALPHA, background transparent."""
    rgba = np.zeros(labels.shape + (4,), dtype=float)
    for value, item in table.items():
        if int(value) == 0 or item.get("role") not in ROLE_TEXT:
            continue
        mask = labels == int(value)
        rgba[mask, :3] = item["color"][:3]
        rgba[mask, 3] = TARGET_ALPHA if item["role"] == "target" else SUPPORT_ALPHA
    return rgba


def draw_slice(ax, image: np.ndarray, labels: Optional[np.ndarray], table: Optional[dict],
               spacing: tuple[float, float, float], reference_lesion: Optional[np.ndarray] = None,
               window: tuple[float, float] = CT_WINDOW, scale_mm: float = 10.0) -> set[int]:
    """Draw the CT slice ``image`` (y, x, HU) with the classes of ``labels`` (y, x) from ``table``, support
    structures with a thin outline, the boolean ``reference_lesion`` (y, x) as a dashed white outline with a dark
    stroke, a ``scale_mm`` scale bar and R/L letters. Returns the class values present on the slice (for the
    legend)."""
    from matplotlib import patheffects

    aspect = spacing[1] / spacing[0]
    ax.imshow(image, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest", aspect=aspect)
    present: set[int] = set()
    if labels is not None and table:
        present = {int(v) for v in np.unique(labels) if str(int(v)) in table and int(v) != 0}
        ax.imshow(class_overlay(labels, table), interpolation="nearest", aspect=aspect)
        for value in sorted(present):
            item = table[str(value)]
            if item.get("role") == "support":
                ax.contour(labels == value, levels=[0.5], colors=[item["color"][:3]], linewidths=0.7)
    if reference_lesion is not None and reference_lesion.any():
        contour = ax.contour(reference_lesion.astype(float), levels=[0.5], colors="white", linewidths=1.1,
                             linestyles="--")
        contour.set_path_effects([patheffects.withStroke(linewidth=2.4, foreground="black")])
    scale_bar(ax, image.shape, spacing[0], scale_mm)
    for x, letter, align in ((0.015, "R", "left"), (0.985, "L", "right")):
        ax.text(x, 0.5, letter, color="yellow", transform=ax.transAxes, fontsize=9, va="center", ha=align,
                fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    return present


def scale_bar(ax, shape: tuple[int, int], column_mm: float, length_mm: float = 10.0) -> None:
    """A white bar of ``length_mm`` (columns are ``column_mm`` apart) in the lower right corner, labelled."""
    from matplotlib import patheffects

    rows, columns = shape
    length = length_mm / column_mm
    x1 = columns * 0.96
    y = rows * 0.94
    stroke = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    ax.plot([x1 - length, x1], [y, y], color="white", lw=2.5, solid_capstyle="butt", path_effects=stroke)
    ax.text(x1 - length / 2, y - rows * 0.025, f"{length_mm:g} mm", color="white", ha="center", va="bottom",
            fontsize=8, path_effects=stroke)


def legend_handles(table: dict, values: Iterable[int], reference: bool = True) -> list:
    """Legend entries: one patch per class in ``values`` ("cyst: target (lesion)", "kidney: support structure"),
    targets first, and with ``reference`` a dashed line "reference lesion (outline)"."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    items = [(int(v), table[str(int(v))]) for v in values if str(int(v)) in table]
    items.sort(key=lambda vi: (vi[1].get("role") != "target", vi[0]))
    handles = [Patch(facecolor=(*item["color"][:3], TARGET_ALPHA if item["role"] == "target" else SUPPORT_ALPHA),
                     edgecolor=item["color"][:3], label=f"{item['name']}: {ROLE_TEXT.get(item['role'], item['role'])}")
               for _, item in items]
    if reference:
        handles.append(Line2D([], [], color="white", linestyle="--", lw=1.1, label="reference lesion (outline)",
                              path_effects=[patheffects.withStroke(linewidth=2.4, foreground="black")]))
    return handles
