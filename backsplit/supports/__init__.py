"""Support structures without drawing them (paper 001 §4.3-4.5, Appendix B).

``runners``: organ models behind one interface (any nnU-Net v2 model folder through ``backsplit.inference``;
TotalSegmentator in a child process). ``generate``: run a model over a case list and write a new ``<case>.seg.nrrd``
per case (user segments + generated ones). ``niftilabels``: TotalSegmentator's multi-label NIfTI (class map in the
header extension). ``suggest``: rank candidate support structures (host organ, neighbour, false-positive prone,
coverage) from masks, one case at a time. ``worker``: generation in a child process (Slicer).
"""
