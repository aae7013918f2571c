"""*Generate for all cases* of the Support-structures section: the organ model in a child process, fed with the
listed cases' volumes through files, and its segments added to each case's segmentation node in short steps.

``start_generation(cases, ...)`` checks at once what the nodes tell (no cases, channel counts the model does not
take, no image data, a transform, a sheared grid, channels on another grid: ``check_case``; nothing starts) and
returns a ``GenerationJob``. The panel's timer then calls ``job.poll()``: one bounded piece of GUI-thread work
(reading a slab of a case's volume from the scene, or writing a slab of it for the child:
``case_handover.CaseHandover``; only the image channels, no segment) and the child's new events; then
``queue_events`` and ``import_step`` (one generated class added per tick: ``supports_scene.generated_class_steps``).
The child (``backsplit.supports.worker``) starts at the first step and asks for each case when it comes to it, so
at most one case is read ahead and no volume is written in one GUI call (audit N2). ``cancel()`` and ``close()``
never wait: the child is asked to stop and its process tree ended (a case can be in the organ model for minutes;
TotalSegmentator's children included). A scene close ends the job through the panel (``PanelAction``); a finished
case whose nodes left the scene is refused with the reason. No Qt here (tested with slicer-core).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

from backsplit.errors import InputError, OutputError
from backsplit.io.handover import crop_box, read_class_crop, read_class_crops
from backsplit.io.imagefile import checked_geometry
from backsplit.io.readers import read_seg_nrrd
from backsplit.supports.generate import read_segment_tags
from backsplit.supports.runners import MODEL_TAG, NnUNetModelRunner
from backsplit.supports.worker import GenerationProcess, GenerationRequest

from .case_handover import CaseHandover, child_outcome
from .scene_cases import SceneCase
from .scene_nodes import volume_array, volume_geometry
from .supports_scene import generated_class_steps


@dataclass
class GenerationJob:
    """A running *Generate*: ``handover`` hands the cases to the child (``process`` once it started, at the first
    ``poll()``; None in tests that add finished cases alone); the child writes into ``work_dir`` / ``out`` (removed
    by ``close``); finished cases are added by ``import_step``."""
    process: Optional[GenerationProcess]
    cases: dict[str, SceneCase]
    work_dir: Path
    on_conflict: str = "suffix"
    handover: Optional[CaseHandover] = None
    imported: dict[str, dict[str, str]] = field(default_factory=dict)  # case -> class -> segment name
    failed: dict[str, str] = field(default_factory=dict)
    pending: list = field(default_factory=list)        # finished cases' event data, waiting to be added
    current: Optional[str] = None                      # the case being added, class by class
    steps: Optional[Iterator[str]] = None
    message: str = ""                                  # what this tick's hand-over piece did ("" when none)
    cancel_requested: bool = False

    @property
    def importing(self) -> bool:
        """Finished cases wait to be added, or one is being added."""
        return bool(self.pending) or self.steps is not None

    @property
    def ended(self) -> bool:
        """The child ended and its output was read to the end, or the job was cancelled before the child started."""
        return self.cancel_requested if self.process is None else bool(self.process.output_done)

    def poll(self) -> list:
        """The timer's call: at most one bounded piece of the hand-over on the GUI thread (``CaseHandover.step``:
        one step of reading a case's volume from the scene or of writing it for the child; the child is started
        by the first call) and the child's new events (its ``handover`` requests consumed)."""
        if self.handover is None or (self.process is None and self.cancel_requested):
            return self.process.poll_events() if self.process is not None else []
        pieces = self.handover.pieces
        events = self.handover.step()
        self.process, self.message = self.handover.child, ""
        if self.handover.pieces > pieces:   # what that piece did; after a case's last one: the model takes it
            self.message = self.handover.message if self.handover.busy_reading else "Running the organ model..."
        return events

    def outcome(self) -> tuple[str, str]:
        """Once ``ended``: (``finished`` | ``cancelled`` | ``failed``, the failure's message): a case that could
        not be handed over (named, with how to fix it; ``case_handover.child_outcome``), else the child's error."""
        if self.process is None:
            return "cancelled", ""
        if self.handover is not None:
            state, message, _error, _expected = child_outcome(self.handover, self.cancel_requested)
            return state, message
        if self.cancel_requested or self.process.cancelled:
            return "cancelled", ""
        return ("failed", self.process.failure) if self.process.failure else ("finished", "")

    def cancel(self) -> None:
        """Never waits (audit F7): no more hand-over, the child asked to stop and its process tree ended in the
        background (a case may be in the organ model for minutes); the timer sees the end (``ended``)."""
        self.cancel_requested = True
        if self.handover is not None:
            self.handover.cancel()
        if self.process is not None and self.process.is_running():
            self.process.cancel(wait=False)

    def close(self) -> None:
        """End the child without waiting (the GUI thread never joins it: audit F7) and remove the hand-over and
        output folders; the adding of queued cases stops."""
        self.pending.clear()
        if self.steps is not None:
            self.steps.close()
            self.steps, self.current = None, None
        root = self.handover.root if self.handover is not None else None
        if self.handover is not None:
            self.handover.close()
        if self.process is not None and self.process.is_running():
            self.process.cancel(wait=False)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        if root is not None:        # a child ended by a signal cannot remove it itself
            shutil.rmtree(root, ignore_errors=True)


