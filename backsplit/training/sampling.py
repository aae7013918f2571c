"""Target-aware foreground sampling (pure part, no torch).

nnU-Net draws a third of its patches "forced foreground": centred on a voxel of a class present in the case, the
class chosen uniformly among the present classes. With support classes most of those patches land on organs, and on a
short budget the lesion is under-sampled. BackSplit's target sampling picks the class among the *target* classes
present in the case (falling back to nnU-Net's choice for a case without target voxels); support classes are still
supervised everywhere in every patch.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np


def choose_forced_class(class_locations: Mapping, target_labels: Sequence[int],
                        rng: np.random.Generator | None = None) -> Optional[int]:
    """A target label present in the case (uniformly among those present), or None to let nnU-Net choose."""
    present = [label for label in target_labels
               if label in class_locations and len(class_locations[label]) > 0]
    if not present:
        return None
    if rng is None:
        return present[np.random.randint(len(present))]
    return present[int(rng.integers(len(present)))]
