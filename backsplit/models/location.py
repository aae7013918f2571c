"""Where the user's models live: ``--models-dir``, else ``$BACKSPLIT_MODELS_DIR``, else ``~/BackSplit/models``.

Every direct sub-folder holding a ``backsplit_model.json`` is a model; its folder name is the model's name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from backsplit.errors import InputError

ENV_VAR = "BACKSPLIT_MODELS_DIR"
DEFAULT = Path("~") / "BackSplit" / "models"


def models_dir(explicit: Optional[Path] = None) -> Path:
    """The models location (not created here)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return DEFAULT.expanduser()


def check_model_name(name: str) -> str:
    """A model name is a folder name: letters, digits, '.', '-' and '_' (no path separators, not hidden)."""
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise InputError(f"the model name '{name}' cannot be a folder name; use letters, digits, '.', '-' and '_' "
                         "(no spaces, not starting with '.')")
    return name


def free_name(folder: Path, name: str) -> str:
    """``name``, or ``name_2``, ``name_3`` ... the first that is not taken in ``folder``."""
    candidate, n = name, 2
    while (folder / candidate).exists():
        candidate, n = f"{name}_{n}", n + 1
    return candidate
