"""Show the learned context of a training in the scene: run ``backsplit context show`` in a child process (the
generator needs torch; Slicer stays usable), then load each case's ``.seg.nrrd`` as a segmentation node on the
case's image volume.

No Qt here: the panel starts the job with ``start_context_show``, polls ``job.poll_events()`` from its timer and,
when the child has ended, calls ``finish_context_show``. Segmentations are read with Slicer's own
``vtkMRMLSegmentationStorageNode`` (as Slicer's segmentation reader does; docs/SLICER_COMPATIBILITY.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import slicer

from backsplit.errors import BackSplitError, InputError
from backsplit.runtime.exits import ended_text
from backsplit.training.colab.show_cases import ShowRequest, read_summary
from backsplit.training.colab.show_process import ShowContextProcess

PANEL_CASES = 3          # the panel shows the first few training cases (all of them: the command line)
NODE_SUFFIX = " learned context"


def context_output_folder(work_dir: Path, dataset_dir: Path, stamp: Optional[str] = None) -> Path:
    """A new folder for one showing: ``<work>/learned_context/<dataset>-<YYYYmmdd-HHMMSS>`` (never reused)."""
    return Path(work_dir) / "learned_context" / f"{Path(dataset_dir).name}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"


def start_context_show(work_dir: Path, dataset_dir: Path, *, cases: Sequence[str] = (), out_dir: Optional[Path] = None,
                       device: str = "auto", python: Optional[str] = None) -> ShowContextProcess:
    """Start the child process. ``cases`` empty: the dataset's first ``PANEL_CASES`` training cases."""
    from backsplit.datasets.folder import load_dataset_folder

    dataset = load_dataset_folder(Path(dataset_dir))
    chosen = list(cases) or dataset.case_ids[:PANEL_CASES]
    request = ShowRequest(work_dir=str(work_dir), dataset_dir=str(dataset.folder),
                          out_dir=str(out_dir or context_output_folder(work_dir, dataset.folder)), cases=chosen,
                          device=device)
    return ShowContextProcess(request, python=python).start()


def finish_context_show(job: ShowContextProcess) -> list:
    """After the child ended: its error as InputError, else the written cases loaded into the scene (see
    ``load_context_segmentations``)."""
    job.poll_events()
    if job.failure:   # the worker's error event, else why it ended (a signal, an exit code) and its last output
        raise InputError(job.failure)
    if job.returncode not in (0, None):   # cancelled
        raise InputError(f"showing the learned context {ended_text(job.returncode)}; see the log")
    return load_context_segmentations(Path(job.request.out_dir), [c["case_id"] for c in job.cases] or None)


def load_context_segmentations(out_dir: Path, case_ids: Optional[Sequence[str]] = None,
                               volumes: Optional[dict] = None) -> list:
    """Load ``<out>/<case>.seg.nrrd`` of each case (default: all in ``learned_context.json``) as a segmentation node
    "<case> learned context" whose reference geometry is the case's volume: ``volumes[case]`` if given, else a scalar
    volume node of the scene named like the case, else the case's image loaded from the dataset. Returns
    [(case id, volume node, segmentation node)]. Raises InputError naming the case and file that cannot be read."""
    summary = read_summary(out_dir)
    entries = {c["case_id"]: c for c in summary.get("cases", [])}
    loaded = []
    for case_id in case_ids or list(entries):
        if case_id not in entries:
            raise InputError("this case is not in the folder's learned_context.json", case=case_id, path=str(out_dir))
        entry = entries[case_id]
        volume = (volumes or {}).get(case_id) or _scene_volume(case_id) or _load_volume(entry["image"], case_id)
        loaded.append((case_id, volume, _load_segmentation(Path(entry["segmentation"]), case_id, volume)))
    return loaded


def _scene_volume(name: str):
    nodes = slicer.mrmlScene.GetNodesByClassByName("vtkMRMLScalarVolumeNode", name)
    node = nodes.GetItemAsObject(0) if nodes.GetNumberOfItems() else None
    return None if node is None or node.IsA("vtkMRMLLabelMapVolumeNode") else node


def _load_volume(path: str, case_id: str):
    if not Path(path).is_file():
        raise InputError("the case's image is not there any more; load the case's volume yourself", case=case_id,
                         path=path)
    volume = slicer.modules.volumes.logic().AddArchetypeVolume(str(path), case_id, 0)
    if volume is None:
        raise InputError("Slicer could not read the case's image", case=case_id, path=path)
    return volume


def _load_segmentation(path: Path, case_id: str, volume):
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case_id}{NODE_SUFFIX}")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    try:
        storage.SetFileName(str(path))
        if not path.is_file() or not storage.ReadData(node):
            raise InputError("Slicer could not read the learned-context segmentation", case=case_id, path=str(path))
    except BackSplitError:
        scene.RemoveNode(node)
        raise
    finally:
        scene.RemoveNode(storage)        # a scene save writes the node into the scene's folder, not over this file
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    return node
