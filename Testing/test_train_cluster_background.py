"""Audit N3, the rest (issue 20): the training panel never waits for ``sbatch`` or ``scancel`` on Slicer's GUI thread.
``training_run.start_job`` (what Start runs) submits with ``ClusterTraining.start(wait=False)`` and Cancel calls
``cancel(wait=False)``: both commands run as child processes whose answers a later timer tick takes.

The proof that nothing waits uses SLURM's client commands played by real executable shell scripts on PATH that
answer only when a file appears (no timing): ``start_job`` and ``cancel`` return while they are still blocked. The
last test runs the same path on the real one-node SLURM of ``fixtures_slurm.py`` (the job's "Python" is a shell
script that prints a line and sleeps, as in test_train_cluster_follow.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from fixtures_nnunet import tiny_options
from fixtures_slurm import slurm_cluster  # noqa: F401 (the session fixture)

from backsplit.runtime.progress import Stage

TIMEOUT = 90
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell scripts stand in for SLURM's commands")


def _wait(condition, what: str) -> None:
    """Poll ``condition`` as the panel's timer does; the deadline only bounds a broken run."""
    deadline = time.time() + TIMEOUT
    while not condition():
        assert time.time() < deadline, f"{what} did not happen within {TIMEOUT} s"
        time.sleep(0.05)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, scancel and squeue as shell scripts on PATH. sbatch and scancel wait for the files ``go-sbatch`` /
    ``go-scancel``; ``refuse`` and ``scancel-fails`` make them fail with SLURM's own wording."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    scripts = {
        "sbatch": f"""echo "$@" > '{state}/sbatch-args'
while [ ! -e '{state}/go-sbatch' ]; do sleep 0.05; done
if [ -e '{state}/refuse' ]; then
  echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1
fi
echo '777;backsplit-test'""",
        "scancel": f"""echo "$@" >> '{state}/scancel-calls'
while [ ! -e '{state}/go-scancel' ]; do sleep 0.05; done
if [ -e '{state}/scancel-fails' ]; then
  echo 'scancel: error: Kill job error on job id 777: Access/permission denied' >&2; exit 1
fi
if [ -e '{state}/job-gone' ]; then
  echo 'scancel: error: Kill job error on job id 777: Job/step already completing or completed' >&2; exit 1
fi""",
        "squeue": "echo '777|RUNNING'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dataset = tmp_path / "Dataset900_X"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}", encoding="utf-8")
    return state, lambda: tiny_options(dataset, tmp_path / "my work", extra={"overwrite": True})


def _record(job) -> dict:
    return json.loads(job.record_file.read_text(encoding="utf-8"))


@posix_only
def test_start_and_cancel_return_while_sbatch_and_scancel_still_run(fake_slurm):
    from backsplit.training.status import TrainingStatus
    from BackSplitTrainLib.training_run import follow_text, start_job

    state, options = fake_slurm
    job = start_job(options(), "slurm", None, "")         # sbatch is blocked: Start returned anyway
    assert job.job_id is None and job.is_running() and job.returncode is None and job.poll_events() == []
    assert _record(job)["job_id"] is None                  # written before sbatch: found again if Slicer closes
    assert "Submitting the job to SLURM" in follow_text(job, TrainingStatus())
    _wait(lambda: (state / "sbatch-args").is_file(), "sbatch start")
    assert f"--output={job.output_file}" in (state / "sbatch-args").read_text(encoding="utf-8")   # the space is fine
    (state / "go-sbatch").touch()
    _wait(lambda: job.is_running() and job.job_id is not None, "sbatch's answer taken by a tick")
    assert job.job_id == "777" and _record(job)["job_id"] == "777"

    (state / "scancel-fails").touch()
    job.cancel(wait=False)                                 # scancel is blocked: Cancel returned anyway
    assert job.cancelled and not job.record_file.exists()
    _wait(lambda: (state / "scancel-calls").is_file(), "scancel start")
    (state / "go-scancel").touch()
    _wait(lambda: job.poll_events() == [] and job.cancel_error, "scancel's failure taken by a tick")
    assert "Access/permission denied" in job.cancel_error and _record(job)["job_id"] == "777"   # still findable
    assert not job.cancelled and job.is_running()          # followed on: the panel shows why, Cancel stays usable
    assert "SLURM: scancel 777 failed" in follow_text(job, TrainingStatus())
    (state / "scancel-fails").unlink()
    (state / "job-gone").touch()                           # meanwhile the job ended: scancel's error means "done"
    job.cancel(wait=False)                                 # the user's second Cancel
    _wait(lambda: job.poll_events() == [] and not job.cancel_pending, "scancel's answer taken")
    assert job.cancel_error == "" and job.cancelled and not job.record_file.exists()
    assert (state / "scancel-calls").read_text(encoding="utf-8").split() == ["777", "777"]


