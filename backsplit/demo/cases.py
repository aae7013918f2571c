"""Demo cases: CT-like images synthesised from real KiTS23 kidney label maps shipped with the package.

The label maps (``backsplit/data/kits23``; KiTS23 challenge, MIT licence, Heller et al.) are real anatomy: kidney,
tumor and cyst, resampled to 2 mm. No CT images are shipped, so the images are **synthetic**: each class gets a
CT-like intensity, the body a soft-tissue background with smooth low-frequency variation and fat, plus fluid-filled
look-alike blobs *outside* the kidney that have the cyst's intensity. Those look-alikes are what makes the
background worth splitting: intensity alone cannot tell a cyst from them, the host organ can. Blur and noise
make the edges and textures CT-like. Every result obtained on these cases is a result on synthetic images.

Segments are what a Slicer user would draw: ``kidney`` covers the whole organ including its lesions, ``tumor`` and
``cyst`` the lesions. With targets [cyst] and supports [tumor, kidney] the BackSplit labels are
1 cyst, 2 tumor, 3 kidney (parenchyma): the earliest class wins the overlaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from backsplit.io.cases import Case, LazyCaseSource
from backsplit.io.geometry import Geometry
from backsplit.io.segfile import write_seg_nrrd
from backsplit.labels.terminology import terminology_for_name

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kits23"
KITS_LABELS = {1: "kidney", 2: "tumor", 3: "cyst"}
DEMO_TARGETS = ("cyst",)
DEMO_SUPPORTS = ("tumor", "kidney")
DEMO_COLORS = {"kidney": (0.85, 0.55, 0.45), "tumor": (0.9, 0.8, 0.3), "cyst": (0.25, 0.55, 0.95)}

# Mean intensities (HU-like) per tissue.
HU_BODY, HU_FAT, HU_KIDNEY, HU_TUMOR, HU_CYST, HU_AIR = 45.0, -90.0, 170.0, 95.0, 8.0, -900.0


def demo_label_files() -> list[Path]:
    files = sorted(DATA_DIR.glob("kits23_*.nii.gz"))
    if not files:
        raise FileNotFoundError(f"no demo label maps in {DATA_DIR}; the package is incomplete, reinstall it")
    return files


def read_label_map(path: Path) -> tuple[np.ndarray, Geometry]:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image).astype(np.uint8), Geometry.from_sitk(image)


def _gaussian(array: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """Gaussian smoothing with SimpleITK (bundled with Slicer, unlike SciPy)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array.astype(np.float32))
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, float(sigma_voxels)))


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    field = _gaussian(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-6)


def _ball(shape: Sequence[int], centre: Sequence[float], radius_vox: Sequence[float]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radius_vox))
    return dist <= 1.0


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.BinaryDilate(image, [radius] * 3)).astype(bool)


def _count_blobs(mask: np.ndarray) -> int:
    import SimpleITK as sitk

    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)))
    return int(sitk.GetArrayViewFromImage(components).max())


def synthesize_image(labels: np.ndarray, geometry: Geometry, seed: int,
                     n_lookalikes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """CT-like int16 image from a KiTS label map; also returns the mask of the look-alike blobs."""
    rng = np.random.default_rng(seed)
    shape = labels.shape
    spacing_zyx = np.asarray(geometry.spacing[::-1])
    image = HU_BODY + 12.0 * _smooth_noise(rng, shape, 6.0)
    fat = _smooth_noise(rng, shape, 4.0) > 1.1
    image[fat] = HU_FAT + 10.0 * rng.standard_normal(int(fat.sum()))
    organ = labels > 0
    near_organ = _dilate(organ, 3)
    lookalikes = np.zeros(shape, dtype=bool)
    for _ in range(n_lookalikes * 10):
        if lookalikes.any() and _count_blobs(lookalikes) >= n_lookalikes:
            break
        radius_mm = rng.uniform(4.0, 9.0)
        centre = [rng.uniform(0, n) for n in shape]
        blob = _ball(shape, centre, radius_mm / spacing_zyx)
        if blob.sum() < 8 or (blob & near_organ).any():
            continue
        lookalikes |= blob
    image[lookalikes] = HU_CYST
    image[labels == 1] = HU_KIDNEY + 8.0 * _smooth_noise(rng, shape, 2.0)[labels == 1]
    image[labels == 2] = HU_TUMOR + 12.0 * _smooth_noise(rng, shape, 1.5)[labels == 2]
    image[labels == 3] = HU_CYST
    image = _gaussian(image, 0.7)
    image += 10.0 * rng.standard_normal(shape)
    return np.clip(np.round(image), -1024, 3071).astype(np.int16), lookalikes


def demo_case(path: Path, seed: int = 0, whole_organ: bool = True) -> Case:
    """One demo case: synthetic CT plus the segments kidney, tumor and cyst. ``whole_organ``: the kidney segment
    covers its lesions, as a user would draw it (overlapping segments); else kidney parenchyma only (KiTS's labels)."""
    labels, geometry = read_label_map(path)
    case_id = path.name[: -len(".nii.gz")]
    image, _ = synthesize_image(labels, geometry, seed + _stable_hash(case_id))
    segments = {"kidney": labels > 0 if whole_organ else labels == 1, "tumor": labels == 2, "cyst": labels == 3}
    return Case(case_id, [image], geometry, segments, dict(DEMO_COLORS), description=f"demo case {case_id}")


def _stable_hash(text: str) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(text)) % 100_000


def demo_case_sources(n_cases: Optional[int] = None, seed: int = 0, whole_organ: bool = True) -> list[LazyCaseSource]:
    files = demo_label_files()[: n_cases or None]
    return [LazyCaseSource(p.name[: -len(".nii.gz")], (lambda p=p: demo_case(p, seed, whole_organ)),
                           f"demo case {p.name}") for p in files]


def write_demo_case_files(out_dir: Path, n_cases: Optional[int] = None, seed: int = 0,
                          whole_organ: bool = True) -> list[tuple[Path, Path]]:
    """Write demo cases as ``<case>.nii.gz`` (synthetic CT) + ``<case>.seg.nrrd``; returns (image, segmentation).
    With ``whole_organ=False`` the segments do not overlap and SimpleITK alone writes them (inside Slicer)."""
    import SimpleITK as sitk

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in demo_case_sources(n_cases, seed, whole_organ):
        case = source.load()
        image_path = out_dir / f"{case.case_id}.nii.gz"
        seg_path = out_dir / f"{case.case_id}.seg.nrrd"
        sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(image_path), True)
        write_seg_nrrd(seg_path, case.geometry, case.segments, case.colors,
                       {name: terminology_for_name(name) or "" for name in case.segments})
        written.append((image_path, seg_path))
    return written
