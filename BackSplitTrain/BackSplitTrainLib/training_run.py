"""Follow a running training from the panel's timer: events -> status (progress, time left), plot, log lines.

No Qt here: the widget calls ``apply_events`` with what ``TrainingProcess.poll_events()`` returned and shows the
returned log lines, ``status.fraction`` and ``status.summary()`` (epoch, elapsed, time left).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from backsplit.datasets.layout import read_dataset_json
from backsplit.errors import BackSplitError, InputError
from backsplit.models.location import free_name, models_dir
from backsplit.models.recent import take_handoff
from backsplit.runtime.progress import ProgressEvent, Stage
from backsplit.runtime.slurm_poll import PENDING, BackgroundQueue
from backsplit.training.cluster import ClusterTraining, running_cluster_jobs, slurm_config
from backsplit.training.process import TrainingProcess
from backsplit.training.status import TrainingStatus
from BackSplitShared.paths import default_work_folder, resolve_folder


def dataset_target_count(dataset_dir: Path) -> Optional[int]:
    """How many target classes the dataset has (their pseudo-Dice is plotted); None when it cannot be read."""
    try:
        meta = read_dataset_json(Path(dataset_dir), required=("backsplit",))
        return len(meta["backsplit"]["schema"]["targets"])
    except (InputError, OSError, KeyError, TypeError):
        return None


def apply_events(events: Iterable[ProgressEvent], status: TrainingStatus, plot=None,
                 target_count: Optional[int] = None) -> list[str]:
    """Update ``status`` (and ``plot`` once per call when an epoch ended); return the lines for the log box."""
    lines = []
    epoch_ended = False
    for event in events:
        if event.stage == Stage.LOG:
            lines.append(event.message)
            continue
        status.update(event)
        lines.append(f"[{event.stage}] {event.message}" if event.message else f"[{event.stage}]")
        epoch_ended = epoch_ended or event.stage == "epoch"
    if epoch_ended and plot is not None:
        plot.update(status, target_count=target_count)
    return lines


def final_message(status: TrainingStatus, cancelled: bool, returncode: Optional[int]) -> tuple[str, bool]:
    """What the panel says when the child has ended, and whether it is an error to show in a dialog."""
    if cancelled:
        return "Training cancelled. Tick Resume and press Start to continue it.", False
    if status.error:
        return status.error, True
    if returncode not in (0, None):
        return f"The training process ended with code {returncode}; see the log for the reason.", True
    models = "\n".join(status.models) if status.models else "(no model reported)"
    return f"Finished. Models:\n{models}", False


def start_job(options, executor: str = "local", slurm_config_file: Optional[Path] = None, partition: str = ""):
    """Start a training without waiting: a local child process (``TrainingProcess``), or with ``executor`` "slurm"
    one SLURM job whose ``sbatch`` runs as a child process and whose ``squeue`` runs in the background
    (``ClusterTraining.start(wait=False)``, ``BackgroundQueue``): Slicer's GUI thread never waits for slurmctld
    (audit N3). InputError for settings that cannot be used, BackSplitError when the SLURM commands are missing."""
    if executor == "slurm":
        config = slurm_config(slurm_config_file, partition)
        return ClusterTraining(options, config, run=BackgroundQueue()).start(wait=False)
    return TrainingProcess(options).start()


def follow_text(job, status: TrainingStatus) -> str:
    """The status line while a training runs: the status's summary, and for a cluster job what SLURM says
    (submission pending, ``squeue`` not answering, a failed ``scancel``)."""
    lines = [status.summary()]
    if isinstance(job, ClusterTraining):
        if job.job_id is None:
            lines.append("Submitting the job to SLURM (waiting for sbatch's answer)...")
        queue = "waiting for squeue's first answer" if PENDING in job.queue_error else job.queue_error
        lines += [f"SLURM: {note}" for note in (job.cancel_error, queue) if note]
    return "\n".join(line for line in lines if line)


def stop_following(job, wait: bool = False) -> None:
    """What the panel does with a running training when it stops following it without the user's Cancel (a display
    error in a tick, Slicer's exit): a local training child is ended (``cancel``); a cluster job is only left
    (``ClusterTraining.detach``): SLURM keeps running it and ``follow_left_cluster_job`` finds it again."""
    if isinstance(job, ClusterTraining):
        job.detach()
    elif job is not None and job.is_running():
        job.cancel(wait=wait)


def follow_left_cluster_job(work_folder) -> Optional[ClusterTraining]:
    """The newest cluster training of the panel's work folder (unset: the default one) that was left running
    (``stop_following``), followed again from the start of its output; None when there is none. Reads files only
    (no SLURM call)."""
    for record in running_cluster_jobs(resolve_folder(work_folder, default_work_folder())):
        try:
            return ClusterTraining.follow(record, run=BackgroundQueue())   # squeue never on the GUI thread (N3)
        except BackSplitError:
            continue
    return None


def model_destination(dataset_dir: Path, configuration: str, models: Optional[Path] = None) -> Path:
    """Where a finished training's model is copied (``TrainOptions.model_dir``): a new folder in the models location
    (``models_dir``), named after the dataset and configuration ("Dataset501_BackSplit_2d", then "_2", ...), so that
    BackSplit Segment's model list shows it; the binary baseline goes beside it with "_binary"."""
    import re

    folder = models_dir(models)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{Path(dataset_dir).name}_{configuration}").lstrip("._-") or "model"
    return folder / free_name(folder, name)


def take_dataset_handoff(parameters, recent_file: Optional[Path] = None) -> Optional[Path]:
    """Set ``parameters.datasetFolder`` to the dataset BackSplit Segment handed over ("Train on this dataset"),
    taken once; returns it, or None when there was none."""
    dataset = take_handoff("datasets", recent_file)
    if dataset is not None:
        parameters.datasetFolder = dataset
    return dataset
