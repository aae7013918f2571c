"""User-facing errors. Every message names the case, segment or file at fault and says how to fix it."""

from __future__ import annotations


class BackSplitError(Exception):
    """Base class for errors that are shown to the user as they are (no traceback needed)."""


class InputError(BackSplitError):
    """Bad input data: a case, segment, image or file that cannot be used."""

    def __init__(self, message: str, *, case: str | None = None, segment: str | None = None,
                 path: str | None = None):
        prefix = []
        if case is not None:
            prefix.append(f"case '{case}'")
        if segment is not None:
            prefix.append(f"segment '{segment}'")
        if path is not None:   # a folder is called a folder (checked on disk; a missing path stays "file")
            prefix.append(f"{'folder' if _is_dir(path) else 'file'} '{path}'")
        full = f"{', '.join(prefix)}: {message}" if prefix else message
        super().__init__(full)
        self.case = case
        self.segment = segment
        self.path = path


class OutputError(BackSplitError):
    """The output location cannot be used (exists, not writable, disk full)."""


class CancelledError(BackSplitError):
    """The user cancelled a running job."""


def _is_dir(path) -> bool:
    import os

    try:
        return os.path.isdir(path)
    except (TypeError, ValueError, OSError):
        return False
