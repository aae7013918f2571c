"""Catch ITK's raw warnings and say in plain words what they mean for the case at hand.

ITK (inside SimpleITK) prints warnings such as ``WARNING: In .../itkNiftiImageIO.cxx, line 2314 NiftiImageIO
(0x55...): Non-orthogonal direction matrix coerced to orthogonal`` straight to the process's standard error (file
descriptor 2, through ``std::cerr``); SimpleITK offers only ``ProcessObject.SetGlobalWarningDisplay`` to switch them
off, not a way to receive them. ``capture_itk_messages`` therefore points descriptor 2 at a temporary file for the
duration of one ITK call (a lock makes the calls take turns), then puts it back and parses what was written.
Anything that is not an ITK message is written back to standard error unchanged.

``translate`` turns a known ITK message into a sentence about the file; unknown messages are passed on with the
file name and a note that they come from ITK.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Optional

_LOCK = threading.RLock()
_ITK_HEADER = re.compile(r"^(WARNING|ERROR): In (?P<file>.+?), line (?P<line>\d+)\s*$")
_ITK_BODY = re.compile(r"^(?P<cls>\w+) \(0x[0-9a-fA-F]+\): (?P<text>.*)$")


class InputWarning(UserWarning):
    """A translated warning about an input file (shown to the user; nothing was changed silently)."""


@dataclass
class CapturedMessages:
    """What ITK printed during the capture: (class name, message text) pairs, and any other stderr text."""
    itk: list[tuple[str, str]] = field(default_factory=list)
    other: str = ""


def parse_itk_output(text: str) -> CapturedMessages:
    """Split captured standard error into ITK messages (a 'WARNING: In file, line N' line followed by
    'Class (0x...): text' up to a blank line) and everything else."""
    result = CapturedMessages()
    lines = text.splitlines()
    other = []
    index = 0
    while index < len(lines):
        header = _ITK_HEADER.match(lines[index])
        if header:
            body = []
            index += 1
            while index < len(lines) and lines[index].strip():
                body.append(lines[index].strip())
                index += 1
            joined = " ".join(body)
            match = _ITK_BODY.match(joined)
            result.itk.append((match["cls"], match["text"].strip()) if match else ("ITK", joined))
        else:
            if lines[index].strip():
                other.append(lines[index])
        index += 1
    result.other = "\n".join(other)
    return result


@contextlib.contextmanager
def capture_itk_messages() -> Iterator[CapturedMessages]:
    """Redirect file descriptor 2 while the block runs; yields a ``CapturedMessages`` filled on exit."""
    captured = CapturedMessages()
    with _LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no standard error at all (some GUI launches): nothing to capture
            yield captured
            return
        with tempfile.TemporaryFile(mode="w+b") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                parsed = parse_itk_output(sink.read().decode("utf-8", "replace"))
                captured.itk, captured.other = parsed.itk, parsed.other
    if captured.other:
        try:
            sys.stderr.write(captured.other + "\n")
        except (AttributeError, ValueError):
            pass


KNOWN = (
    (re.compile(r"Non-orthogonal direction matrix coerced to orthogonal", re.I),
     "the grid's axes are not perpendicular (sheared, e.g. gantry-tilted CT) and ITK straightened them while "
     "writing NIfTI, which moves the image; resample it onto an orthogonal grid first"),
    (re.compile(r"only supports orthonormal direction cosines", re.I),
     "the NIfTI header's orientation (qform and sform) is not orthonormal: the grid is sheared or the header is "
     "damaged, and ITK cannot place the image; resample it onto an orthogonal grid, or repair the header"),
    (re.compile(r"sform.*not.*orthonormal|qform.*sform.*(differ|mismatch)", re.I),
     "the NIfTI header holds two orientations (qform and sform) that disagree; ITK chose one of them, so the "
     "image may not lie where other programs put it; fix the header so both agree"),
)


def translate(cls: str, text: str, path: str, what: str = "image") -> str:
    """A plain-words sentence for one ITK message about ``path``."""
    for pattern, meaning in KNOWN:
        if pattern.search(text):
            return f"file '{path}' ({what}): {meaning} (ITK {cls}: \"{text}\")"
    return (f"file '{path}' ({what}): ITK, the image library, reported \"{text}\" ({cls}); the file was read, but "
            "check that it looks right")


def warn_translated(captured: CapturedMessages, path: str, what: str = "image",
                    case: Optional[str] = None) -> list[str]:
    """Issue every captured ITK message as an ``InputWarning`` in plain words; return the texts."""
    texts = []
    for cls, text in captured.itk:
        message = translate(cls, text, path, what)
        if case:
            message = f"case '{case}', {message}"
        texts.append(message)
        warnings.warn(InputWarning(message), stacklevel=3)
    return texts


def show_input_warnings_plainly(stream=None) -> None:
    """Print ``InputWarning``s as 'backsplit: warning: <text>' (no source line), other warnings as Python does.
    Called once by the command line; the Slicer module shows them in its own way."""
    original = warnings.showwarning
    if getattr(original, "_backsplit", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            target = file or stream or sys.stderr
            try:
                target.write(f"backsplit: warning: {message}\n")
            except (AttributeError, ValueError):
                pass
            return
        original(message, category, filename, lineno, file, line)

    show._backsplit = True  # type: ignore[attr-defined]
    warnings.showwarning = show
