"""nnU-Net and PyTorch inside Slicer: installed on first use after asking, never at import.

PyTorch comes from Slicer's PyTorch extension (PyTorchUtils picks the build for the computer's GPU); nnU-Net from
pip, without letting pip replace the packages Slicer already provides (PyTorch from the extension, Slicer's own
SimpleITK). ``slicer.packaging.pip_ensure`` (named ``slicer.pydeps`` in some 5.11 previews) does that with
``skip_packages``; older releases get the same result by installing nnU-Net without dependencies and then its
dependencies minus the skipped ones.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Iterable, Optional, Sequence

from .compatibility import NNUNET_REQUIREMENT, TORCH_SPECIFIER, torch_problem

# Provided by Slicer or by the PyTorch extension: pip must not install its own copies.
SKIP_PACKAGES = ("torch", "torchvision", "SimpleITK")


def missing() -> list[str]:
    return [name for name in ("torch", "nnunetv2") if importlib.util.find_spec(name) is None]


def installed_torch_version() -> Optional[str]:
    """The installed torch's version from its metadata (without importing torch), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def check_installed_torch() -> None:
    """Raise RuntimeError with the user-facing message when an installed torch breaks nnU-Net's rule."""
    problem = torch_problem(installed_torch_version())
    if problem:
        raise RuntimeError(problem)


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def requirements_without(requires: Optional[Iterable[str]], skip: Sequence[str] = SKIP_PACKAGES,
                         extras: Sequence[str] = ()) -> list[str]:
    """Dependency strings of a package (``importlib.metadata.requires``) minus the skipped packages and the ones
    that only an extra we did not ask for pulls in; markers for this platform are evaluated."""
    from packaging.requirements import Requirement

    skipped = {_canonical(s) for s in skip}
    kept = []
    for text in requires or []:
        requirement = Requirement(text)
        if _canonical(requirement.name) in skipped:
            continue
        if requirement.marker is not None:
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if not any(requirement.marker.evaluate(env) for env in environments):
                continue
        requirement.marker = None
        kept.append(str(requirement))
    return kept


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
    import slicer

    pip_ensure = pip_ensure_function()
    if pip_ensure is not None:
        from packaging.requirements import Requirement

        pip_ensure([Requirement(NNUNET_REQUIREMENT)], skip_packages=list(SKIP_PACKAGES), prompt_install=False,
                   requester="BackSplit")
        return
    # Older Slicer: nnU-Net itself without dependencies, then its dependencies except the skipped ones.
    slicer.util.pip_install(["--no-deps", NNUNET_REQUIREMENT])
    importlib.invalidate_caches()
    from importlib.metadata import requires

    rest = requirements_without(requires("nnunetv2"))
    if rest:
        slicer.util.pip_install(rest)


def ensure_nnunet(ask: bool = True) -> bool:
    """True when torch and nnunetv2 can be imported (installing them if the user agrees). Blocking: for scripts
    and self-tests; the panels install through ``install_run.InstallRun`` so that they keep moving.

    Raises RuntimeError when the installed torch does not satisfy nnU-Net's ``torch>=2.1.2,!=2.9.*``."""
    import slicer

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
