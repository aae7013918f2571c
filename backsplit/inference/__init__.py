"""Prediction with a trained BackSplit model: ``model`` (read and load a model folder), ``predict`` (one case from
arrays, on the input's own grid), ``files`` (files and folders, outputs and summaries), ``worker`` / ``process``
(the same in a child process, for Slicer; ``scenearrays``: the result cut for Slicer's stepwise import).
Only ``model.load_predictor`` and what calls it import torch/nnunetv2."""
