"""The panel's case table and class lists, kept apart from the widget so that the widget stays small.

``CaseList(ui, item_factory)`` works on the panel's widgets (``ui`` from ``childWidgetVariables``; the table item
class is passed in, so no Qt import here). The table cells are read-only (``editTriggers`` in the .ui): the case
id, channels and segmentation shown are what will be exported.
"""

from __future__ import annotations

from typing import Callable

from .scene_cases import SceneCase, add_loaded_cases, segment_names_in_cases, unique_case_id


class CaseList:
    def __init__(self, ui, item_factory: Callable[[str], object], translate: Callable[[str], str] = lambda s: s):
        self.ui = ui
        self.item = item_factory
        self.tr = translate
        self.cases: list[SceneCase] = []

    # ---- cases ---------------------------------------------------------------------------------------------------
    def add(self, volume, segmentation, extra_channels=()) -> None:
        if volume is None or segmentation is None:
            raise ValueError(self.tr("Choose a volume and its segmentation first."))
        used = {c.case_id for c in self.cases}
        self.cases.append(SceneCase(unique_case_id(volume.GetName(), used), volume, segmentation,
                                    list(extra_channels)))
        self.refresh()

    def add_loaded(self, scene) -> str:
        """Add every segmentation of the scene with its volume; returns the text saying how they were paired."""
        self.cases, summary = add_loaded_cases(scene, self.cases)
        self.refresh()
        return summary

    def remove_selected(self) -> None:
        for row in sorted({item.row() for item in self.ui.caseTable.selectedItems()}, reverse=True):
            del self.cases[row]
        self.refresh()

    def clear(self) -> None:
        self.cases = []
        self.refresh()

    def refresh(self) -> None:
        table = self.ui.caseTable
        table.setRowCount(len(self.cases))
        for row, case in enumerate(self.cases):
            channels = [case.volume.GetName()] + [v.GetName() for v in case.extra_channels]
            for column, text in enumerate([case.case_id, ", ".join(channels), case.segmentation.GetName()]):
                table.setItem(row, column, self.item(text))
        chosen = set(self.names(self.ui.targetList)) | set(self.names(self.ui.supportList))
        self.ui.availableList.clear()
        for name in segment_names_in_cases(self.cases):
            if name not in chosen:
                self.ui.availableList.addItem(name)
        self.ui.caseCountLabel.text = self.tr("{count} case(s)").format(count=len(self.cases))

    # ---- class lists ---------------------------------------------------------------------------------------------
    @staticmethod
    def names(widget) -> list[str]:
        return [widget.item(i).text() for i in range(widget.count)]

    def move_available(self, target_list) -> None:
        for item in list(self.ui.availableList.selectedItems()):
            target_list.addItem(item.text())
            self.ui.availableList.takeItem(self.ui.availableList.row(item))

    def move_selected(self, step: int) -> None:
        for widget in (self.ui.targetList, self.ui.supportList):
            row = widget.currentRow
            if row < 0 or not widget.hasFocus() and not widget.selectedItems():
                continue
            new_row = row + step
            if 0 <= new_row < widget.count:
                item = widget.takeItem(row)
                widget.insertItem(new_row, item)
                widget.setCurrentRow(new_row)

    def remove_classes(self) -> None:
        for widget in (self.ui.targetList, self.ui.supportList):
            for item in list(widget.selectedItems()):
                widget.takeItem(widget.row(item))
        self.refresh()
