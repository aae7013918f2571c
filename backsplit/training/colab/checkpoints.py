"""The generator's state inside nnU-Net checkpoints, and its removal from exported models.

nnU-Net's checkpoint dict (``network_weights``, ``optimizer_state``, ...) gets one more key, ``GENERATOR_KEY``:
the generator's weights, its Adam state, the spec and the iteration counters, so a learned-context training resumes
where it stopped. nnU-Net's predictor reads ``network_weights`` only, so these checkpoints stay ordinary nnU-Net
checkpoints. Exported model folders (``--model-dir``) hold the segmentation network only: ``strip_generator`` removes
the key from their checkpoints. Checkpoints are read with ``weights_only=False`` as nnU-Net does (trusted files only).
"""

from __future__ import annotations

import os
from pathlib import Path

GENERATOR_KEY = "backsplit_context_generator"


def add_generator_state(path: Path, state: dict) -> None:
    """Add the generator's state to the checkpoint nnU-Net just wrote (written aside, then moved into place)."""
    import torch

    path = Path(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint[GENERATOR_KEY] = state
    _save(checkpoint, path)


def read_generator_state(path_or_checkpoint):
    """The generator state of a checkpoint (path or loaded dict), or None when it has none."""
    import torch

    checkpoint = path_or_checkpoint if isinstance(path_or_checkpoint, dict) else \
        torch.load(path_or_checkpoint, map_location="cpu", weights_only=False)
    return checkpoint.get(GENERATOR_KEY)


def strip_generator(folder: Path) -> list[Path]:
    """Remove the generator from every ``*.pth`` checkpoint in ``folder``; returns the files rewritten."""
    import torch

    rewritten = []
    for path in sorted(Path(folder).glob("*.pth")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(checkpoint, dict) and GENERATOR_KEY in checkpoint:
            del checkpoint[GENERATOR_KEY]
            _save(checkpoint, path)
            rewritten.append(path)
    return rewritten


def _save(checkpoint: dict, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.partial")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
