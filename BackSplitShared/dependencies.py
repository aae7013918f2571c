"""nnU-Net and PyTorch inside Slicer: installed on first use after asking, never at import (blocking variant, for
scripts and self-tests; the panels use ``install_run.DependencyGate``, which keeps them moving).

PyTorch comes from Slicer's PyTorch extension (PyTorchUtils picks the build for the computer's GPU); nnU-Net from
pip, without letting pip replace the packages Slicer already provides (PyTorch from the extension, Slicer's own
SimpleITK). ``slicer.packaging.pip_ensure`` (named ``slicer.pydeps`` in some 5.11 previews) does that with
``skip_packages``; older releases get the same result by installing nnU-Net without dependencies and then its
dependencies minus the skipped ones. The requirement strings and checks are the engine's
(``backsplit.runtime.requirements``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import requires

import slicer

from backsplit.runtime.requirements import (
    NNUNET_REQUIREMENT,
    PLATFORM_PINS,
    SKIP_PACKAGES,
    TORCH_SPECIFIER,
    check_installed_torch,
    missing,
    pinned,
    requirements_without,
)


def pip_ensure_function():
    """``pip_ensure`` of this Slicer (5.11+), or None on older releases."""
    for module_name in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module.pip_ensure
    return None


def install_nnunet() -> None:
    """pip-install nnU-Net (``NNUNET_REQUIREMENT``) into Slicer's Python, leaving ``SKIP_PACKAGES`` alone (blocks)."""
    pip_ensure = pip_ensure_function()
    if pip_ensure is not None:
        from packaging.requirements import Requirement

        pins = list(PLATFORM_PINS.get(sys.platform, {}).values())   # installed first, then skipped (imagecodecs)
        if pins:
            pip_ensure([Requirement(p) for p in pins], prompt_install=False, requester="BackSplit")
        pip_ensure([Requirement(NNUNET_REQUIREMENT)], prompt_install=False, requester="BackSplit",
                   skip_packages=[*SKIP_PACKAGES, *PLATFORM_PINS.get(sys.platform, {})])
        return
    # Older Slicer: nnU-Net itself without dependencies, then its dependencies except the skipped ones.
    slicer.util.pip_install(["--no-deps", NNUNET_REQUIREMENT])
    importlib.invalidate_caches()
    rest = pinned(requirements_without(requires("nnunetv2")))
    if rest:
        slicer.util.pip_install(rest)


def ensure_nnunet(ask: bool = True) -> bool:
    """True when torch and nnunetv2 can be imported (installing them if the user agrees). Blocking: for scripts
    and self-tests; the panels install through ``install_run.InstallRun`` so that they keep moving.

    Raises RuntimeError when the installed torch does not satisfy nnU-Net's ``torch>=2.1.2,!=2.9.*``."""
    check_installed_torch()
    needed = missing()
    if not needed:
        return True
    if ask and not slicer.util.confirmOkCancelDisplay(
            "BackSplit needs PyTorch and nnU-Net v2 ({}), which are not installed yet. Install them now? This "
            "downloads several GB and can take a few minutes.".format(", ".join(needed)),
            "BackSplit: install dependencies"):
        return False
    if "torch" in needed:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay("The PyTorch extension is required: install 'PyTorch' from the Extensions "
                                     "Manager and restart Slicer.")
            return False
        torch_logic = PyTorchUtils.PyTorchUtilsLogic()
        if not torch_logic.torchInstalled():
            torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_SPECIFIER)
    if importlib.util.find_spec("nnunetv2") is None:
        install_nnunet()
    importlib.invalidate_caches()
    check_installed_torch()
    return not missing()
