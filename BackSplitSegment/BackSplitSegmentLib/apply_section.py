"""The panel's *Apply a model* section (Qt wiring only; the work is in ``prediction_run`` and the engine).

*Apply* installs PyTorch and nnU-Net first when they are missing (``BackSplitShared.install_run.DependencyGate``,
after asking, with moving progress), starts the prediction child (``logic.startPrediction``), follows it from a timer
and imports the result in short steps (``PredictionFinish``: one class per tick); *Cancel* ends the child without
waiting. Built once by the module widget, which hands in the widgets, the logic (``ApplyLogic``), the current
parameter node (a callable: the node changes after a scene close) and two ``qt.QTimer`` (no Qt import here).
"""

from __future__ import annotations

from typing import Callable, Protocol

import slicer

from BackSplitShared.install_run import DependencyGate
from BackSplitShared.panel_action import PanelAction, once
from BackSplitShared.panel_support import report_error

from .prediction_run import PredictionFinish, apply_progress

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core (the tests) has no i18n
    def _(text: str) -> str:
        return text


class ApplyLogic(Protocol):
    """What the section needs of the module's logic (``BackSplitSegmentLogic``)."""
    lastSegmentation: object          # set here: the segmentation node of the last prediction

    def startPrediction(self, parameters, extra_channels=()): ...

    def setAuxiliaryVisible(self, visible: bool) -> None: ...


class ApplySection:
    """``ApplySection(ui, logic, parameters, prediction_timer, install_timer)``: ``ui`` the panel's widgets,
    ``logic`` an ``ApplyLogic``, ``parameters()`` the current parameter node, the timers ``qt.QTimer`` (their ticks
    run through the Apply button's ``PanelAction``: every way out, installation included, ends in an idle panel)."""

    def __init__(self, ui, logic: ApplyLogic, parameters: Callable[[], object], prediction_timer, install_timer):
        self.ui, self.logic, self.parameters = ui, logic, parameters
        self._prediction = None
        self._finish = None
        self._predictionTimer = prediction_timer
        self._predictionTimer.setInterval(300)
        self._installTimer = install_timer
        self._installTimer.setInterval(250)
        self.action = PanelAction(_("Could not apply the model"), ui.applyButton, ui.cancelApplyButton,
                                  status=lambda text: setattr(ui.summaryLabel, "text", text) if text else None,
                                  on_idle=self._applyIdle, wait_cursor=True)
        self._predictionTimer.timeout.connect(self.action.wrap_tick(self._predictionTimer, self._pollPrediction))
        self._gate = DependencyGate(self._installTimer, self._showApplyStatus,
                                    lambda text: slicer.util.confirmOkCancelDisplay(text, _("BackSplit: install")),
                                    lambda text: (self.action.finish(), report_error(text)),
                                    ended=self.action.finish)
        self._installTimer.timeout.connect(self.action.wrap_tick(self._installTimer, self._gate.tick))
        ui.applyButton.clicked.connect(self.action.slot(self.onApply))
        ui.cancelApplyButton.clicked.connect(once(_("Could not cancel"), self.onCancelApply))
        ui.showAuxiliaryCheckBox.toggled.connect(self.onShowAuxiliary)

    def cleanup(self) -> None:
        """Slicer is closing: stop the timers and end the child's process tree before leaving."""
        self._predictionTimer.stop()
        self._installTimer.stop()
        self._gate.cancel()
        if self._prediction is not None and self._prediction.is_running():
            self._prediction.cancel(wait=True)

    def onApply(self) -> bool:
        """Run by the Apply button's ``PanelAction``: installs PyTorch and nnU-Net first when they are missing (after
        asking, with moving progress); True while the installation or the prediction runs."""
        return self._gate.run(self._startPrediction)

    def _startPrediction(self) -> bool:
        """Start the child and its timer (True), or raise: the action reports the error once and is idle again."""
        extra = [self.ui.predictExtraChannelSelector.currentNode()] \
            if self.ui.predictExtraChannelSelector.currentNode() else []
        self._prediction = self.logic.startPrediction(self.parameters(), extra)
        preview = bool(getattr(self.parameters(), "fastPreview", False))
        self._showApplyStatus(_("Predicting a fast preview (one fold, no test-time mirroring)...") if preview
                              else _("Predicting..."), False)
        self.ui.applyProgressBar.value = 0
        self._predictionTimer.start()
        return True

    def _showApplyStatus(self, text: str, busy: bool) -> None:
        self.ui.applyProgressBar.setRange(0, 0 if busy else 100)   # 0..0: Qt's moving busy bar
        self.ui.summaryLabel.text = text

    def _applyIdle(self) -> None:
        self._predictionTimer.stop()
        if self._prediction is not None and self._prediction.is_running():   # after a failed tick: end the child
            self._prediction.cancel(wait=False)
        if self._finish is not None:   # scene close, error or Cancel mid-import: release it, removed nodes untouched
            self._finish.close()
        self._prediction, self._finish = None, None
        self.ui.applyProgressBar.setRange(0, 100)
        self.ui.applyButton.enabled = True
        self.ui.cancelApplyButton.enabled = False

    def _pollPrediction(self) -> None:
        """Follow the child; when it ended, import the result in short steps (one class per tick)."""
        if self._finish is None:
            for event in self._prediction.poll_events():
                shown = apply_progress(event)           # (percent or None, text with the time left); None: log line
                if shown is None:
                    continue
                if shown[0] is not None:
                    self.ui.applyProgressBar.value = shown[0]
                self.ui.summaryLabel.text = shown[1]
            if self._prediction.is_running():
                return
            self._finish = PredictionFinish(self._prediction, self.parameters().predictVolume,
                                            self.ui.showAuxiliaryCheckBox.checked)
        if not self._finish.step():   # short steps, no thread: the index, one class, one probability slab per tick
            self._predictionTimer.setInterval(0)
            self.ui.summaryLabel.text = _("Loading the result into the scene...")
            return
        outcome, cancelled = self._finish.outcome, self._prediction.cancelled
        self._predictionTimer.setInterval(300)
        self.action.finish()
        if outcome is not None:
            self.logic.lastSegmentation = outcome.segmentation_node
            self.ui.applyProgressBar.value = 100
            self.ui.summaryLabel.text = outcome.summary_text
        elif cancelled:
            self.ui.summaryLabel.text = _("Prediction cancelled.")

    def onCancelApply(self) -> None:
        if self._gate.busy:
            self._gate.cancel()
        elif self._prediction is not None:
            self._prediction.cancel(wait=False)   # returns at once; the timer notices the end
            self.ui.summaryLabel.text = _("Cancelling...")

    def onShowAuxiliary(self, show: bool) -> None:
        self.logic.setAuxiliaryVisible(show)
