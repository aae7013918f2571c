"""Trust: nnU-Net checkpoints are Python pickles (``torch.load(weights_only=False)``), so loading one can run code.

A model trained here has no origin file and is trusted. ``import_model`` writes ``backsplit_origin.json``
(``{"trusted": false, "source": ..., "imported": ...}``) into a model from elsewhere; it stays untrusted until the
user confirms (``confirm_trust``; command line ``backsplit model trust NAME``; in Slicer a dialog before the
first use that says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

ORIGIN_NAME = "backsplit_origin.json"

UNTRUSTED_WARNING = ("This model was imported from elsewhere ({source}). Its checkpoints are Python pickle files: "
                     "loading them can run any code on this computer. Load it only if you trust where it came from.")


def read_origin(model_dir: Path) -> Optional[dict]:
    path = Path(model_dir) / ORIGIN_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"trusted": False, "source": "unknown (the origin file cannot be read)"}


def is_trusted(model_dir: Path) -> bool:
    origin = read_origin(model_dir)
    return origin is None or bool(origin.get("trusted"))


def trust_warning(model_dir: Path) -> Optional[str]:
    """The message to show before loading an untrusted model; None when the model is trusted."""
    origin = read_origin(model_dir)
    if origin is None or origin.get("trusted"):
        return None
    return UNTRUSTED_WARNING.format(source=origin.get("source", "unknown"))


def write_origin(model_dir: Path, origin: dict) -> None:
    (Path(model_dir) / ORIGIN_NAME).write_text(json.dumps(origin, indent=2), encoding="utf-8")


def confirm_trust(model_dir: Path) -> None:
    """The user has confirmed: the model is trusted from now on (the origin is kept, with the time)."""
    import time

    origin = read_origin(model_dir)
    if origin is None:
        return
    origin["trusted"] = True
    origin["trusted_since"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_origin(model_dir, origin)


def require_trusted(model_dir: Path, allow_once: bool = False) -> None:
    """Refuse to load an untrusted (imported, not yet confirmed) model from the command line.

    ``allow_once``: the user passed ``--trust-model`` for this run (the origin file is left as it is). Raises
    InputError with the reason (pickled checkpoints can run code) and both ways to go on."""
    from backsplit.errors import InputError

    warning = trust_warning(model_dir)
    if warning is None or allow_once:
        return
    raise InputError(f"{warning} If you trust it, confirm once with `backsplit model trust \"{Path(model_dir)}\"`, or "
                     "pass --trust-model to load it for this run only", path=str(model_dir))