def check_case(case: SceneCase) -> None:
    """What the organ model's input must be, from the nodes alone (no voxel is read), so that a bad case stops
    *Generate* before anything starts: a segmentation to add to, scalar volumes with image data and no transform
    (``scene_nodes.volume_array``), no sheared grid (TotalSegmentator is given a NIfTI file, which would straighten
    it: ``checked_geometry`` says how to resample), extra channels on the main volume's grid. Raises InputError
    naming the case and how to fix it."""
    if case.segmentation is None:
        raise InputError("no segmentation is chosen for the case; choose its segmentation node", case=case.case_id)
    for index, node in enumerate([case.volume, *case.extra_channels]):
        volume_array(node, case.case_id, "main" if index == 0 else f"channel {index}", copy=False)
    geometry = checked_geometry(volume_geometry(case.volume), "input volume", case.case_id, None)
    for index, node in enumerate(case.extra_channels, start=1):
        problems = geometry.differences(volume_geometry(node))
        if problems:
            raise InputError(f"channel {index} ('{node.GetName()}') is not on the grid of the main volume "
                             f"('{case.volume.GetName()}'): {'; '.join(problems)}; resample it to the main volume "
                             "(Resample Scalar/Vector/DWI Volume module)", case=case.case_id)


def start_generation(cases: Sequence[SceneCase], *, model_dir: Optional[Path] = None, classes: Sequence[str] = (),
                     device: str = "auto", task: str = "total", fast: bool = False, executable: Optional[str] = None,
                     on_conflict: str = "suffix", python: Optional[str] = None,
                     read_budget_s: float = 0.04) -> GenerationJob:
    """Check every case (``check_case``; an nnU-Net model's channel count) and return the job; the panel's timer
    steps it (``GenerationJob.poll``, pieces of about ``read_budget_s`` seconds): the child starts at the first
    step and takes each case's image channels from the hand-over when it comes to it. Raises InputError before
    anything starts, OutputError when the temporary folder cannot be made."""
    if not cases:
        raise InputError("add cases first: there is nothing to run the organ model on")
    if model_dir is not None:  # clear errors (not a model, channel count) before anything starts
        runner = NnUNetModelRunner(Path(model_dir), classes=list(classes) or None)
        for case in cases:
            runner.check_channels(1 + len(case.extra_channels), case.case_id)
    for case in cases:
        check_case(case)
    try:
        work = Path(tempfile.mkdtemp(prefix="backsplit-supports-"))
    except OSError as error:   # a full or unusable temporary folder is the user's to fix
        raise OutputError(f"writing case '{cases[0].case_id}' for the organ model failed ({error.strerror or error}) "
                          f"in the temporary folder '{tempfile.gettempdir()}'; free space there, or set TMPDIR to a "
                          "writable folder and restart Slicer") from error
    sources = [dataclasses.replace(c, segment_names=[]).source() for c in cases]   # the image channels only
    handed = [[s.case_id, s.description, 1 + len(c.extra_channels)] for s, c in zip(sources, cases)]

    def start_child(root: Path) -> GenerationProcess:
        request = GenerationRequest([], str(work / "out"), str(model_dir) if model_dir else None, list(classes),
                                    device, task, fast, executable, handover_dir=str(root), handed=handed,
                                    parent_pid=os.getpid())
        return GenerationProcess(request, python=python, request_file=root / "request.json").start()

    return GenerationJob(None, {c.case_id: c for c in cases}, work, on_conflict,
                         CaseHandover(sources, start_child, read_budget_s))


