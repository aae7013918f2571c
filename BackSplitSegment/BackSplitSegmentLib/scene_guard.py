"""``temporary_nodes``: every node added to the scene inside the block is removed at its end (labelmaps, their
display nodes, the colour table ``ExportSegmentsToLabelmapNode`` creates for a labelmap without a User colour node,
...), so nothing an export makes for its own use is saved with the user's scene. Works the same in the application
and in slicer-core (the scene's ``NodeAddedEvent``; docs/SLICER_COMPATIBILITY.md).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import vtk


@contextlib.contextmanager
def temporary_nodes(scene) -> Iterator[list]:
    """Yield the list of nodes added to ``scene`` inside the block; remove them (newest first) at the end."""
    added: list = []

    def on_added(caller, event, node) -> None:
        added.append(node)

    on_added.CallDataType = vtk.VTK_OBJECT
    tag = scene.AddObserver(scene.NodeAddedEvent, on_added)
    try:
        yield added
    finally:
        scene.RemoveObserver(tag)
        for node in reversed(added):
            if node.GetScene() is scene:
                scene.RemoveNode(node)
