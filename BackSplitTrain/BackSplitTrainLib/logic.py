"""What the BackSplit Train panel does, for the widget and for scripts: training options from the parameter node,
the start of a training (local child process or one SLURM job), the GPU probe, the live plot and the learned-context
view. ``BackSplitTrain.BackSplitTrainLogic`` adds the module's parameter node to it."""


import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from backsplit.errors import InputError
from backsplit.runtime.childprocess import python_executable
from backsplit.training.options import TrainOptions
from backsplit.training.status import TrainingStatus
from BackSplitShared.dependencies import ensure_nnunet
from BackSplitTrainLib import training_run
from BackSplitTrainLib.context_view import finish_context_show, start_context_show
from BackSplitTrainLib.devices import DeviceProbe, describe_devices, probe_devices
from BackSplitTrainLib.paths import default_work_folder, resolve_folder
from BackSplitTrainLib.plots import TrainingPlot, ensure_plot
from BackSplitTrainLib.support_choice import choice_options
from BackSplitTrainLib.training_run import apply_events, dataset_target_count, final_message


class TrainLogic(ScriptedLoadableModuleLogic):
    """What the panel does, for scripts: ``startTraining(parameters)`` starts a training (a local child process, or
    one SLURM job with ``executor`` "slurm") and returns (job, status); ``pollTraining`` applies its events.

    >>> from BackSplitTrain import BackSplitTrainLogic
    >>> logic = BackSplitTrainLogic()
    >>> parameters = logic.getParameterNode()
    >>> parameters.datasetFolder = pathlib.Path("~/BackSplit/nnUNet_raw/Dataset501_BackSplit").expanduser()
    >>> job, status = logic.startTraining(parameters)
    >>> job.wait()
    >>> logic.pollTraining(job, status, None); logic.finalMessage(job, status)
    """

    @staticmethod
    def applyDefaults(parameters) -> None:
        """The work folder as an absolute path: its default when unset (also after a scene close reset it)."""
        folder = resolve_folder(parameters.workFolder, default_work_folder())
        if str(parameters.workFolder) != str(folder):
            parameters.workFolder = folder

    def ensureDependencies(self) -> bool:
        return ensure_nnunet()

    def describeDevices(self) -> str:
        """Blocking variant (scripts, self-test): GPU name and free memory, or why training runs on the CPU."""
        return describe_devices(probe_devices(python_executable()))

    def startDeviceProbe(self):
        """The same question without waiting: poll the returned probe until it answers."""
        return DeviceProbe().start()

    def trainOptions(self, p):
        """Training options from the parameters; folders never relative to Slicer's working directory."""
        dataset = resolve_folder(p.datasetFolder)
        if dataset is None:
            raise InputError("choose the dataset folder (DatasetNNN_Name, written by BackSplit Segment's export)")
        return TrainOptions(
            dataset_dir=dataset, work_dir=resolve_folder(p.workFolder, default_work_folder()),
            configuration=p.configuration,
            fold=p.fold, epochs=int(p.epochs), iterations_per_epoch=int(p.iterationsPerEpoch), device=p.device,
            sampling="target" if p.targetSampling else "stock",
            pretrained_model=resolve_folder(p.pretrainedModel),
            initial_lr=float(p.learningRate) or None, resume=bool(p.resume), with_binary=bool(p.withBinary),
            batch_size=int(p.batchSize) or None, context=p.learnedContext,
            model_dir=training_run.model_destination(dataset, p.configuration),   # lands in Apply's model list
            **choice_options(p.supportRecipe, fine_tuning=resolve_folder(p.pretrainedModel) is not None),
            extra={"overwrite": True} if p.overwrite else {})

    def startTraining(self, parameters):
        """Start without waiting (``training_run.start_job``: no SLURM command on the GUI thread)."""
        options = self.trainOptions(parameters)
        job = training_run.start_job(options, parameters.executor, resolve_folder(parameters.slurmConfig),
                                     parameters.slurmPartition)
        return job, TrainingStatus(models_total=options.runs_total)

    def createPlot(self):
        plot = TrainingPlot()
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
            plotWidget = layoutManager.plotWidget(0)
            plotWidget.mrmlPlotViewNode().SetPlotChartNodeID(plot.chart.GetID())
        return plot

    def ensurePlot(self, plot, job, status):
        """The plot of the running training; recreated (with the epochs so far) when a scene close removed it."""
        if plot is not None and plot.in_scene:
            return plot
        return ensure_plot(None, status, dataset_target_count(job.options.dataset_dir), create=self.createPlot)

    def pollTraining(self, job, status, plot) -> list:
        """Apply new events to the status and the plot; return new log lines for the log box."""
        return apply_events(job.poll_events(), status, plot, dataset_target_count(job.options.dataset_dir))

    def startContextShow(self, p):
        """``backsplit context show`` on the dataset's first training cases, in a child process (see
        ``BackSplitTrainLib.context_view``); the work folder must hold a learned-context training."""
        dataset = resolve_folder(p.datasetFolder)
        if dataset is None:
            raise InputError("choose the dataset folder that the learned-context training used")
        return start_context_show(resolve_folder(p.workFolder, default_work_folder()), dataset, device=p.device)

    @staticmethod
    def finishContextShow(job):
        return finish_context_show(job)

    @staticmethod
    def finalMessage(job, status):
        return final_message(status, bool(job.cancelled), job.returncode)
