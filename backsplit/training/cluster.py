"""One training on a SLURM cluster, followed like a local training (the training panel's "cluster" choice).

``ClusterTraining(options, config).start()`` writes the options file and an sbatch script (nnU-Net's variables for
this training exported in it, resources from ``runtime.slurm.SlurmConfig``), submits it with ``sbatch`` and then
behaves like ``training.process.TrainingProcess``: ``poll_events()`` reads the progress events the training prints
into the job's output file (a shared file system between this machine and the nodes is assumed, as for any SLURM
use) and records them as a local worker's (``runtime.workerprocess.EventRecord``), ``is_running()`` asks
``squeue``, ``cancel()`` calls ``scancel``. A panel passes ``wait=False`` to ``start`` and ``cancel``: ``sbatch`` and
``scancel`` then run as child processes whose answers later calls take (``runtime.slurm_poll.BackgroundCall``), and
``run=BackgroundQueue()`` does the same for ``squeue``: Slicer's GUI thread never waits for slurmctld. The node runs
the same ``backsplit.training.worker`` as a local training, so the exit status and the final event follow the one
worker protocol.

The GUI never ends a cluster job by itself: only ``cancel()`` (the user's Cancel) calls ``scancel``. A failing
``squeue`` (a busy or restarting slurmctld) means "unknown", not "ended"; a display error or Slicer's exit only
``detach()``es. Each submitted job leaves a record beside its options file (``<work>/jobs/train-*.cluster.json``),
so that ``running_cluster_jobs(work)`` finds it again and ``ClusterTraining.follow(record)`` follows it again later,
from the start of its output. A background submission writes the record before ``sbatch`` starts and ``sbatch``
writes its answer to ``<options>.submitted`` (errors to ``<options>.submit-errors``), so a job submitted while the
panel closed is found too.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Optional

from backsplit.errors import BackSplitError, InputError
from backsplit.runtime.childprocess import python_executable
from backsplit.runtime.exits import EXIT_CANCELLED, EXIT_DONE, EXIT_ERROR, EXIT_UNEXPECTED
from backsplit.runtime.progress import ProgressEvent, Stage, parse_event_line
from backsplit.runtime.slurm import Runner, SlurmClient, SlurmConfig, shell_line
from backsplit.runtime.workerprocess import EventRecord
from backsplit.training.options import TrainOptions
from backsplit.training.process import options_file_for, training_command, training_environment

EXPORTED = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_def_n_proc", "nnUNet_compile",
            "BACKSPLIT_N_PROC_DA", "PYTHONUNBUFFERED", "PYTHONPATH")   # PYTHONPATH: also where SBATCH_EXPORT=NONE
RECORD_SUFFIX = ".cluster.json"
# scancel's words for a job that has already ended (slurm_errno.c: ESLURM_INVALID_JOB_ID, ESLURM_ALREADY_DONE)
JOB_GONE = ("Invalid job id specified", "already completing or completed")
# squeue still lists a job for a while in these states (squeue(1) "JOB STATE CODES"): its processes are ending
ENDED_STATES = {"COMPLETING", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}


def training_script(options_file: Path, env: dict, config: SlurmConfig, python: str) -> str:
    """The sbatch script of one training (pure): the config's directives, nnU-Net's variables and PYTHONPATH of
    ``env`` exported, then ``exec`` of the training worker on ``options_file``. The output file is not in the script
    but on sbatch's command line (``--output``: no shell, so a folder with spaces works). The config's values are
    checked first: InputError."""
    config.check()
    lines = ["#!/bin/bash", f"#SBATCH --job-name={config.job_name}-train"]
    lines += [f"#SBATCH {option}" for option in config.directives()]
    lines += [f"export {key}={shlex.quote(env[key])}" for key in EXPORTED if key in env]
    lines += ["exec " + " ".join(shlex.quote(a) for a in training_command(options_file, python)), ""]
    return "\n".join(lines)


class ClusterTraining(EventRecord):
    """A training submitted to SLURM, with the methods a panel's timer calls on a ``TrainingProcess``:
    ``start``, ``poll_events``, ``is_running``, ``returncode``, ``cancel``; ``error``, ``done_data``,
    ``result_models``, ``log_lines`` as there. ``run``: stands in for ``subprocess.run`` in tests."""

    def __init__(self, options: TrainOptions, config: Optional[SlurmConfig] = None, run: Runner = subprocess.run):
        options.validate()
        self.options = options
        self.config = config if config is not None else SlurmConfig()
        self.client = SlurmClient(run, timeout_s=60, missing="the SLURM client commands must be installed here to "
                                                             "train on the cluster")
        self.job_id: Optional[str] = None
        self.log_lines: list[str] = []
        self.cancelled = False
        self._offset = 0
        self._final: Optional[int] = None
        self.detached = False
        self.queue_error = ""     # the last squeue failure while following (shown by the panel), "" when none
        self.cancel_error = ""    # the last failed background scancel (shown by the panel), "" when none
        self.options_file = options_file_for(Path(options.work_dir).resolve())   # <work>/jobs/, as a local training
        self.script_file = self.options_file.with_suffix(".sbatch")
        self.output_file = self.options_file.with_suffix(".out")
        self.record_file = self.options_file.with_suffix(RECORD_SUFFIX)
        self._submission = None   # sbatch running in the background (start(wait=False)) until its answer is taken
        self._scancel = None      # scancel running in the background (cancel(wait=False))
        self._pending: list[ProgressEvent] = []   # events not from the output file (sbatch's refusal)
        self.init_record()

    @property
    def submit_file(self) -> Path:
        """Where a background ``sbatch`` writes its answer (the job id); its errors go to ``submit_errors``."""
        return self.options_file.with_suffix(".submitted")

    @property
    def submit_errors(self) -> Path:
        return self.options_file.with_suffix(".submit-errors")

    @property
    def cancel_pending(self) -> bool:
        """True while a background ``scancel`` has not answered (``cancel(wait=False)``)."""
        return self._scancel is not None

    @property
    def result_models(self) -> list[str]:
        """The model folders of the 'done' event (empty before it, or after an error)."""
        return list(self.done_data.get("models", []))

    def start(self, wait: bool = True) -> "ClusterTraining":
        """Write the options file and the script, and submit it. ``wait`` (scripts, the command line): ``sbatch``
        runs here; BackSplitError when it refuses the job. ``wait=False`` (a panel's timer): ``sbatch`` runs as a
        child process and returns at once; until its answer ``job_id`` is None and ``is_running()`` True; a refusal
        then becomes the training's error event (``poll_events``, ``error``, ``returncode`` 1). BackSplitError when
        sbatch is not installed, InputError for a SLURM setting that cannot be used."""
        self.options_file.write_text(self.options.to_json(), encoding="utf-8")
        env = training_environment(self.options)
        self.script_file.write_text(training_script(self.options_file, env, self.config,
                                                    self.config.python or python_executable()), encoding="utf-8")
        command = self.client.submit_command(self.script_file, [f"--output={self.output_file}"])
        if not wait:
            self._write_record()   # first: a panel closed mid-submission finds the job through the record
            try:
                self._submission = self.client.start(command, self.submit_file, self.submit_errors)
            except BaseException:   # no sbatch, or its answer files cannot be written: nothing was submitted
                self.record_file.unlink(missing_ok=True)
                raise
            return self
        try:
            self.job_id = self.client.job_id(self.client.call(command).stdout)
        except BackSplitError as exc:
            raise BackSplitError(f"sbatch refused the training: {exc}") from None
        self._write_record()
        return self

    def _write_record(self) -> None:
        self.record_file.write_text(json.dumps({"job_id": self.job_id, "options_file": str(self.options_file),
                                                "output_file": str(self.output_file)}, indent=2), encoding="utf-8")

    def _take_answers(self) -> None:
        """The answers of a background ``sbatch`` and ``scancel`` once they have come (never waits). A job whose
        submission the user cancelled is scancelled as soon as its id is known."""
        answer = self._submission.poll() if self._submission is not None else None
        if answer is not None:
            self._submission = None
            self.job_id = (self.client.job_id(answer.stdout) if answer.returncode == 0 else "") or None
            if self.job_id is None:
                self.record_file.unlink(missing_ok=True)
                self._final = EXIT_CANCELLED if self.cancelled else EXIT_ERROR
                message = (answer.stderr or answer.stdout).strip() or "no job id in its answer"
                self._pending.append(ProgressEvent(Stage.ERROR, f"sbatch refused the training: "
                                                                f"{shell_line(answer.args)} failed (exit "
                                                                f"{answer.returncode}): {message}"))
            elif self.cancelled:
                self._start_scancel()
            else:
                self._write_record()
        answer = self._scancel.poll() if self._scancel is not None else None
        if answer is not None:
            self._scancel = None
            self.cancel_error = ""
            said = (answer.stderr or answer.stdout).strip()
            if answer.returncode != 0 and not any(gone in said for gone in JOB_GONE):
                # the job may still run: followed on, findable again, the panel says so; Cancel can try again
                self.cancelled = False
                self._write_record()
                self.cancel_error = (f"scancel {self.job_id} failed (exit {answer.returncode}): "
                                    f"{(answer.stderr or answer.stdout).strip()}; press Cancel again, or run "
                                    f"scancel {self.job_id}")

    def _start_scancel(self) -> None:
        self.record_file.unlink(missing_ok=True)
        try:
            self._scancel = self.client.start(["scancel", str(self.job_id)])
        except BackSplitError:
            self._write_record()
            raise

    @classmethod
    def follow(cls, record_file: Path, run: Runner = subprocess.run) -> "ClusterTraining":
        """Follow again a job submitted earlier (after a display error, or in a new Slicer session): its events are
        read from the start of its output file. Raises BackSplitError naming the record when it cannot be read."""
        try:
            record = json.loads(Path(record_file).read_text(encoding="utf-8"))
            options = TrainOptions.from_json(Path(record["options_file"]).read_text(encoding="utf-8"))
            job = cls(options, run=run)
        except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
            raise BackSplitError(f"the cluster job record {record_file} cannot be read ({exc}); follow the job "
                                 "with squeue instead") from None
        job.job_id = str(record["job_id"] or "") or cls.submitted_job_id(Path(record["options_file"]), record_file)
        job.options_file = Path(record["options_file"])
        job.script_file = job.options_file.with_suffix(".sbatch")
        job.output_file = Path(record["output_file"])
        job.record_file = Path(record_file)
        if not record["job_id"]:
            job._write_record()   # the id that sbatch answered after the panel had closed
        return job

    @classmethod
    def submitted_job_id(cls, options_file: Path, record_file: Path) -> str:
        """The job id a background ``sbatch`` wrote (a record written before its answer). BackSplitError when there is
        none yet (sbatch still running, or stopped) or sbatch refused the job."""
        answer = Path(options_file).with_suffix(".submitted")
        job_id = SlurmClient.job_id(answer.read_text(encoding="utf-8")) if answer.is_file() else ""
        if not job_id:
            raise BackSplitError(f"the cluster job of {record_file} has no job id: sbatch has not answered, or "
                                 f"refused it ({_submit_error(Path(options_file))})")
        return job_id

    def detach(self) -> None:
        """Stop following without touching the job (SLURM keeps running it); ``follow(record_file)`` resumes."""
        self.detached = True

    def poll_events(self) -> list[ProgressEvent]:
        """Events printed by the training since the last call (log lines as 'log' events); never blocks long."""
        self._take_answers()
        events, self._pending = self._pending, []
        if not self.output_file.is_file():
            return self.record(events)
        with self.output_file.open("r", encoding="utf-8", errors="replace") as handle:
            handle.seek(self._offset)
            text = handle.read()
        complete = text[: text.rfind("\n") + 1]   # keep a half-written last line for the next call
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            event = parse_event_line(line)
            if event is None:
                self.log_lines.append(line)
                event = ProgressEvent(Stage.LOG, line)
            elif event.stage == Stage.DONE:
                self._final = EXIT_DONE
            elif event.stage == Stage.ERROR:
                self._final = EXIT_ERROR
            events.append(event)
        return self.record(events)

    def is_running(self) -> bool:
        """True while the job is in SLURM's queue, not in an ending state, and has not printed its final event. A
        failing ``squeue`` means "unknown": True (the follow goes on; ``queue_error`` says why), except after
        ``cancel()``. True while a background ``sbatch`` or ``scancel`` has not answered (a Cancel during the
        submission scancels the job once its id is known)."""
        self._take_answers()
        if self._final is not None:
            return False
        if self.job_id is None or self._scancel is not None:   # sbatch or scancel has not answered yet
            return self._submission is not None or self._scancel is not None
        try:
            queued = any(state not in ENDED_STATES for state in self.client.queued(self.job_id).values())
        except BackSplitError as exc:
            self.queue_error = str(exc)
            return not self.cancelled
        self.queue_error = ""
        if not queued:
            self.record_file.unlink(missing_ok=True)   # seen ending: nothing to follow again later
        return queued

    @property
    def returncode(self) -> Optional[int]:
        """0 done, 1 the training reported an error, 130 cancelled, 2 the job ended without a final event; None
        while running (``runtime.exits``)."""
        running = self.is_running()
        if self._final is not None:
            return self._final
        if running or self.job_id is None:
            return None
        self.poll_events()
        if self._final is not None:
            return self._final
        return EXIT_CANCELLED if self.cancelled else EXIT_UNEXPECTED

    def cancel(self, grace_seconds: float = 0.0, wait: bool = False) -> None:
        """``scancel`` the job (SLURM ends the process tree on the node): only for the user's own Cancel (a display
        error or Slicer's exit calls ``detach``). Same signature as ``ChildProcess.cancel`` so the panel treats both
        alike. ``wait=False`` (the panel): ``scancel`` runs as a child process whose answer a later ``is_running`` /
        ``poll_events`` takes; if it fails (not because the job has ended), ``cancel_error`` says so, ``cancelled`` is
        False again and the record is kept: the follow goes on and Cancel can try again.
        ``wait=True``: ``scancel`` runs here. A Cancel while a background ``sbatch`` has not answered scancels its
        job once its id is known. ``grace_seconds`` changes nothing (SLURM applies its own KillWait grace).
        BackSplitError when scancel is not installed."""
        self._take_answers()
        if self.job_id is None:
            self.cancelled = self._submission is not None
            return
        self.cancelled = True
        if self._scancel is not None:   # a Cancel pressed again while scancel runs: wait for its answer
            return
        if wait:
            self.client.cancel(self.job_id)
            self.record_file.unlink(missing_ok=True)
        else:
            self._start_scancel()


def slurm_config(config_file: Optional[Path], partition: str = "") -> SlurmConfig:
    """The panel's SLURM settings: the optional JSON config file (``backsplit study --slurm-config`` format), then
    the partition typed in the panel when not empty. InputError names the file and the allowed keys."""
    return SlurmConfig.load(config_file, partition=(partition or "").strip() or None)


def running_cluster_jobs(work_dir: Path) -> list[Path]:
    """Records of the trainings submitted from ``work_dir`` that were left while running (a display error, Slicer's
    exit): not cancelled, not yet seen ending, no final event in their output (newest first). The caller follows
    them again (``ClusterTraining.follow``), and ``is_running`` then asks SLURM. Reads only files, never SLURM."""
    records = sorted((Path(work_dir) / "jobs").glob("train-*" + RECORD_SUFFIX), reverse=True)
    found = []
    for record in records:
        try:
            content = json.loads(record.read_text(encoding="utf-8"))
            output = Path(content["output_file"])
            text = _tail(output) if output.is_file() else ""
            if not content.get("job_id") and _submit_error(Path(content["options_file"])):
                continue   # a background sbatch refused it: nothing runs
        except (OSError, ValueError, KeyError, TypeError):
            continue
        finals = [e for e in map(parse_event_line, text.splitlines()) if e and e.stage in (Stage.DONE, Stage.ERROR)]
        if not finals:
            found.append(record)
    return found


def _submit_error(options_file: Path) -> str:
    """What a background ``sbatch`` wrote to its error file ("" when nothing, or no file)."""
    errors = options_file.with_suffix(".submit-errors")
    return errors.read_text(encoding="utf-8", errors="replace").strip() if errors.is_file() else ""


def _tail(path: Path, size: int = 65536) -> str:
    """The last ``size`` bytes of a text file (the final event is the last line a training prints)."""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", errors="replace")
