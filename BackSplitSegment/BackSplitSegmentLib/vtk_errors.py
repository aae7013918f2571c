"""VTK and MRML report errors through the output window and carry on; turn them into exceptions here."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import vtk

from backsplit.errors import InputError


class VtkErrorCollector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    @vtk.calldata_type(vtk.VTK_STRING)
    def _on_error(self, caller, event, text) -> None:
        self.errors.append(str(text).strip())


@contextlib.contextmanager
def vtk_errors_raise(what: str, *, case: Optional[str] = None, segment: Optional[str] = None) -> Iterator[None]:
    """Run VTK/MRML calls; if any of them reported an error, raise InputError naming what was being done."""
    collector = VtkErrorCollector()
    window = vtk.vtkOutputWindow.GetInstance()
    tag = window.AddObserver(vtk.vtkCommand.ErrorEvent, collector._on_error)
    try:
        yield
    finally:
        window.RemoveObserver(tag)
    if collector.errors:
        detail = collector.errors[-1].splitlines()
        detail = next((line for line in reversed(detail) if line.strip()), "")
        raise InputError(f"{what} failed in Slicer: {detail}", case=case, segment=segment)
