"""The interactive loop in the scene: a (corrected) segmentation node and its volume become one engine case that is
appended to a BackSplit dataset and its binary twin as a new dataset version (``backsplit.datasets.add``).

Segments are read by Slicer's own segmentation logic into the volume's geometry (``scene_cases.case_from_scene``),
exactly as export reads them. Support segments that the user deleted from the prediction are recorded as absent
(never filled with background silently: the result lists them); segments the dataset does not know are refused
with a suggested rename (``UnknownSegmentsError.suggestions``). No Qt here. The panel runs ``start_add_scene_case``:
the case is read from the scene in short timer steps and added by a child process (``backsplit.datasets.
add_worker``), so no whole-volume work runs in Slicer's process; scripts call ``add_scene_case`` (all at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from backsplit.datasets.add import AddRequest, AddResult, iter_add
from backsplit.datasets.policy import ON_EXISTING_REFUSE, ON_EXISTING_RENAME
from backsplit.datasets.validation import MISSING_ABSENT, MISSING_ERROR
from backsplit.errors import InputError
from backsplit.io.cases import LazyCaseSource
from backsplit.runtime.progress import ProgressEvent, Stage

from .scene_cases import case_from_scene, unique_case_id


@dataclass
class SceneAddOptions:
    dataset_dir: Path
    case_id: str = ""                          # default: the volume's name (made file-name safe)
    new_id_if_taken: bool = True               # an existing id gets <id>_<n>; False: refused
    removed_supports_absent: bool = True       # a support segment the user deleted is recorded as absent
    allow_negative: bool = False               # keep a case whose lesion segment is empty
    name_mapping: dict = field(default_factory=dict)
    ignore_segments: Sequence[str] = ()


def scene_case_id(volume, requested: str = "") -> str:
    """The case id: the requested one, or the volume's name with characters that cannot be in a file name replaced."""
    return unique_case_id(requested.strip() or (volume.GetName() if volume is not None else "case"), set())


def scene_source(volume, segmentation_node, case_id: str, extra_channels: Sequence = ()) -> LazyCaseSource:
    if volume is None:
        raise InputError("choose the volume the segmentation was drawn on")
    if segmentation_node is None:
        raise InputError("choose the segmentation to add (e.g. the corrected prediction)")
    description = f"case '{case_id}' (volume '{volume.GetName()}', segmentation '{segmentation_node.GetName()}')"
    return LazyCaseSource(case_id, lambda: case_from_scene(case_id, volume, segmentation_node, extra_channels),
                          description)


def add_request(options: SceneAddOptions) -> AddRequest:
    if not options.dataset_dir or not str(options.dataset_dir).strip():
        raise InputError("choose the BackSplit dataset folder (DatasetNNN_Name) to add the case to")
    return AddRequest(Path(options.dataset_dir), name_mapping=dict(options.name_mapping),
                      ignore_segments=list(options.ignore_segments),
                      on_existing_id=ON_EXISTING_RENAME if options.new_id_if_taken else ON_EXISTING_REFUSE,
                      allow_negative_cases=options.allow_negative,
                      missing_segments=MISSING_ABSENT if options.removed_supports_absent else MISSING_ERROR)


def iter_add_scene_case(volume, segmentation_node, options: SceneAddOptions, extra_channels: Sequence = (),
                        cancel: Callable[[], bool] = lambda: False) -> Iterator[ProgressEvent]:
    """Step the add (the final event carries the AddResult in ``data['result']``)."""
    source = scene_source(volume, segmentation_node, scene_case_id(volume, options.case_id), extra_channels)
    return iter_add([source], add_request(options), cancel)


def add_scene_case(volume, segmentation_node, options: SceneAddOptions,
                   extra_channels: Sequence = ()) -> AddResult:
    """Add one case from the scene as a new dataset version, all at once; returns where it went."""
    result: Optional[AddResult] = None
    for event in iter_add_scene_case(volume, segmentation_node, options, extra_channels):
        if event.stage == Stage.DONE:
            result = event.data["result"]
    assert result is not None
    return result


def start_add_scene_case(volume, segmentation_node, options: SceneAddOptions, extra_channels: Sequence = (),
                         python: Optional[str] = None, read_budget_s: float = 0.04):
    """The panel's *Add to dataset*: a ``case_handover.HandoverJob`` to step from a timer (``step()`` until
    ``done``; ``cancel()``, ``close()`` never wait); when finished, ``add_result(job)`` is the ``AddResult``. The
    dataset is written as ``add_scene_case`` writes it, byte for byte. Raises InputError before anything starts for
    a missing volume, segmentation or dataset folder."""
    from backsplit.datasets.add_worker import AddProcess

    from .case_handover import HandoverJob
    from .scene_cases import SceneCase

    case_id = scene_case_id(volume, options.case_id)
    described = scene_source(volume, segmentation_node, case_id, extra_channels).description   # checks the nodes
    request = add_request(options)
    source = SceneCase(case_id, volume, segmentation_node, list(extra_channels)).source()
    return HandoverJob([source], lambda root: AddProcess(request, [[case_id, described]], root, python).start(),
                       read_budget_s)


def add_result(job) -> AddResult:
    """The ``AddResult`` of a finished ``start_add_scene_case`` job."""
    from backsplit.datasets.add_worker import result_from_json

    return result_from_json(job.data["result"])


def result_text(result: AddResult) -> str:
    """What the panel shows after an add."""
    return "\n".join(result.summary_lines())
