"""Install PyTorch and nnU-Net from a panel without freezing it: each step is a child process (``PythonSlicer -m
pip ...`` as ``slicer.util.pip_install`` runs it, or light-the-torch as the PyTorch extension runs it), polled from
a timer, so the panel's busy bar keeps moving and the status shows the elapsed time and pip's last line.

The panel asks first (``confirmation_text``, no wait cursor), then calls ``InstallRun.step()`` from a timer until
``done``. PyTorch comes with the requirement nnU-Net 2.8 declares (``TORCH_SPECIFIER``), given to the PyTorch
extension's own argument builder (``PyTorchUtilsLogic._getPipInstallArguments``) when it has one; nnU-Net is
installed without dependencies, then its dependencies except the packages Slicer or the PyTorch extension provide.
No Qt here (tested with real processes).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

from backsplit.runtime.childprocess import ChildProcess, python_executable
from backsplit.runtime.requirements import (
    NNUNET_REQUIREMENT,
    TORCH_SPECIFIER,
    check_installed_torch,
    missing,
    pinned,
    requirements_without,
)

Command = Union[Sequence[str], Callable[[], Sequence[str]]]   # a callable: built when the step starts

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"


@dataclass
class InstallStep:
    label: str
    command: Command
    package: str = ""          # what the step is for: torch | nnunetv2


@dataclass
class InstallStatus:
    state: str
    message: str
    step_index: int = 0
    step_count: int = 0
    elapsed_seconds: float = 0.0

    @property
    def done(self) -> bool:
        return self.state != RUNNING


def confirmation_text(needed: Sequence[str]) -> str:
    return ("BackSplit needs {} to train and apply models, which {} not installed yet. Install now? This downloads "
            "up to a few GB and can take several minutes; Slicer stays usable and the panel shows the progress."
            ).format(" and ".join({"torch": f"PyTorch (torch{TORCH_SPECIFIER})",
                                   "nnunetv2": f"nnU-Net v2 ({NNUNET_REQUIREMENT})"}.get(n, n) for n in needed),
                     "is" if len(needed) == 1 else "are")


def torch_arguments(pytorch_utils_logic=None) -> list[str]:
    """light-the-torch arguments for torch with nnU-Net's rule: from the PyTorch extension when it builds them
    (``_getPipInstallArguments(forceComputationBackend, torchVersionRequirement)``), else the same list."""
    builder = getattr(pytorch_utils_logic, "_getPipInstallArguments", None)
    if builder is not None:
        return list(builder(None, TORCH_SPECIFIER))
    return ["install", f"torch{TORCH_SPECIFIER}", "torchvision"]


def nnunet_dependency_command(python: str) -> list[str]:
    """pip command for nnU-Net's dependencies minus the skipped ones (read from the just installed metadata), with
    this platform's pins (imagecodecs on macOS)."""
    importlib.invalidate_caches()
    rest = pinned(requirements_without(importlib.metadata.requires("nnunetv2")))
    return [python, "-m", "pip", "install", *rest] if rest else [python, "-c", "pass"]


def install_plan(needed: Sequence[str], python: str, pytorch_utils_logic=None,
                 light_the_torch_present: bool = True) -> list[InstallStep]:
    """The steps for the missing packages (``needed`` from ``backsplit.runtime.requirements.missing()``), in order."""
    steps = []
    if "torch" in needed:
        if not light_the_torch_present:
            steps.append(InstallStep("light-the-torch (picks the PyTorch build for this computer's GPU)",
                                     [python, "-m", "pip", "install", "light-the-torch>=0.5"], "torch"))
        steps.append(InstallStep(f"PyTorch (torch{TORCH_SPECIFIER})",
                                 [python, "-m", "light_the_torch", *torch_arguments(pytorch_utils_logic)], "torch"))
    if "nnunetv2" in needed:
        steps.append(InstallStep(f"nnU-Net ({NNUNET_REQUIREMENT})",
                                 [python, "-m", "pip", "install", "--no-deps", NNUNET_REQUIREMENT], "nnunetv2"))
        steps.append(InstallStep("nnU-Net's dependencies", lambda: nnunet_dependency_command(python), "nnunetv2"))
    return steps