@posix_only
def test_a_refused_submission_is_the_trainings_error(fake_slurm):
    from backsplit.training.cluster import running_cluster_jobs
    from backsplit.training.status import TrainingStatus
    from BackSplitTrainLib.training_run import final_message, start_job

    state, options = fake_slurm
    (state / "refuse").touch()
    (state / "go-sbatch").touch()
    job = start_job(options(), "slurm", None, "")
    status = TrainingStatus()
    _wait(lambda: job.returncode is not None, "the refusal taken")
    events = job.poll_events()
    for event in events:
        status.update(event)
    assert job.returncode == 1 and [e.stage for e in events] == [Stage.ERROR]
    assert "sbatch refused the training" in job.error and "Invalid partition name specified" in job.error
    assert final_message(status, job.cancelled, job.returncode) == (job.error, True)   # one error dialog
    assert running_cluster_jobs(job.options.work_dir) == [] and not job.is_running()


@posix_only
def test_cancel_during_the_submission_scancels_the_job_once_its_id_is_known(fake_slurm):
    from backsplit.training.cluster import running_cluster_jobs
    from BackSplitTrainLib.training_run import start_job

    state, options = fake_slurm
    (state / "go-scancel").touch()
    job = start_job(options(), "slurm", None, "")
    job.cancel(wait=False)
    assert job.cancelled and job.is_running() and not (state / "scancel-calls").exists()
    (state / "go-sbatch").touch()
    _wait(lambda: job.poll_events() == [] and (state / "scancel-calls").is_file() and not job.cancel_pending,
          "the scancel of the job submitted meanwhile, and its answer")
    assert (state / "scancel-calls").read_text(encoding="utf-8").split() == ["777"]
    assert running_cluster_jobs(job.options.work_dir) == [] and job.cancel_error == ""


@posix_only
def test_a_panel_closed_mid_submission_finds_the_job_again(fake_slurm):
    from backsplit.training.cluster import running_cluster_jobs
    from BackSplitTrainLib.training_run import follow_left_cluster_job, start_job, stop_following

    state, options = fake_slurm
    job = start_job(options(), "slurm", None, "")
    stop_following(job, wait=True)                         # Slicer closes while sbatch still runs
    record, submitted = job.record_file, job.submit_file
    del job
    work = options().work_dir
    assert follow_left_cluster_job(work) is None           # no job id yet: nothing to follow
    (state / "go-sbatch").touch()
    _wait(lambda: submitted.is_file() and submitted.read_text(encoding="utf-8").strip(), "sbatch's answer")
    again = follow_left_cluster_job(work)                  # the next visit of the panel
    assert again is not None and again.job_id == "777" and again.record_file == record
    refused = work / "jobs" / "train-00000000-000000-1-0"  # an older submission that sbatch refused
    refused.with_suffix(".cluster.json").write_text(json.dumps(
        {"job_id": None, "options_file": str(refused.with_suffix(".json")),
         "output_file": str(refused.with_suffix(".out"))}), encoding="utf-8")
    refused.with_suffix(".submit-errors").write_text("sbatch: error: invalid partition\n", encoding="utf-8")
    assert running_cluster_jobs(work) == [record]


