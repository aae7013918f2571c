"""Live training curves as a Slicer plot: one table per quantity, one series per model and curve.

``update_tables`` is a pure translation from the training status (engine) to table columns; ``TrainingPlot`` owns the
MRML nodes (tables, series, chart) and refreshes them from a status.
"""

from __future__ import annotations

import math
from typing import Optional

import slicer
import vtk

from backsplit.training.status import TrainingStatus

LOSS_COLORS = {"train": (0.2, 0.4, 0.8), "val": (0.9, 0.5, 0.1)}
DICE_COLORS = [(0.85, 0.15, 0.15), (0.2, 0.65, 0.3), (0.55, 0.35, 0.75), (0.1, 0.6, 0.7)]


def curve_columns(status: TrainingStatus, target_count: Optional[int] = None) -> dict[str, list[float]]:
    """Columns to plot: epoch, and per model '<model> train loss', '<model> val loss', '<model> Dice <class i>'.

    Only the target classes' pseudo-Dice is plotted (the first ``target_count`` foreground classes)."""
    columns: dict[str, list[float]] = {}
    longest = max((len(c.epochs) for c in status.curves.values()), default=0)
    columns["epoch"] = [float(e) for e in range(1, longest + 1)]
    for model, curves in status.curves.items():
        pad = [math.nan] * (longest - len(curves.epochs))
        columns[f"{model} train loss"] = list(curves.train_loss) + pad
        columns[f"{model} val loss"] = list(curves.val_loss) + pad
        n_classes = max((len(d) for d in curves.pseudo_dice), default=0)
        for index in range(min(n_classes, target_count or n_classes)):
            values = [d[index] if index < len(d) else math.nan for d in curves.pseudo_dice]
            columns[f"{model} Dice {index + 1}"] = values + pad
    return columns


class TrainingPlot:
    """A chart with the losses and the target pseudo-Dice of every model being trained."""

    def __init__(self, name: str = "BackSplit training"):
        scene = slicer.mrmlScene
        self.table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} curves")
        self.chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} chart")
        self.chart.SetTitle(name)
        self.chart.SetXAxisTitle("epoch")
        self.chart.SetYAxisTitle("loss / pseudo-Dice")
        self.series: dict[str, object] = {}

    def update(self, status: TrainingStatus, target_count: Optional[int] = None) -> None:
        columns = curve_columns(status, target_count)
        table = vtk.vtkTable()
        for name, values in columns.items():
            array = vtk.vtkDoubleArray()
            array.SetName(name)
            for value in values:
                array.InsertNextValue(value)
            table.AddColumn(array)
        self.table.SetAndObserveTable(table)
        for index, name in enumerate(columns):
            if name == "epoch" or name in self.series:
                continue
            series = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
            series.SetAndObserveTableNodeID(self.table.GetID())
            series.SetXColumnName("epoch")
            series.SetYColumnName(name)
            series.SetPlotType(series.PlotTypeScatter)
            series.SetMarkerStyle(series.MarkerStyleNone)
            if "loss" in name:
                series.SetColor(*LOSS_COLORS["train" if "train" in name else "val"])
            else:
                series.SetColor(*DICE_COLORS[index % len(DICE_COLORS)])
            if "binary" in name:
                series.SetLineStyle(series.LineStyleDash)
            self.chart.AddAndObservePlotSeriesNodeID(series.GetID())
            self.series[name] = series

    @property
    def column_names(self) -> list[str]:
        table = self.table.GetTable()
        return [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]

    @property
    def in_scene(self) -> bool:
        """False after a scene close removed the plot's nodes."""
        return all(node.GetScene() is not None for node in [self.table, self.chart, *self.series.values()])


def ensure_plot(plot: Optional[TrainingPlot], status: TrainingStatus, target_count: Optional[int] = None,
                create=TrainingPlot) -> TrainingPlot:
    """The running training's plot, recreated with every epoch so far when a scene close removed its nodes."""
    if plot is not None and plot.in_scene:
        return plot
    plot = create()
    if status.curves:
        plot.update(status, target_count=target_count)
    return plot
