"""The training panel's list of models to fine-tune from: the model manager's models folder
(``backsplit.models``: ``--models-dir``, ``$BACKSPLIT_MODELS_DIR`` or ``~/BackSplit/models``), filtered to models that
take the dataset's channel count, newest first. No Qt here; the widget fills a combo box from these pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import read_dataset_json
from backsplit.errors import InputError


def dataset_channel_count(dataset_dir: Optional[Path]) -> Optional[int]:
    """Channels of an exported dataset (``dataset.json`` ``channel_names``); None when unknown or unreadable."""
    if not dataset_dir:
        return None
    try:
        return len(read_dataset_json(Path(dataset_dir), required=("channel_names",))["channel_names"])
    except (InputError, OSError, TypeError):
        return None


def fine_tune_choices(models_dir: Optional[Path], dataset_dir: Optional[Path]) -> list[tuple[str, Path]]:
    """(label, model folder) pairs for the panel, newest first: models taking the dataset's channel count (all
    models while no dataset is chosen). Labels as ``backsplit.models.catalog.choice_label``."""
    from backsplit.models.catalog import choice_label, list_models, models_for_channels
    from backsplit.models.location import models_dir as default_models_dir

    entries = list_models(default_models_dir(models_dir))
    channels = dataset_channel_count(dataset_dir)
    if channels is not None:
        entries = models_for_channels(entries, channels)
    return [(choice_label(entry), entry.folder) for entry in entries]
