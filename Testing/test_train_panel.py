"""BackSplitTrain's panel logic without Qt: event stream -> status -> plot tables (real MRML plot nodes via
slicer-core), and the device description. The Qt widget itself cannot run here (no Qt): it only forwards to these."""

import math

from backsplit.runtime.progress import ProgressEvent
from backsplit.training.status import TrainingStatus


def events_for(model, epochs, dice_classes):
    yield ProgressEvent("train", f"{model}: starting", 0, epochs, {"model": model})
    for epoch in range(1, epochs + 1):
        yield ProgressEvent("epoch", "", epoch, epochs, {
            "epoch": epoch, "num_epochs": epochs, "train_loss": 1.0 / epoch, "val_loss": 0.8 / epoch,
            "pseudo_dice": [0.1 * epoch + i for i in range(dice_classes)], "epoch_time": 2.0})


def test_curve_columns_plot_losses_and_target_dice_only():
    from BackSplitTrainLib.plots import curve_columns

    status = TrainingStatus(models_total=2)
    for event in list(events_for("BackSplit model", 3, 3)) + list(events_for("binary model", 2, 1)):
        status.update(event)
    columns = curve_columns(status, target_count=1)
    assert columns["epoch"] == [1.0, 2.0, 3.0]
    assert columns["BackSplit model train loss"] == [1.0, 0.5, 1.0 / 3]
    assert columns["BackSplit model Dice 1"] == [0.1, 0.2, 0.1 * 3]
    assert "BackSplit model Dice 2" not in columns                      # support classes are not plotted
    assert columns["binary model val loss"][:2] == [0.8, 0.4] and math.isnan(columns["binary model val loss"][2])
    assert status.models_done == 1 and status.epoch == 2


def test_training_plot_nodes(slicer_scene):
    from BackSplitTrainLib.plots import TrainingPlot

    status = TrainingStatus()
    plot = TrainingPlot("test")
    for event in events_for("BackSplit model", 2, 2):
        status.update(event)
        plot.update(status, target_count=1)
    assert plot.column_names == ["epoch", "BackSplit model train loss", "BackSplit model val loss",
                                 "BackSplit model Dice 1"]
    assert plot.chart.GetNumberOfPlotSeriesNodes() == 3
    assert plot.table.GetTable().GetNumberOfRows() == 2


def test_device_description():
    from BackSplitTrainLib.devices import describe_devices

    assert "not installed" in describe_devices({"torch": None})
    assert "H100" in describe_devices({"torch": "2", "gpus": [{"name": "NVIDIA H100", "free_gb": 70.0,
                                                               "total_gb": 80.0}]})
    assert "CPU" in describe_devices({"torch": "2", "gpus": [], "mps": False})


def test_plot_of_a_running_training_comes_back_after_scene_close(slicer_scene):
    """Scene close (Clear(0), as File > Close Scene) removes the plot nodes; the panel recreates them from the
    status, with every epoch so far."""
    from BackSplitTrainLib.plots import TrainingPlot, ensure_plot

    status = TrainingStatus()
    plot = TrainingPlot("run")
    for event in events_for("BackSplit model", 3, 1):
        status.update(event)
    plot.update(status, target_count=1)
    assert ensure_plot(plot, status, 1) is plot
    slicer_scene.scene.Clear(0)
    assert not plot.in_scene
    again = ensure_plot(plot, status, 1)
    assert again is not plot and again.in_scene and again.table.GetTable().GetNumberOfRows() == 3
    assert again.chart.GetNumberOfPlotSeriesNodes() == 3