def test_the_panel_submits_and_cancels_on_a_real_cluster_without_waiting(slurm_cluster, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    from backsplit.training.cluster import running_cluster_jobs
    from BackSplitTrainLib.training_run import start_job

    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    fake_python = tmp_path / "fake python"
    fake_python.write_text("#!/bin/sh\necho 'training started on the node'\nsleep 300\n", encoding="utf-8")
    fake_python.chmod(0o755)
    config = tmp_path / "slurm.json"                       # the panel's config file field
    config.write_text(json.dumps({"python": str(fake_python), "cpus_per_task": 1}), encoding="utf-8")
    dataset = tmp_path / "Dataset900_X"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}", encoding="utf-8")
    work = tmp_path / "my work"
    job = start_job(tiny_options(dataset, work, extra={"overwrite": True}), "slurm", config, "debug")
    try:
        log = []
        _wait(lambda: not job.is_running() or job.job_id is not None, "sbatch's answer taken by a tick")
        assert job.job_id is not None, job.error
        _wait(lambda: log.extend(e.message for e in job.poll_events()) or "training started on the node" in log,
              "the job's start on the node")
        assert "#SBATCH --partition=debug" in job.script_file.read_text(encoding="utf-8")
        assert job.is_running() and running_cluster_jobs(work) == [job.record_file]
        job.cancel(wait=False)
        _wait(lambda: job.returncode is not None, "the end of the cancelled job")
        assert job.returncode == 130 and job.cancel_error == "" and running_cluster_jobs(work) == []
        queued = subprocess.run(["squeue", "-h", "-j", job.job_id, "-o", "%T"], env=slurm_cluster,
                                capture_output=True, text=True).stdout.split()
        assert set(queued) <= {"COMPLETING", "CANCELLED"}
    finally:
        if job.job_id:
            subprocess.run(["scancel", job.job_id], env=slurm_cluster, capture_output=True)


@posix_only
def test_the_start_action_follows_the_submission_and_a_display_error_never_scancels(fake_slurm, gui):
    """The widget's Start path (Qt widgets and QTimer stood in by fixtures_panels; slicer-core's slicer.util): the
    PanelAction starts the job, the timer's ticks go through ``wrap_tick``; a tick that fails for display reasons
    ends the follow with one report and leaves the job running and findable (``stop_following``: detach)."""
    from fixtures_panels import Timer, Widget, idle

    from backsplit.training.status import TrainingStatus
    from BackSplitShared.panel_action import PanelAction
    from BackSplitTrainLib.training_run import follow_text, start_job, stop_following

    state, options = fake_slurm
    ui, timer, held = Widget(), Timer(), {}
    action = PanelAction("Could not train", ui.startButton, ui.cancelButton,
                         on_idle=lambda: (timer.stop(), stop_following(held.get("job"))))
    ticks = []

    def tick():                                            # the widget's _poll, as far as it needs no Qt
        job = held["job"]
        job.poll_events()
        ui.statusLabel.text = follow_text(job, TrainingStatus())
        ticks.append(job.job_id)
        if job.job_id is not None:
            raise RuntimeError("the plot view was closed")    # a display error in a later tick
        if not job.is_running():
            action.finish("ended")

    timer.timeout.connect(action.wrap_tick(timer, tick))
    action.click(lambda: (held.update(job=start_job(options(), "slurm", None, "")), timer.start(), True)[-1])
    assert not idle(ui.startButton, ui.cancelButton) and timer.isActive()
    timer.timeout.emit()                                   # sbatch still blocked: the tick returns at once
    assert ticks == [None] and "Submitting the job to SLURM" in ui.statusLabel.text
    (state / "go-sbatch").touch()
    timer.run(limit=100000)                                # ticks until the display error stops the timer
    job = held["job"]
    assert ticks[-1] == "777" and idle(ui.startButton, ui.cancelButton)
    assert gui.dialogs() == ["Could not train: the plot view was closed"]
    assert job.detached and not job.cancelled and not (state / "scancel-calls").exists()
    assert _record(job)["job_id"] == "777"                 # followed again on the panel's next visit


@posix_only
def test_a_submission_that_cannot_write_its_answer_file_leaves_no_record(fake_slurm):
    """sbatch's answer file cannot be opened (a folder in its place: a real IsADirectoryError, as for a full or
    read-only work folder): Start fails with that error and leaves no job record behind, so nothing is "found
    again" later (``running_cluster_jobs``) for a job that was never submitted."""
    from backsplit.runtime.slurm_poll import BackgroundQueue
    from backsplit.training.cluster import ClusterTraining, running_cluster_jobs

    state, options = fake_slurm
    job = ClusterTraining(options(), run=BackgroundQueue())
    job.submit_file.parent.mkdir(parents=True, exist_ok=True)
    job.submit_file.mkdir()
    with pytest.raises(OSError):
        job.start(wait=False)
    assert not job.record_file.exists() and running_cluster_jobs(job.options.work_dir) == []
    assert not (state / "sbatch-args").exists()
