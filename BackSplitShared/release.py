"""Which Slicer releases BackSplit supports (pure functions).

Slicer 5.8 ships Python 3.9.10 and nnU-Net 2.8 needs Python >= 3.10, so nnU-Net cannot be installed there; 5.10.0
and 5.12.x ship Python 3.12.10 (``SuperBuild/External_python.cmake`` and ``Slicer_REQUIRED_PYTHON_VERSION`` in
``CMakeLists.txt`` at each tag; see docs/SLICER_COMPATIBILITY.md). The panels call ``release_problem`` with
``(slicer.app.majorVersion, slicer.app.minorVersion)`` and refuse to work with its message.
"""

from __future__ import annotations

from typing import Optional, Sequence

from backsplit.runtime.requirements import MINIMUM_PYTHON

MINIMUM_SLICER = (5, 10)


def release_problem(slicer_version: Sequence[int], python_version: Sequence[int] = (3, 12)) -> Optional[str]:
    """None when this Slicer can run BackSplit; else the message the panel shows.

    ``slicer_version`` is (major, minor[, patch]) of the application; ``python_version`` is ``sys.version_info``.
    Raises nothing; a version that cannot be read (empty tuple) is refused with a message saying so."""
    version = tuple(int(v) for v in tuple(slicer_version)[:2])
    python = tuple(int(v) for v in tuple(python_version)[:2])
    if len(version) < 2:
        return ("BackSplit could not read the Slicer version; it needs Slicer {0}.{1} or later.".format(
            *MINIMUM_SLICER))
    if version < MINIMUM_SLICER:
        return ("BackSplit needs Slicer {0}.{1} or later; this is Slicer {2}.{3}, whose Python cannot run nnU-Net "
                "2.8 (it needs Python 3.10 or later). Install Slicer {0}.{1} or later from "
                "https://download.slicer.org and the BackSplit extension for it.").format(*MINIMUM_SLICER, *version)
    if python < MINIMUM_PYTHON:
        return ("BackSplit needs Python {0}.{1} or later for nnU-Net 2.8; this Slicer runs Python {2}.{3}. Use an "
                "official Slicer {4}.{5} or later build.").format(*MINIMUM_PYTHON, *python, *MINIMUM_SLICER)
    return None
