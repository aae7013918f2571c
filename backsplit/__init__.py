"""BackSplit engine: Slicer-free dataset export, nnU-Net jobs, prediction and evaluation.

Nothing in this package imports Slicer or Qt; heavy optional dependencies (torch, nnunetv2)
are imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"
