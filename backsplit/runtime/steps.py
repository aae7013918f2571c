"""Jobs written as step-by-step progress generators (export, ``dataset add``): run one to its result, and turn the
OSError of a failed write into the user's OutputError.

A step generator yields ``ProgressEvent``s; its last event has stage ``"done"`` and carries the job's result in
``event.data["result"]``. A Slicer panel steps such a generator from a timer; the command line and the tests run it
to the end with ``run_to_result``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, NoReturn, Union

from backsplit.errors import OutputError
from backsplit.runtime.exits import is_disk_full
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, Stage, ignore_progress


def run_to_result(events: Iterable[ProgressEvent], progress: ProgressCallback = ignore_progress) -> Any:
    """Step ``events`` to the end, pass every event to ``progress`` and return the result of the ``"done"`` event.

    The result is taken out of that event's data before ``progress`` sees it (it is a Python object, not for
    display). Cancelling is the generator's business: give it the ``cancel`` callable when creating it. Raises
    whatever the generator raises; ``RuntimeError`` if it ends without a ``"done"`` event carrying a result."""
    found = False
    result = None
    for event in events:
        if event.stage == Stage.DONE and "result" in event.data:
            result, found = event.data.pop("result"), True
        progress(event)
    if not found:
        raise RuntimeError("the job ended without a result (no 'done' event with data['result'])")
    return result


def raise_write_error(exc: OSError, folder: Union[str, Path], *, failed: str, fix: str, unchanged: str) -> NoReturn:
    """Raise the OutputError for an OSError met while writing into ``folder``; call it from ``except OSError``.

    A full disk or exceeded quota (``exits.is_disk_full``) gives "the disk holding '<folder>' is full; <fix>
    (<unchanged>)" without the low-level error chained; any other OSError gives "<failed> (<exc>); <unchanged>" with
    ``exc`` as its cause. ``failed`` says what failed ("writing the dataset into '...' failed"), ``fix`` what to do
    on a full disk, ``unchanged`` what the user still has ("nothing was written")."""
    if is_disk_full(exc):
        raise OutputError(f"the disk holding '{folder}' is full; {fix} ({unchanged})") from None
    raise OutputError(f"{failed} ({exc}); {unchanged}") from exc


def check_writable_folder(folder: Union[str, Path], *, writes: str, fix: str) -> None:
    """Create ``folder`` if needed and prove a file can be made in it (a hidden probe folder, removed at once), so a
    read-only or forbidden folder is named before any work starts instead of ending in a traceback.

    ``writes``: what the command writes there ("the new version and its lock file"); ``fix``: what to do ("choose
    another --out"). Raises OutputError: "cannot write in the folder '<folder>' (<reason>): <command> writes <writes>
    there; <fix>". The probe is what counts (as root, file modes allow everything; a read-only mount does not)."""
    import os
    import tempfile

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".backsplit-probe-", dir=folder))
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise OutputError(f"cannot write in the folder '{folder}' ({reason}): it receives {writes}; {fix}") from None