def format_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@dataclass
class InstallRun:
    """``InstallRun(steps).step()`` from a timer until ``done``; ``cancel()`` ends the running step (async)."""
    steps: Sequence[InstallStep]
    start_process: Optional[Callable[[Sequence[str]], object]] = None   # default: ChildProcess (backsplit.runtime)
    clock: Callable[[], float] = time.monotonic
    _index: int = field(default=0, init=False)
    _job: Optional[object] = field(default=None, init=False, repr=False)
    _started: Optional[float] = field(default=None, init=False)
    _last_line: str = field(default="", init=False)
    _status: Optional[InstallStatus] = field(default=None, init=False)
    log: list = field(default_factory=list, init=False)

    def _start(self, command: Sequence[str]):
        if self.start_process is not None:
            return self.start_process(command)
        return ChildProcess(list(command)).start()

    def cancel(self) -> None:
        if self._job is not None and self._job.is_running():
            self._job.cancel(grace_seconds=2.0, wait=False)
        self._status = InstallStatus(CANCELLED, "Installation cancelled; press the button again to install.",
                                     self._index, len(self.steps), self._elapsed())

    def _elapsed(self) -> float:
        return self.clock() - self._started if self._started is not None else 0.0

    def step(self) -> InstallStatus:
        """Start or poll the current step (never waits); the status says what to show."""
        if self._status is not None and self._status.done:
            return self._status
        if self._started is None:
            self._started = self.clock()
        if self._index >= len(self.steps):
            self._status = InstallStatus(FINISHED, "Installed.", len(self.steps), len(self.steps), self._elapsed())
            return self._status
        current = self.steps[self._index]
        if self._job is None:
            command = current.command() if callable(current.command) else current.command
            self._job = self._start(command)
            self.log.append("$ " + " ".join(str(c) for c in command))
        for event in self._job.poll_events():
            if event.message.strip():
                self._last_line = event.message.strip()
                self.log.append(event.message)
        if self._job.is_running():
            self._status = InstallStatus(
                RUNNING, f"Installing {current.label} (step {self._index + 1} of {len(self.steps)}), "
                f"{format_elapsed(self._elapsed())}: {self._last_line[:120]}", self._index, len(self.steps),
                self._elapsed())
            return self._status
        code = self._job.returncode
        for event in self._job.poll_events():           # lines that came with the end
            self.log.append(event.message)
        self._job = None
        if code != 0:
            tail = "\n".join(line for line in self.log[-15:] if line.strip())
            self._status = InstallStatus(FAILED, f"Installing {current.label} failed (exit code {code}). The last "
                                         f"lines of its output:\n{tail}", self._index, len(self.steps),
                                         self._elapsed())
            return self._status
        self._index += 1
        return self.step() if self._index >= len(self.steps) else InstallStatus(
            RUNNING, f"Installed {current.label}; continuing ({format_elapsed(self._elapsed())})", self._index,
            len(self.steps), self._elapsed())


_RUNNING: list = []   # the installations of this Slicer process, whichever panel section started them


def _slicer_packaging():
    try:
        import slicer.packaging as packaging  # Slicer 5.12+
    except ImportError:
        return None
    return packaging


def busy_elsewhere() -> Optional[str]:
    """Why an installation must not start now, or None: another BackSplit installation runs, or Slicer's own
    non-blocking pip does (``slicer.packaging.isPipInstallInProgress()``, packaging.py v5.12.3:248-268). Two pips
    writing into one site-packages can leave it broken (audit N7)."""
    if _RUNNING:
        return "BackSplit is already installing PyTorch and nnU-Net (from another button); wait until it has finished"
    packaging = _slicer_packaging()
    check = getattr(packaging, "isPipInstallInProgress", None)
    if check is not None and check():
        return ("another extension is installing Python packages right now; wait until it has finished, then press "
                "the button again")
    return None


def _mark_slicer_pip(running: bool) -> None:
    """While ours runs, Slicer's own non-blocking ``pip_install`` refuses to start beside it: it checks the module
    flag ``_pip_install_in_progress`` (packaging.py v5.12.3:245, :660-664), which it sets itself (:853-861)."""
    packaging = _slicer_packaging()
    if packaging is not None and hasattr(packaging, "_pip_install_in_progress"):
        packaging._pip_install_in_progress = running


