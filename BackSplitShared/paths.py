"""Folders typed in either panel, made absolute without the process's working directory (both modules use it).

After a scene close Slicer resets the module's parameter node (``vtkMRMLScene::ResetNodes``) and the
parameterNodeWrapper reads a missing ``Path`` as ``Path()``, i.e. ".". Slicer's working directory is not a place
to write to (it is "/" on macOS when Slicer starts from the Finder), so "." and empty values mean "the default",
and other relative paths are taken relative to the user's home folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, Path, None]


def default_work_folder(home: Optional[Path] = None) -> Path:
    """Where trainings work by default: ``<home>/BackSplit/work``."""
    return Path(home or Path.home()) / "BackSplit" / "work"


def default_export_folder(home: Optional[Path] = None) -> Path:
    """Where exports go by default: ``<home>/BackSplit/nnUNet_raw``."""
    return Path(home or Path.home()) / "BackSplit" / "nnUNet_raw"


def is_unset(value: PathLike) -> bool:
    """Empty, None or "." (what a reset Path parameter reads as)."""
    return value is None or str(value).strip() in ("", ".")


def resolve_folder(value: PathLike, default: Optional[Path] = None, home: Optional[Path] = None) -> Optional[Path]:
    """An absolute folder for ``value``: unset -> ``default`` (None if no default); "~" expanded; relative ->
    under ``home`` (default: the user's home). Never relative to the current working directory."""
    home = Path(home or Path.home())
    if is_unset(value):
        return Path(default) if default is not None else None
    text = str(value).strip()
    if text == "~" or text.startswith("~/") or text.startswith("~\\"):
        path = home / text[2:] if len(text) > 1 else home
    else:
        path = Path(text)
    return path if path.is_absolute() else home / path


def required_folder(value: PathLike, what: str, home: Optional[Path] = None) -> Path:
    """``resolve_folder`` for a folder the user must choose: InputError naming ``what`` when it is unset."""
    from backsplit.errors import InputError

    folder = resolve_folder(value, home=home)
    if folder is None:
        raise InputError(f"choose the {what} first (the field is empty)")
    return folder
