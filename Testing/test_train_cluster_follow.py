"""K6 (issue 20, audit N3): the training panel never ends a cluster job by itself. On a real one-node SLURM
(fixtures_slurm.py): a display error in a tick and Slicer's exit only detach (the job stays in squeue), a failing
``squeue`` does not end the follow, the panel finds the left job again and follows it, and only the user's Cancel
runs ``scancel``. The job's "Python" is a shell script that prints a line and sleeps (a real training is
Testing/test_study_run.py::test_training_panel_starts_one_training_on_the_cluster); the work folder holds a space
(``--output`` is on sbatch's command line, not in an ``#SBATCH`` line)."""

import subprocess
import time

from fixtures_nnunet import tiny_options
from fixtures_slurm import slurm_cluster  # noqa: F401 (the session fixture)

TIMEOUT = 90


def _queued(env) -> dict[str, str]:
    """Job id -> state of every job in the queue."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T"], env=env, capture_output=True, text=True, check=True).stdout
    return dict(line.split("|", 1) for line in out.split())


def _wait(condition, what: str) -> None:
    deadline = time.time() + TIMEOUT
    while not condition():
        assert time.time() < deadline, f"SLURM did not {what} within {TIMEOUT} s"
        time.sleep(0.5)


def test_cluster_job_is_detached_followed_again_and_only_cancelled_by_the_user(slurm_cluster, tmp_path,  # noqa: F811
                                                                              monkeypatch):
    from backsplit.runtime.slurm import SlurmConfig
    from backsplit.training.cluster import ClusterTraining, running_cluster_jobs
    from BackSplitTrainLib.training_run import follow_left_cluster_job, stop_following

    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    fake_python = tmp_path / "fake python"
    fake_python.write_text("#!/bin/sh\necho 'training started on the node'\nsleep 300\n")
    fake_python.chmod(0o755)
    dataset = tmp_path / "Dataset900_X"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}")
    work = tmp_path / "my work"
    job = ClusterTraining(tiny_options(dataset, work, extra={"overwrite": True}),
                          SlurmConfig(cpus_per_task=1, python=str(fake_python))).start()
    try:
        script = job.script_file.read_text(encoding="utf-8")
        assert "export PYTHONPATH=" in script and "--output" not in script
        def started():
            return job.output_file.is_file() and job.output_file.read_text(encoding="utf-8").strip()
        _wait(started, "start the job")
        assert job.is_running()

        stop_following(job)                                       # the panel's _idle after a display error
        stop_following(job, wait=True)                            # the panel's cleanup when Slicer closes
        assert _queued(slurm_cluster).get(job.job_id) == "RUNNING" and not job.cancelled

        shim = tmp_path / "shim"
        shim.mkdir()
        (shim / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Socket timed out' >&2\nexit 1\n")
        (shim / "squeue").chmod(0o755)
        with monkeypatch.context() as patched:                   # slurmctld busy: "unknown", the follow goes on
            patched.setenv("PATH", f"{shim}:{subprocess.os.environ['PATH']}")
            assert job.is_running() and "Socket timed out" in job.queue_error
            assert job.returncode is None
        assert job.is_running() and job.queue_error == ""

        assert running_cluster_jobs(work) == [job.record_file]
        again = follow_left_cluster_job(work)                     # the next visit of the panel
        assert again is not None and again.job_id == job.job_id
        assert again.is_running()
        assert any("training started on the node" in e.message for e in again.poll_events())

        again.cancel(wait=False)                                  # the user's own Cancel: scancel
        _wait(lambda: again.returncode is not None, "end the cancelled job")
        assert running_cluster_jobs(work) == [] and follow_left_cluster_job(work) is None
        assert again.returncode == 130
    finally:
        subprocess.run(["scancel", str(job.job_id)], env=slurm_cluster, capture_output=True)


def test_only_jobs_left_while_running_are_offered_again(tmp_path):
    """Without SLURM (``run`` stands in for sbatch/scancel; no queue is asked): a job whose output holds its final
    event, or that the user cancelled, is not followed again; one left mid-training is."""
    from backsplit.runtime.progress import ProgressEvent, Stage, format_event_line
    from backsplit.training.cluster import ClusterTraining, running_cluster_jobs

    ids = iter(range(100, 200))

    def run(args, **kwargs):
        return subprocess.CompletedProcess(args, 0, f"{next(ids)}\n" if args[0] == "sbatch" else "", "")

    dataset = tmp_path / "Dataset900_X"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}")
    jobs = [ClusterTraining(tiny_options(dataset, tmp_path / "work", extra={"overwrite": True}), run=run).start()
            for _ in range(3)]
    left, finished, cancelled = jobs
    left.output_file.write_text("epoch 3\n")
    finished.output_file.write_text("x" * 100000 + "\n" + format_event_line(ProgressEvent(Stage.DONE, "ok")) + "\n")
    cancelled.cancel(wait=True)                    # scancel through the stand-in (wait=False: a child process)
    assert running_cluster_jobs(tmp_path / "work") == [left.record_file]
