"""A tiny real study on the CPU (2 arms, 2 folds, a few iterations, tiny cases): through the local executor,
interrupted with Ctrl-C and resumed; then through a real single-node SLURM cluster started by the test."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_nnunet import export_tiny
from fixtures_slurm import slurm_cluster  # noqa: F401 - pytest fixture

TIMEOUT = 1800


def study_command(dataset: Path, study: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "backsplit", "study", str(dataset), "--out", str(study), "--folds", "2", "-c", "2d",
            "--iterations-per-epoch", "2", "--val-iterations", "1", "--device", "cpu", "--no-mirroring",
            "--save-every", "1", *extra]


def finished_runs(study: Path) -> dict[str, float]:
    """Run units whose evaluation is recorded, with the marker's modification time."""
    return {p.parent.parent.name: p.stat().st_mtime for p in study.glob("units/*-fold*-seed*/steps/evaluate.json")}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    dataset = export_tiny(root / "raw").dataset_dir
    study = root / "study"
    command = study_command(dataset, study, "--arms", "binary,backsplit", "--epochs", "2", "--gpus", "none")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + TIMEOUT
    while not finished_runs(study) and first.poll() is None and time.time() < deadline:
        time.sleep(1)
    assert first.poll() is None, "the study ended before it could be interrupted:\n" + first.stdout.read()
    before = finished_runs(study)
    first.send_signal(signal.SIGINT)  # Ctrl-C: the executor ends the running unit's process group
    first_output = first.communicate(timeout=120)[0]
    assert first.returncode == 130, first_output
    second = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert second.returncode == 0, second.stderr[-4000:]
    return {"dataset": dataset, "study": study, "before": before, "first": first_output, "second": second.stderr}


def test_local_study_interrupted_and_resumed(tiny_study):
    study, before = tiny_study["study"], tiny_study["before"]
    assert before, "no unit had finished before the interruption"
    assert "interrupted" in tiny_study["first"]
    after = finished_runs(study)
    assert set(after) == {f"{arm}-fold{f}-seed1" for arm in ("binary", "backsplit") for f in (0, 1)}
    for unit, mtime in before.items():  # finished units were verified by content hash and reused, not redone
        assert after[unit] == mtime
        assert (study / "units" / unit / "log.txt").read_text(encoding="utf-8").count("local start") == 1
    assert "reused (verified by content hash)" in tiny_study["second"]
    with (study / "results" / "per_case.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["arm"], r["case_id"]) for r in rows) == sorted(
        (arm, f"tiny{i}") for arm in ("binary", "backsplit") for i in range(5))  # every case held out once per arm
    report = (study / "report" / "report.md").read_text(encoding="utf-8")
    assert "backsplit vs binary:" in report and "| backsplit | Dice | 5 |" in report
    for name in ("paired_differences.png", "learning_curves.png", "detection_curves.png"):
        assert (study / "report" / name).stat().st_size > 1000
    with (study / "results" / "curves.csv").open() as handle:
        assert {r["epoch"] for r in csv.DictReader(handle)} == {"1", "2"}


def test_slurm_executor_runs_a_job_array(tiny_study, slurm_cluster):  # noqa: F811
    study = tiny_study["study"]
    before = finished_runs(study)
    # other epochs: new training hashes for the binary arm; the prepared datasets are reused
    command = study_command(tiny_study["dataset"], study, "--arms", "binary", "--epochs", "1", "--executor", "slurm",
                            "--poll", "1", "--cpus-per-task", "1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=slurm_cluster)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "submitted SLURM job array" in result.stderr
    scripts = list((study / "slurm").glob("array-*.sh"))
    assert len(scripts) == 1 and "#SBATCH --array=0-1" in scripts[0].read_text(encoding="utf-8")
    assert json.loads(scripts[0].with_suffix(".units.json").read_text(encoding="utf-8")) == ["binary-fold0-seed1",
                                                                             "binary-fold1-seed1"]
    for fold in (0, 1):
        unit = study / "units" / f"binary-fold{fold}-seed1"
        assert "slurm job" in (unit / "log.txt").read_text(encoding="utf-8")
        assert json.loads((unit / "status.json").read_text(encoding="utf-8"))["ok"]
        assert finished_runs(study)[unit.name] > before[unit.name]
    assert "wave 1/3: 0 unit(s) to run, 1 reused" in result.stderr


def test_slurm_failed_unit_is_reported_with_its_log_tail(tiny_study, slurm_cluster, tmp_path):  # noqa: F811
    import os

    from backsplit.study.slurm import SlurmConfig, SlurmExecutor

    os.environ["SLURM_CONF"] = slurm_cluster["SLURM_CONF"]
    try:
        results = SlurmExecutor(SlurmConfig(poll_s=1)).run(tiny_study["study"], ["no-such-unit"], lambda m: None)
    finally:
        os.environ.pop("SLURM_CONF", None)
    failed = results["no-such-unit"]
    assert not failed.ok and "no unit 'no-such-unit'" in failed.log_tail


def test_training_panel_starts_one_training_on_the_cluster(tiny_study, slurm_cluster, tmp_path):  # noqa: F811
    """The panel's SLURM training (backsplit/training/cluster.py): one real training through sbatch,
    followed through its output file and squeue like a local training."""
    import os

    from fixtures_nnunet import tiny_options

    from backsplit.runtime.slurm import SlurmConfig
    from backsplit.training.cluster import ClusterTraining

    os.environ["SLURM_CONF"] = slurm_cluster["SLURM_CONF"]
    try:
        # the study's preparation of this dataset is reused (nnU-Net's preprocessing is the slow part here)
        work = tiny_study["study"] / "prepared" / "prepare-source"
        job = ClusterTraining(tiny_options(tiny_study["dataset"], work, epochs=1, iterations_per_epoch=2,
                                           extra={"overwrite": True}), SlurmConfig(cpus_per_task=1)).start()
        events = []
        deadline = time.time() + TIMEOUT
        while job.returncode is None and time.time() < deadline:
            events += job.poll_events()
            time.sleep(1)
        events += job.poll_events()
    finally:
        os.environ.pop("SLURM_CONF", None)
    assert job.returncode == 0, "\n".join(job.log_lines[-30:])
    assert any(e.stage == "epoch" for e in events)
    assert job.result_models and (Path(job.result_models[0]) / "backsplit_model.json").is_file()
    assert "#SBATCH --cpus-per-task=1" in job.script_file.read_text(encoding="utf-8")
