"""Scene adapters and panel logic of BackSplitSegment (import slicer/vtk only, never qt: tested with slicer-core)."""
