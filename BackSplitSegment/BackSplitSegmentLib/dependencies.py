"""nnU-Net and PyTorch inside Slicer: installed on first use after asking, never at import. PyTorch comes from
Slicer's PyTorch extension (PyTorchUtils picks the build for the computer's GPU); nnU-Net from pip."""

from __future__ import annotations

import importlib.util

NNUNET_REQUIREMENT = "nnunetv2>=2.8,<2.9"


def missing() -> list[str]:
    return [name for name in ("torch", "nnunetv2") if importlib.util.find_spec(name) is None]


def ensure_nnunet(ask: bool = True) -> bool:
    """True when torch and nnunetv2 can be imported (installing them if the user agrees)."""
    import slicer

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
            torch_logic.installTorch(askConfirmation=False)
    if importlib.util.find_spec("nnunetv2") is None:
        try:  # Slicer 5.11+: slicer.pydeps.pip_ensure checks, installs and records who asked
            import slicer.pydeps
            from packaging.requirements import Requirement

            slicer.pydeps.pip_ensure([Requirement(NNUNET_REQUIREMENT)], requester="BackSplit")
        except ImportError:  # older Slicer releases
            slicer.util.pip_install(NNUNET_REQUIREMENT)
    return not missing()
