"""What nnU-Net and PyTorch BackSplit needs, and whether the installed ones suit it (no Slicer, no torch import).

``NNUNET_REQUIREMENT`` and ``TORCH_SPECIFIER`` are the rules both Slicer modules install with (``BackSplitShared``);
``missing``, ``torch_problem`` and ``requirements_without`` are the checks and the requirement arithmetic around
them. ``packaging`` (shipped with Slicer and pip) evaluates specifiers, markers and requirement strings.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, distribution, version
from typing import Iterable, Optional, Sequence

MINIMUM_PYTHON = (3, 10)          # nnunetv2 2.8: Requires-Python >= 3.10
NNUNET_REQUIREMENT = "nnunetv2>=2.8,<2.9"
TORCH_SPECIFIER = ">=2.1.2,!=2.9.*"   # nnunetv2 2.8.1's own rule on torch (its METADATA Requires-Dist)

# Provided by Slicer or by its PyTorch extension: pip must not install its own copies there (as SlicerNNUnet
# d05d772 SlicerNNUNetLib/InstallLogic.py:157-161, which also skips requests: Slicer ships it, and replacing it
# would need a restart).
SKIP_PACKAGES = ("torch", "torchvision", "SimpleITK", "requests")

# Pins for one platform: newer imagecodecs releases have no macOS x86_64 wheels, so pip would try to build them from
# source (SlicerNNUnet d05d772 InstallLogic.py:221-235 pins the same on macOS).
PLATFORM_PINS = {"darwin": {"imagecodecs": "imagecodecs<=2026.3.6"}}


def installed_completely(name: str) -> bool:
    """``name`` imports here *and* pip finished installing it: its metadata exists and, when pip installed it, has
    the ``RECORD`` file pip writes last. A cancelled or killed pip can leave the package folder without them; such a
    package counts as missing, so it is installed again instead of failing later inside a child process."""
    if importlib.util.find_spec(name) is None:
        return False
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return False
    installer = (dist.read_text("INSTALLER") or "").strip()
    return installer != "pip" or dist.read_text("RECORD") is not None


def missing() -> list[str]:
    """The names of torch and nnunetv2 that are not (completely) installed here, found without importing them."""
    return [name for name in ("torch", "nnunetv2") if not installed_completely(name)]


def pinned(requirements: Iterable[str], platform: str = sys.platform) -> list[str]:
    """``requirements`` with this platform's pins (``PLATFORM_PINS``) in place of the packages they pin."""
    from packaging.requirements import Requirement

    pins = {canonical_name(k): v for k, v in PLATFORM_PINS.get(platform, {}).items()}
    return [pins.get(canonical_name(Requirement(text).name), text) for text in requirements]


def installed_torch_version() -> Optional[str]:
    """The installed torch's version from its metadata (without importing torch), or None."""
    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def torch_problem(installed_version: Optional[str]) -> Optional[str]:
    """None when no PyTorch is installed yet (it is installed with ``TORCH_SPECIFIER``) or the installed one suits
    nnU-Net 2.8; else the message to show (the user must replace it in the PyTorch Utils module).

    ``installed_version`` is e.g. ``torch.__version__`` or ``importlib.metadata.version("torch")``; a local
    suffix such as ``+cu128`` is ignored. Uses ``packaging`` to evaluate the specifier."""
    if not installed_version:
        return None
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(str(installed_version).strip())
    except InvalidVersion:
        return f"PyTorch reports an unreadable version '{installed_version}'; reinstall it in the PyTorch Utils module."
    if Version(parsed.base_version) in SpecifierSet(TORCH_SPECIFIER):
        return None
    return (f"PyTorch {installed_version} is installed, but nnU-Net 2.8 needs torch{TORCH_SPECIFIER}. Open the "
            "PyTorch Utils module, uninstall PyTorch, restart Slicer, and press Apply or Start again: BackSplit then "
            f"installs a suitable version (torch{TORCH_SPECIFIER}).")


def check_installed_torch() -> None:
    """Raise RuntimeError with the user-facing message when an installed torch breaks nnU-Net's rule."""
    problem = torch_problem(installed_torch_version())
    if problem:
        raise RuntimeError(problem)


def canonical_name(name: str) -> str:
    """A distribution name in the form compared here: lower case, ``_`` and ``.`` as ``-``."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


def requirements_without(requires: Optional[Iterable[str]], skip: Sequence[str] = SKIP_PACKAGES,
                         extras: Sequence[str] = ()) -> list[str]:
    """Dependency strings of a package (``importlib.metadata.requires``) minus the skipped packages and the ones
    that only an extra we did not ask for pulls in; markers for this platform are evaluated."""
    from packaging.requirements import Requirement

    skipped = {canonical_name(s) for s in skip}
    kept = []
    for text in requires or []:
        requirement = Requirement(text)
        if canonical_name(requirement.name) in skipped:
            continue
        if requirement.marker is not None:
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if not any(requirement.marker.evaluate(env) for env in environments):
                continue
        requirement.marker = None
        kept.append(str(requirement))
    return kept
