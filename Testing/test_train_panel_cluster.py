"""The training panel's SLURM choice (backsplit/training/cluster.py):
settings from the panel and an optional config file, and a cancel with the same signature as a local training's.
The real sbatch/squeue round trip is
Testing/test_study_run.py::test_training_panel_starts_one_training_on_the_cluster."""

import json
import subprocess

import pytest
from fixtures_nnunet import tiny_options

from backsplit.errors import InputError


def test_panel_settings_merge_config_file_and_partition(tmp_path):
    from backsplit.training.cluster import slurm_config

    assert slurm_config(None, "").partition is None
    assert slurm_config(None, "  gpu ").partition == "gpu"
    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"partition": "cpu", "gres": "gpu:1", "mem": "16G"}))
    merged = slurm_config(config, "")
    assert (merged.partition, merged.gres, merged.mem) == ("cpu", "gpu:1", "16G")
    assert slurm_config(config, "gpu").partition == "gpu"           # the panel's field wins
    config.write_text(json.dumps({"partiton": "cpu"}))
    with pytest.raises(InputError) as error:
        slurm_config(config, "")
    assert "partiton" in str(error.value) and "partition" in str(error.value)
    with pytest.raises(InputError):
        slurm_config(tmp_path / "missing.json", "")


def test_cancel_takes_the_local_signature_and_calls_scancel(tmp_path):
    from backsplit.training.cluster import ClusterTraining

    calls = []

    def run(args, **kwargs):   # stands in for the SLURM client commands (the real ones: test_study_run.py)
        calls.append(args)
        output = "4242\n" if args[0] == "sbatch" else ""
        return subprocess.CompletedProcess(args, 0, output, "")

    dataset = tmp_path / "Dataset900_X"
    dataset.mkdir()
    (dataset / "dataset.json").write_text("{}")
    job = ClusterTraining(tiny_options(dataset, tmp_path / "work", extra={"overwrite": True}), run=run).start()
    assert job.job_id == "4242" and calls[0][:2] == ["sbatch", "--parsable"]
    job.cancel(grace_seconds=1.0, wait=True)                       # scancel here, through the stand-in
    assert calls[-1] == ["scancel", "4242"] and job.cancelled
    assert job.returncode == 130                                   # squeue says gone, no final event: cancelled
    # (the panel's cancel(wait=False) runs scancel as a child process: Testing/test_train_cluster_background.py)


def test_fine_tune_list_follows_the_models_folder_and_the_dataset_channels(tiny_model_dir, tmp_path):
    """The training panel's 'from the models folder' list (BackSplitTrainLib/model_list.py)."""
    import shutil

    from BackSplitTrainLib.model_list import fine_tune_choices

    models = tmp_path / "models"
    for name, created, channels in (("old", "2026-01-01T10:00:00+0000", None),
                                    ("new", "2026-02-01T10:00:00+0000", None),
                                    ("ct-pet", "2026-03-01T10:00:00+0000", {"0": "CT", "1": "PET"})):
        target = models / name
        shutil.copytree(tiny_model_dir, target, ignore=shutil.ignore_patterns("checkpoint_latest.pth",
                                                                              "checkpoint_best.pth", ".backsplit-*"))
        manifest = json.loads((target / "backsplit_model.json").read_text(encoding="utf-8"))
        manifest["created"] = created
        if channels:
            manifest["channel_names"] = channels
        (target / "backsplit_model.json").write_text(json.dumps(manifest))
    one_channel = tmp_path / "Dataset900_X"
    one_channel.mkdir()
    (one_channel / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    choices = fine_tune_choices(models, one_channel)
    assert [folder.name for _label, folder in choices] == ["new", "old"]         # newest first, CT+PET left out
    assert choices[0][0].startswith("new (") and "dataset v" in choices[0][0]
    assert [folder.name for _label, folder in fine_tune_choices(models, None)] == ["ct-pet", "new", "old"]
    assert fine_tune_choices(tmp_path / "no models here", one_channel) == []