def run_to_end(job: GenerationJob, wait: float = 0.02) -> list[str]:
    """Scripts and tests: step ``job`` as the panel's timer does (``poll``, ``queue_events``, ``import_step``) until
    the child ended and every finished case was added, sleeping ``wait`` seconds while nothing is handed over.
    Returns the messages; ``job.outcome()`` says how it ended."""
    messages: list[str] = []
    while True:
        events = job.poll()
        messages += queue_events(job, events) + import_step(job)
        if job.ended and not job.importing:
            messages += queue_events(job, job.poll())
            if not job.importing:
                return messages
        elif not job.message and not job.importing:
            time.sleep(wait)


def import_events(job: GenerationJob, events) -> list[str]:
    """Add the segments of every case the child finished (events from ``job.poll()``) to its
    segmentation node, all at once (scripts, tests); the panel calls ``queue_events`` and then ``import_step`` once
    per tick. Returns messages for the panel."""
    messages = queue_events(job, events)
    while job.importing:
        messages += import_step(job)
    return messages


def queue_events(job: GenerationJob, events) -> list[str]:
    """Note the cases the child finished (or failed) in ``events``; reads no file. Returns messages."""
    messages = []
    for event in events:
        if event.stage != "generate" or not event.data.get("case"):
            continue
        case_id, status = event.data["case"], event.data.get("status")
        if status == "failed":
            job.failed[case_id] = event.data.get("error", "")
            messages.append(f"case '{case_id}' failed: {job.failed[case_id]}")
        elif status == "done" and case_id not in job.imported and case_id != job.current \
                and all(case_id != data["case"] for data in job.pending):
            if _scene_closed(job, case_id, messages):
                continue
            job.pending.append(dict(event.data))
    return messages


def _scene_closed(job: GenerationJob, case_id: str, messages: list) -> bool:
    case = job.cases[case_id]
    if case.volume.GetScene() is not None and case.segmentation.GetScene() is not None:
        return False
    job.failed[case_id] = "the scene was closed before its generated segments could be added"
    messages.append(f"case '{case_id}': {job.failed[case_id]}")
    return True


def import_step(job: GenerationJob) -> list[str]:
    """One bounded piece of adding the finished cases (a timer tick): the next case's class index (a small file)
    or one class of the case being added (``generated_class_steps``). A failure is recorded for its case only
    (F3: the other cases of the batch are still added). Returns messages for the panel."""
    messages: list[str] = []
    if job.steps is None:
        if not job.pending:
            return messages
        data = job.pending.pop(0)
        case_id = data["case"]
        if _scene_closed(job, case_id, messages):
            return messages
        try:
            job.steps, job.current = _case_steps(job, data), case_id
        except Exception as exc:  # noqa: BLE001 - recorded per case, shown in the panel's summary
            job.failed[case_id] = str(exc)
            return [f"case '{case_id}': {exc}"]
        return messages
    case_id = job.current
    try:
        next(job.steps)
    except StopIteration as stop:
        job.imported[case_id] = stop.value
        messages.append(f"case '{case_id}': added {', '.join(stop.value.values())}")
        job.steps, job.current = None, None
    except Exception as exc:  # noqa: BLE001 - recorded per case, shown in the panel's summary
        job.failed[case_id] = str(exc).removeprefix(f"case '{case_id}': ")
        messages.append(f"case '{case_id}': {job.failed[case_id]}")
        job.steps, job.current = None, None
    return messages


def _case_steps(job: GenerationJob, data: dict) -> Iterator[str]:
    """The class-by-class adding of one finished case: from the crops the child wrote (``data['crops']``), else
    (a file from elsewhere) from the ``.seg.nrrd`` read at once."""
    case_id = data["case"]
    case = job.cases[case_id]
    if data.get("crops"):
        folder = Path(data["crops"])
        entries, geometry, model = read_class_crops(folder)

        def load(entry):
            crop = read_class_crop(folder, entry)
            return None if crop is None else (tuple(entry["start"]), crop)
    else:
        content = read_seg_nrrd(Path(data["file"]), case_id)
        geometry = content.geometry
        model = next((t.get(MODEL_TAG, "") for t in read_segment_tags(Path(data["file"])).values()), "")
        crops = {name: crop_box(mask) for name, mask in content.masks.items()}
        entries = [{"name": n, "color": list(content.colors.get(n, (0.6, 0.6, 0.6))),
                    "terminology": content.terminology.get(n, "")} for n in content.masks]

        def load(entry):
            return crops[entry["name"]]
    if geometry.differences(volume_geometry(case.volume)):
        raise InputError("the generated segments are not on the volume's grid", case=case_id)
    return generated_class_steps(case.segmentation, case.volume, entries, load, model=model,
                                 on_conflict=job.on_conflict, case=case_id)
