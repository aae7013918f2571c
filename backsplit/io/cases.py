"""Cases: image channels on one grid plus named segment masks, loaded one at a time.

A ``CaseSource`` knows how to load a case (from files, from a Slicer scene, from memory) and is cheap to keep:
an export of hundreds of cases holds a list of sources and loads one case at a time, so memory does not grow
with the number of cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from backsplit.io.geometry import Geometry


@dataclass
class Case:
    case_id: str
    channels: list[np.ndarray]                  # each (z, y, x), same shape as geometry.shape
    geometry: Geometry
    segments: dict[str, np.ndarray]             # segment name -> boolean mask (z, y, x) on the same grid
    colors: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    channel_geometries: Optional[list[Geometry]] = None  # as read, when they may differ (checked by validation)
    description: str = ""                      # where the case came from, for messages
    terminology: dict[str, str] = field(default_factory=dict)  # segment name -> Slicer terminology entry, if known


class CaseSource(Protocol):
    case_id: str
    description: str

    def load(self) -> Case:
        """Read the case (may raise InputError naming the case and file)."""


@dataclass
class InMemoryCaseSource:
    """A case that is already in memory (tests, benchmarks, the Slicer scene adapter)."""
    case: Case

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def description(self) -> str:
        return self.case.description or f"case {self.case.case_id}"

    def load(self) -> Case:
        return self.case


@dataclass
class LazyCaseSource:
    """A case produced by a function when it is needed (e.g. read from a Slicer scene or generated)."""
    case_id: str
    loader: Callable[[], Case]
    description: str = ""

    def load(self) -> Case:
        return self.loader()


def check_unique_ids(sources: Sequence[CaseSource]) -> None:
    from backsplit.errors import InputError

    seen: dict[str, str] = {}
    for source in sources:
        if source.case_id in seen:
            raise InputError(f"the case id is used twice ({seen[source.case_id]} and {source.description}); "
                             "give every case its own id", case=source.case_id)
        seen[source.case_id] = source.description


def unique_case_ids(found, folder) -> None:
    """Refuse a folder scan in which two files give the same case id (``a.nii.gz`` and ``a.nrrd`` were two cases 'a'
    with one output). ``found``: (case id, file path) pairs from one scan of ``folder``. Raises InputError naming
    both files of the first clash."""
    from pathlib import Path

    from backsplit.errors import InputError

    seen: dict[str, Path] = {}
    for case_id, path in found:
        other = seen.get(case_id)
        if other is not None and Path(other) != Path(path):
            raise InputError(f"two files give the case id '{case_id}': '{Path(other).name}' and '{Path(path).name}'; "
                             "each case needs one file (or one set of <case>_0000, <case>_0001 ... channel files): "
                             "move or rename one", case=case_id, path=str(folder))
        seen[case_id] = Path(path)
