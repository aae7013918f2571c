"""Write named, possibly overlapping masks as a Slicer ``.seg.nrrd`` (via slicerio, no Slicer needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .geometry import Geometry


def write_seg_nrrd(path: Path, geometry: Geometry, masks: dict[str, np.ndarray],
                   colors: Optional[dict[str, Sequence[float]]] = None) -> None:
    """Write named (possibly overlapping) masks as a Slicer ``.seg.nrrd`` (layers where segments overlap)."""
    import slicerio

    segmentation = slicerio.create_segmentation(geometry.shape[::-1], geometry.ijk_to_lps())
    for name, mask in masks.items():
        segment = {"id": name, "name": name}
        if colors and name in colors:
            segment["color"] = [float(c) for c in colors[name]]
        slicerio.add_segment(segmentation, np.transpose(mask, (2, 1, 0)), segment)
    slicerio.write_segmentation(str(path), segmentation, compression_level=1)


