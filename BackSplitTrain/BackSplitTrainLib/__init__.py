"""Panel logic of BackSplitTrain that needs no Qt (tested with slicer-core)."""
