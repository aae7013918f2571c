"""Learned context labels (CoLab, seed paper 002 §IV: Li et al., IEEE TMI 2023) as an nnU-Net trainer.

A task generator network proposes soft context labels for background voxels near the lesions; it is trained with
meta-gradients so that the labels it proposes make the segmentation network better at the lesions. The segmentation
network has ``1 + T + S + t`` outputs (background, targets, supports, ``t`` learned context classes) and is an
ordinary nnU-Net network: inference treats the learned context classes like support classes and never needs the
generator.

Modules: ``spec`` (options and the extended dataset.json, pure), ``aggregation`` (Eq. 5-9, torch + scipy),
``losses`` (soft-target DC+CE, the ROI objective), ``meta`` (the meta-gradient, Eq. 12-15), ``generator`` (the task
generator network), ``trainer`` (the nnU-Net trainer subclass), ``checkpoints`` (generator state in checkpoints,
stripped from exported models). Only ``spec`` is imported outside the training child process.
"""

from backsplit.training.colab.spec import (
    LEARNED,
    LEARNED_TRAINER,
    LearnedContextSpec,
    extend_dataset_json,
    parse_context,
    trainer_name,
)

__all__ = ["LEARNED", "LEARNED_TRAINER", "LearnedContextSpec", "extend_dataset_json", "parse_context", "trainer_name"]
