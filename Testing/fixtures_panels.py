"""Stand-ins for the panel tests (``test_panel_actions.py``, ``test_panel_sections.py``), because slicer-core has no
Qt and no application object. The real ``slicer.util`` of slicer-core is used; with no main window its
``errorDisplay`` only logs at ERROR level, so one ERROR record is one dialog in the application.

- ``slicer.app``: ``testingEnabled()`` (``Base/QTCore/qSlicerCoreCommandOptions.h`` v5.10.0:58, and the decorator
  ``qSlicerBaseQTCorePythonQtDecorators.h`` v5.10.0:54), ``applicationName``, ``topLevelWidgets()`` (read by
  ``slicer.util.lookupTopLevelWidget``, ``Base/Python/slicer/util.py`` v5.10.0:220-232, v5.12.3:391-403; none here:
  no main window), ``setOverrideCursor``/``restoreOverrideCursor`` (used by ``tryWithErrorDisplay(waitCursor=True)``,
  util.py v5.10.0:3368-3409, v5.12.3:3548-3589) and ``connect`` (the sections' ``aboutToQuit()`` connection);
- ``qt``: only the constants ``slicer.util`` reads (``QMessageBox.Ok/Cancel/Critical/Question``, ``Qt.WaitCursor``;
  Qt 5.15 ``qmessagebox.h`` / ``qnamespace.h``);
- widgets, signals and ``QTimer`` (``Widget``, ``Signal``, ``Timer``): attributes and ``connect``/``emit`` only;
- the prediction child and its import (``FakePrediction``, ``FakeFinish``): they need PyTorch and downloaded weights.
"""

from __future__ import annotations

import logging
import sys
import time
import types
from types import SimpleNamespace as NS

import pytest


class Signal:
    """A Qt signal stand-in: ``connect(slot)``, ``emit(*args)`` calls the slots in order."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


SIGNALS = {"clicked", "toggled", "timeout", "currentPathChanged", "currentNodeChanged", "currentIndexChanged",
           "activated"}
DEFAULTS = {"enabled": True, "text": "", "currentPath": "", "checked": False, "currentIndex": 0, "currentText": "auto",
            "value": 0, "count": 0}


class Widget:
    """Any widget of a ``childWidgetVariables`` namespace: unknown attributes are child widgets, signals or the
    defaults above; calling a method does nothing and returns None (``currentNode()`` is None)."""

    def __init__(self):
        object.__setattr__(self, "_children", {})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        children = object.__getattribute__(self, "_children")
        if name not in children:
            children[name] = Signal() if name in SIGNALS else DEFAULTS.get(name, Widget()) \
                if name in DEFAULTS else Widget()
        return children[name]

    def __setattr__(self, name, value):
        self._children[name] = value

    def __call__(self, *args, **kwargs):
        return None


class Timer:
    """``qt.QTimer`` stand-in: ``start``/``stop``/``isActive``/``setInterval`` and ``timeout``; ``run()`` ticks
    while active (a real child may need a moment: the loop sleeps between ticks, bounded by ``limit``)."""

    def __init__(self):
        self.active, self.interval, self.timeout = False, 0, Signal()

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def setInterval(self, ms):
        self.interval = ms

    def run(self, limit: int = 3000):
        while self.active and limit:
            self.timeout.emit()
            time.sleep(0.01)
            limit -= 1


@pytest.fixture
def gui(monkeypatch, caplog):
    import slicer.util

    qt = types.ModuleType("qt")
    qt.QMessageBox = NS(Ok=0x00000400, Cancel=0x00400000, Yes=0x00004000, No=0x00010000, Critical=3, Question=4)
    qt.Qt = NS(WaitCursor=3)
    monkeypatch.setitem(sys.modules, "qt", qt)
    cursor = []
    app = NS(testingEnabled=lambda: False, applicationName="Slicer", topLevelWidgets=lambda: [],
             setOverrideCursor=cursor.append, restoreOverrideCursor=lambda: cursor.pop(), connect=lambda *a: None)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    caplog.set_level(logging.INFO)
    return NS(util=slicer.util, app=app, cursor=cursor,
              dialogs=lambda: [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR])


def idle(start_button, cancel_button) -> bool:
    return start_button.enabled is True and cancel_button.enabled is False


class FakePrediction:
    """The prediction child (needs PyTorch and weights): running until ``end()``; records how it was cancelled."""

    def __init__(self, fail_poll=False):
        self.running, self.cancelled, self.cancels, self.fail_poll = True, False, [], fail_poll
        self.error = None

    @property
    def output_done(self):
        return not self.running

    def poll_events(self):
        if self.fail_poll:
            raise RuntimeError("display broke")
        return []

    def is_running(self):
        return self.running

    def cancel(self, wait=True, **kwargs):
        self.cancels.append(wait)
        self.cancelled, self.running = True, False


class FakeFinish:
    """``PredictionFinish`` (reads the child's result files): done at once; an outcome unless cancelled."""

    def __init__(self, job, volume, show_auxiliary):
        self.reading = False
        self.outcome = None if job.cancelled else NS(segmentation_node="seg", summary_text="lesion present")

    def step(self):
        return True

    def close(self):
        pass


def make_apply(monkeypatch, start_prediction, plan=()):
    import BackSplitSegmentLib.apply_section as apply_section

    monkeypatch.setattr(apply_section, "PredictionFinish", FakeFinish)
    ui = Widget()
    logic = NS(lastSegmentation=None, startPrediction=start_prediction, setAuxiliaryVisible=lambda visible: None)
    prediction_timer, install_timer = Timer(), Timer()
    section = apply_section.ApplySection(ui, logic, lambda: NS(predictVolume=None), prediction_timer, install_timer)
    gate = section._gate
    gate.plan, gate.confirm = (lambda: list(plan)), (lambda text: True)   # the user's OK (the dialog needs Qt)
    return NS(section=section, ui=ui, gate=gate, prediction_timer=prediction_timer, install_timer=install_timer)


def python_step(code: str):
    from BackSplitShared.install_run import InstallStep

    return InstallStep("x", [sys.executable, "-c", code], "torch")