def _testing() -> bool:
    try:
        import slicer
    except ImportError:
        return False
    app = getattr(slicer, "app", None)
    return bool(app is not None and app.testingEnabled())


def default_plan() -> list[InstallStep]:
    """The steps this Slicer needs now (empty when nothing is missing). Raises RuntimeError with the message to
    show when the PyTorch extension is missing or the installed torch breaks nnU-Net's rule."""
    check_installed_torch()
    needed = missing()
    logic = None
    if "torch" in needed:
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError("The PyTorch extension is required: install 'PyTorch' from the Extensions Manager, "
                               "restart Slicer and try again.") from None
        logic = PyTorchUtils.PyTorchUtilsLogic()
    return install_plan(needed, python_executable(), logic, importlib.util.find_spec("light_the_torch") is not None)


class DependencyGate:
    """The panel side of installing: ``gate.run(start)`` calls ``start()`` at once when everything is installed;
    otherwise it asks (``confirm(text) -> bool``, shown without a wait cursor), runs the installation from
    ``timer`` (connect ``timer.timeout`` to ``gate.tick``, through the panel's ``TickGuard``) and calls ``start()``
    when it finished. ``show(text, busy)`` updates the panel (busy: a moving progress bar); ``report(text)`` shows
    a failure; ``ended(text)`` puts the panel back when the installation was cancelled (the user's own choice: a
    status line, no dialog) or ``start`` started nothing (with the panels' ``PanelAction``: its ``finish``). An
    error raised by ``start`` after the installation leaves ``tick`` (the caller's tick guard reports it once, as
    a start error, never as "Installation failed"). Qt objects are passed in, none is imported."""

    def __init__(self, timer, show: Callable[[str, bool], None], confirm: Callable[[str], bool],
                 report: Callable[[str], None], plan: Callable[[], list] = default_plan,
                 ended: Optional[Callable[[str], None]] = None):
        self.timer, self.show, self.confirm, self.report, self.plan = timer, show, confirm, report, plan
        self.ended = ended
        self.run_: Optional[InstallRun] = None
        self._then: Optional[Callable[[], None]] = None

    @property
    def busy(self) -> bool:
        return self.run_ is not None

    def run(self, start: Callable[[], None]) -> bool:
        """Returns True when ``start`` ran or will run after the installation; False when the user declined or the
        installation cannot start (the reason is reported)."""
        if self.busy:
            return False
        try:
            steps = self.plan()
        except RuntimeError as exc:
            self.report(str(exc))
            return False
        if not steps:
            return start() is not False
        needed = list(dict.fromkeys(step.package for step in steps if step.package))
        if _testing():   # N11: Slicer's self-tests never download gigabytes, whatever a dialog would answer
            self.report(f"{', '.join(needed)} not installed: BackSplit does not install them in Slicer's testing "
                        "mode. Install them once outside testing mode (press Apply), then run the test again.")
            return False
        reason = busy_elsewhere()
        if reason:
            self.report(f"Not installing now: {reason}.")
            return False
        if not self.confirm(confirmation_text(needed or ["nnunetv2"])):
            return False
        self.run_, self._then = InstallRun(steps), start
        _RUNNING.append(self.run_)
        _mark_slicer_pip(True)
        self.show("Installing...", True)
        self.timer.start()
        return True

    def _release(self) -> None:
        if self.run_ in _RUNNING:
            _RUNNING.remove(self.run_)
        if not _RUNNING:
            _mark_slicer_pip(False)

    def tick(self) -> None:
        status = self.run_.step()
        self.show(status.message, not status.done)
        if not status.done:
            return
        self.timer.stop()
        self._release()
        then, self.run_, self._then = self._then, None, None
        if status.state == FAILED:
            self.report(status.message)
        elif status.state == FINISHED:
            importlib.invalidate_caches()
            if then() is not True and self.ended is not None:   # started nothing: the panel is idle again
                self.ended("")
        elif self.ended is not None:                            # CANCELLED (audit F2: the buttons stayed dead)
            self.ended(status.message)

    def cancel(self) -> None:
        if self.run_ is not None:
            self.run_.cancel()
