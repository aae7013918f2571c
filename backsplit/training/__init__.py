"""nnU-Net v2 training for BackSplit datasets, run in a child process.

``options`` (what to train), ``datasets`` (checks on an exported dataset), ``environment`` (nnU-Net variables for the
child only), ``process`` (start / poll / cancel a child process tree), ``worker`` (the child: plan, preprocess,
train, write the model folder), ``trainer`` (nnU-Net trainer subclass: epochs, learning rate, progress events,
target-aware sampling), ``manifest`` (the model folder's ``backsplit_model.json``), ``lock`` (one training per
output folder). Only ``worker`` and ``trainer`` import torch / nnunetv2.
"""
