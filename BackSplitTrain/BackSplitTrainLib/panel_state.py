"""What the training panel shows from its parameters alone, updated whenever the parameter node changes: the SLURM
fields only with "Run on: slurm", and Start enabled only when the inputs are valid, its tooltip saying what is
missing ("Choose the dataset folder ...").

``start_missing(parameters)`` is a pure rule over the parameter node's values (only ``is_dir`` / ``is_file`` of the
folders typed); ``PanelState`` applies it and the SLURM rule to the widgets and watches the parameter node:
``watch(node)`` adds an observer of its ``ModifiedEvent`` (the parameterNodeWrapper forwards ``AddObserver`` to its
MRML node, ``wrapper.py`` v5.10.0:352; ``vtkMRMLScriptedModuleNode::SetParameter`` calls ``Modified()`` when a value
changes, ``vtkMRMLScriptedModuleNode.cxx`` v5.10.0:147-155), as Slicer's scripted-module template does for its
``_checkCanApply``. No Qt import: the widgets are handed in.
"""

from __future__ import annotations

from typing import Callable, Optional

from BackSplitShared.paths import resolve_folder

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core (the tests) has no i18n
    def _(text: str) -> str:
        return text

MODIFIED_EVENT = "ModifiedEvent"   # vtkCommand::ModifiedEvent; AddObserver takes the event's name too
# choices of "How support structures enter training" that are not a plain recipe (cannot go with learned context)
VARIANTS = ("ramp:200,lvr=0.5", "lvr:1", "head")


def slurm_shown(executor: str) -> bool:
    """The SLURM fields (partition, config file) are shown only when the training runs on SLURM."""
    return executor == "slurm"


def start_missing(p) -> Optional[str]:
    """What Start still needs, or None. ``p`` has the parameter node's attributes (``datasetFolder``,
    ``pretrainedModel``, ``resume``, ``learnedContext``, ``supportRecipe``, ``executor``, ``slurmConfig``)."""
    dataset = resolve_folder(p.datasetFolder)
    if dataset is None:
        return _("Choose the dataset folder (DatasetNNN_Name, written by BackSplit Segment's Export)")
    if not dataset.is_dir():
        return _("The dataset folder {folder} does not exist").format(folder=dataset)
    if not (dataset / "dataset.json").is_file():
        return _("{folder} has no dataset.json: choose the DatasetNNN_Name folder that BackSplit Segment's Export "
                 "wrote").format(folder=dataset)
    model = resolve_folder(p.pretrainedModel)
    if model is not None and p.resume:
        return _("Resume and Fine-tune from cannot be combined: untick Resume, or clear Fine-tune from (Advanced)")
    if model is not None and not model.is_dir():
        return _("The model folder to fine-tune from, {folder}, does not exist (Advanced)").format(folder=model)
    if p.learnedContext != "none" and p.supportRecipe in VARIANTS:
        return _("Learned context cannot be combined with '{choice}' (Advanced): choose default or paper, or "
                 "learned context none").format(choice=p.supportRecipe)
    config = resolve_folder(p.slurmConfig) if slurm_shown(p.executor) else None
    if config is not None and not config.is_file():
        return _("The SLURM config file {file} does not exist (clear the field to use none)").format(file=config)
    return None


class PanelState:
    """``PanelState(ui, parameters, busy)``: ``parameters()`` returns the parameter node (None before binding),
    ``busy()`` is True while the Start button's work runs (its ``PanelAction`` owns the button then). ``update()``
    shows or hides ``ui.slurmGroupBox`` and enables ``ui.startButton`` with the tooltip of the .ui, or greys it out
    with the missing input as tooltip. A rule that fails counts as "ready" (Start's own handler then reports the
    problem): ``update`` never raises out of an observer."""

    def __init__(self, ui, parameters: Callable[[], object], busy: Callable[[], bool]) -> None:
        self.ui, self.parameters, self.busy = ui, parameters, busy
        self.start_tooltip = ui.startButton.toolTip
        self._watched = None
        self._tag = None

    def update(self, *_event) -> None:
        p = self.parameters()
        if p is None:
            return
        self.ui.slurmGroupBox.visible = slurm_shown(p.executor)
        if self.busy():
            return
        try:
            problem = start_missing(p)
        except Exception:  # noqa: BLE001 (a half-set-up panel, a closed scene: let the click say it)
            problem = None
        self.ui.startButton.enabled = problem is None
        self.ui.startButton.toolTip = self.start_tooltip if problem is None else problem

    def watch(self, node) -> None:
        """Update on every change of ``node`` (the parameter node, or its wrapper) and now; idempotent per MRML
        node (``enter`` and a scene close call it again)."""
        mrml = getattr(node, "parameterNode", node)
        if mrml is not self._watched:
            self.unwatch()
            if mrml is not None:
                self._tag = mrml.AddObserver(MODIFIED_EVENT, self.update)
                self._watched = mrml
        self.update()

    def unwatch(self) -> None:
        if self._watched is not None:
            self._watched.RemoveObserver(self._tag)
        self._watched, self._tag = None, None
