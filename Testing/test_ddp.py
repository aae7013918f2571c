"""Several GPUs: one training on N GPUs with PyTorch DDP (``--num-gpus``), the study's GPU groups and SLURM request.

This machine has no GPU, so what needs CUDA could not run here:
* the training itself under DDP (``ddp.train_one_ddp`` / ``train_rank``): nnU-Net's trainer hard-codes
  ``cuda:<rank>`` and ``DistributedDataParallel(device_ids=[rank])`` in DDP mode, so it cannot train on the CPU with
  the gloo backend without changing nnU-Net. Not run anywhere yet.
* the NCCL backend.
What runs for real instead: the launcher (``ddp.launch``: spawn, rendezvous on a free port, process group, settings
set in each rank, error propagation) with the gloo backend on the CPU at world size 2, building BackSplit's real
trainer in each rank (nnU-Net's DDP mode: rank, device and its split of the batch); option parsing and every refusal;
a real training child process refusing --num-gpus 2 on this CPU-only machine before it preprocesses anything; the
study's hashes; the SLURM job script (generated, not submitted: the test cluster has no GPUs to grant); the local
executor starting real unit processes with CUDA_VISIBLE_DEVICES="0,1" from a given (fake) GPU list.

The check to run on a machine with 2 or more GPUs (expect one set of epoch events, a manifest with num_gpus 2 and
fold_all/checkpoint_final.pth): ``backsplit train <tiny dataset> --work-dir W --num-gpus 2 --device cuda
--batch-size 2 --epochs 2 --iterations-per-epoch 5 --val-iterations 2 --jsonl``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backsplit.cli import build_parser, main
from backsplit.errors import InputError, OutputError
from backsplit.training.ddp import configure_trainer_class, launch
from backsplit.training.options import check_options, check_request


# ---- options and refusals ------------------------------------------------------------------------------------------
def test_train_option_parses_and_travels_to_the_child(tmp_path):
    from backsplit.commands.train import options_from_args
    from backsplit.training.options import TrainOptions

    args = build_parser().parse_args(["train", str(tmp_path), "--work-dir", str(tmp_path / "w"), "--num-gpus", "2",
                                      "--device", "cuda", "--batch-size", "4"])
    options = options_from_args(args)
    options.validate()
    assert options.num_gpus == 2
    assert TrainOptions.from_json(options.to_json()).num_gpus == 2
    default = options_from_args(build_parser().parse_args(["train", str(tmp_path), "--work-dir", str(tmp_path)]))
    assert default.num_gpus == 1
    # an options file written before --num-gpus existed still loads (one GPU)
    raw = json.loads(default.to_json())
    del raw["num_gpus"]
    assert TrainOptions.from_json(json.dumps(raw)).num_gpus == 1


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_gpus=2, device="cpu"), ["--num-gpus 2", "'cpu'", "CUDA"]),
    (dict(num_gpus=2, device="mps"), ["'mps'", "--device cuda"]),
    (dict(num_gpus=0), ["--num-gpus 0", "at least 1"]),
    (dict(num_gpus=-3), ["--num-gpus -3"]),
    (dict(num_gpus=4, device="cuda", batch_size=2), ["batch size is 2", "--num-gpus is 4", "--batch-size 4"]),
    (dict(num_gpus=2, device="cuda", context="learned:2"), ["learned:2", "--num-gpus 2", "one GPU"]),
])
def test_train_options_refuse_what_ddp_cannot_run(tmp_path, kwargs, words):
    from backsplit.training.options import TrainOptions

    options = TrainOptions(tmp_path, tmp_path, **kwargs)
    with pytest.raises(InputError) as info:
        options.validate()
    for word in words:
        assert word in str(info.value)


def test_request_needs_enough_visible_gpus_and_samples(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(InputError, match=r"asks for 2 GPUs but PyTorch sees 1 \(CUDA_VISIBLE_DEVICES=3\)"):
        check_request(2, "cuda", 1)
    with pytest.raises(InputError, match="batch size is 1 but --num-gpus is 2"):
        check_request(2, "cuda", 2, batch_size=1)   # e.g. the plans' batch size of a large 3d configuration
    check_request(2, "cuda", 2, batch_size=2)
    check_request(1, "cpu", 0, batch_size=1)         # one GPU (or none): nothing to check
    check_options(1, "cpu", None, "learned:2")


def test_cli_train_reports_the_refusal(tmp_path, capsys):
    code = main(["train", str(tmp_path), "--work-dir", str(tmp_path / "w"), "--num-gpus", "2", "--device", "cpu"])
    assert code != 0
    assert "--num-gpus 2" in capsys.readouterr().err
    assert not (tmp_path / "w" / "jobs").exists() or not any((tmp_path / "w" / "jobs").glob("*.json"))


def test_training_process_refuses_two_gpus_on_a_machine_without_them(tiny_dataset, tmp_path):
    """A real training child process: device auto resolves to the CPU here, refused before any preprocessing."""
    import torch
    from fixtures_nnunet import run_training, tiny_options

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has 2 GPUs: the refusal is for machines without them")
    process, events = run_training(tiny_options(tiny_dataset.dataset_dir, tmp_path, device="auto", num_gpus=2),
                                   timeout=300)
    errors = [e.message for e in events if e.stage == "error"]
    assert process.returncode == 1, "\n".join(process.log_lines[-30:])
    assert errors and "--num-gpus 2" in errors[0] and ("'cpu'" in errors[0] or "PyTorch sees" in errors[0])
    assert not (tmp_path / "nnUNet_preprocessed").exists() or not any((tmp_path / "nnUNet_preprocessed").iterdir())


# ---- the launcher, for real with gloo on the CPU -------------------------------------------------------------------
PLANS = {"dataset_name": "Dataset011_Tiny", "plans_name": "nnUNetPlans",
         "configurations": {"2d": {"data_identifier": "nnUNetPlans_2d", "batch_size": 3, "patch_size": [32, 32],
                                   "architecture": {"network_class_name": "unused", "arch_kwargs": {},
                                                    "_kw_requires_import": []}}}}
DATASET_JSON = {"labels": {"background": 0, "Lesion": 1, "Organ": 2}, "channel_names": {"0": "CT"},
                "file_ending": ".nii.gz"}


def _probe_rank(rank: int, world_size: int, out_dir: str, settings: dict) -> None:
    """Runs in each spawned rank: the class settings as train_rank sets them, a collective, BackSplit's trainer."""
    import torch
    import torch.distributed as dist

    from backsplit.training.trainer import BackSplitTrainer

    configure_trainer_class(BackSplitTrainer, settings, rank, event_sink=print)
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)      # the rendezvous worked: every rank sees the sum over all ranks
    plans = json.loads(json.dumps(PLANS))
    plans["continue_training"] = False
    trainer = BackSplitTrainer(plans, "2d", 0, DATASET_JSON, torch.device("cpu"))
    trainer._set_batch_size_and_oversample()    # nnU-Net's DDP split of the plans' batch size over the ranks
    record = {"rank": rank, "world": dist.get_world_size(), "backend": dist.get_backend(), "sum": float(total),
              "epochs": trainer.num_epochs, "lr": trainer.initial_lr, "targets": trainer.target_labels,
              "sampling": trainer.sampling, "sink": BackSplitTrainer.event_sink is not None,
              "is_ddp": trainer.is_ddp, "local_rank": trainer.local_rank, "device": str(trainer.device),
              "batch_size": int(trainer.batch_size)}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


def _failing_rank(rank: int, world_size: int) -> None:
    import torch
    import torch.distributed as dist

    dist.all_reduce(torch.zeros(1))
    if rank == 1:
        raise OutputError(f"rank {rank} cannot write its model")


def test_launcher_spawns_ranks_that_share_settings_and_split_the_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))    # the trainer makes its output folder
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings = {"epochs": 7, "iterations_per_epoch": 3, "val_iterations_per_epoch": 1, "initial_lr": 0.005,
                "save_every": 1, "sampling": "target", "target_labels": [1]}
    launch(_probe_rank, 2, (str(tmp_path), settings), backend="gloo")
    records = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in range(2)]
    for rank, record in enumerate(records):
        assert record["rank"] == record["local_rank"] == rank and record["world"] == 2
        assert record["backend"] == "gloo" and record["sum"] == 3.0
        assert (record["epochs"], record["lr"], record["targets"], record["sampling"]) == (7, 0.005, [1], "target")
        assert record["is_ddp"] and record["device"] == f"cuda:{rank}"   # nnU-Net's DDP mode: rank = GPU index
        assert record["sink"] == (rank == 0)                           # progress events from rank 0 only
    assert [r["batch_size"] for r in records] == [2, 1]                # the plans' 3 samples over 2 ranks


def test_launcher_raises_a_ranks_error_with_its_type(tmp_path):
    with pytest.raises(OutputError, match="rank 1 cannot write its model"):
        launch(_failing_rank, 2, (), backend="gloo")


RANK_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from backsplit.training import ddp
from backsplit.training.prepare import prepare
from backsplit.datasets.folder import load_dataset_folder
from backsplit.training.options import TrainOptions

options = TrainOptions.from_json(Path(sys.argv[1]).read_text(encoding="utf-8"))
dataset = load_dataset_folder(options.dataset_dir)
plans = prepare(dataset, options, None)
os.environ["nnUNet_n_proc_DA"] = "0"    # as worker.run: for training only (nnU-Net's planning needs > 0)
clock = {"epochs": 1, "iterations_per_epoch": 2, "val_iterations_per_epoch": 1, "runs": 1, "configuration": "2d",
         "device": "cpu", "job_started": time.time()}
ddp.train_rank(0, 1, ddp.RankJob(options.to_json(), str(dataset.folder), "all", plans, "BackSplit model",
                                 ddp.trainer_settings(options, dataset), clock=clock, device="cpu"))
"""


def test_rank_body_trains_and_writes_the_manifest_as_one_cpu_process(tiny_dataset, tmp_path):
    """``train_rank`` outside a process group (world size 1, CPU): everything a rank does except DDP itself, on the
    tiny dataset, in a real child process with nnU-Net's variables."""
    from fixtures_nnunet import tiny_options

    from backsplit.runtime.progress import parse_event_line
    from backsplit.training.manifest import read_manifest
    from backsplit.training.process import training_environment

    options = tiny_options(tiny_dataset.dataset_dir, tmp_path, epochs=1, iterations_per_epoch=2,
                           val_iterations_per_epoch=1)
    (tmp_path / "options.json").write_text(options.to_json())
    env = {**training_environment(options), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", RANK_SCRIPT, str(tmp_path / "options.json")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = [e for e in map(parse_event_line, result.stdout.splitlines()) if e is not None]
    starting = [e for e in events if e.stage == "train" and "starting" in e.message]
    assert starting and starting[0].data["num_gpus"] == 1
    assert [e.data["epoch"] for e in events if e.stage == "epoch"] == [1]        # the settings reached the trainer
    model = tmp_path / "nnUNet_results" / tiny_dataset.dataset_dir.name / "BackSplitTrainer__nnUNetPlans__2d"
    manifest = read_manifest(model)
    assert (model / "fold_all" / "checkpoint_final.pth").is_file()
    assert manifest["num_gpus"] == 1 and manifest["estimate"]["actual_s"] > 0
    plans = json.loads((model / "plans.json").read_text(encoding="utf-8"))
    assert manifest["batch_size"] == plans["configurations"]["2d"]["batch_size"]


# ---- the study -------------------------------------------------------------------------------------------------------
def _study_plan(**settings):
    from backsplit.study.arms import ArmContext, parse_arms
    from backsplit.study.plan import DatasetScan, StudySettings, build_plan

    cases = tuple(f"case{i:02d}" for i in range(6))

    def scan(folder):
        return DatasetScan(folder, cases, "meta", {c: [f"img-{c}"] for c in cases}, {c: f"lab-{c}" for c in cases},
                           ("cyst",), ("tumor",))

    arms = parse_arms(settings.pop("arms", ["binary", "backsplit"]), ArmContext(("cyst",), ("tumor",)))
    return build_plan(Path("/tmp/study"), scan("/d/Dataset501_K"), scan("/d/Dataset502_KBinary"), arms,
                      StudySettings(folds=2, **settings))


def test_study_hash_includes_num_gpus_only_above_one():
    from backsplit.study.hashing import stable_hash
    from backsplit.study.plan import StudySettings

    one = StudySettings(folds=2)
    # the training settings as hashed before --num-gpus existed: existing studies keep every hash
    assert one.training_json() == {"configuration": "2d", "epochs": 50, "iterations_per_epoch": 250,
                                   "val_iterations_per_epoch": 50, "batch_size": None, "sampling": "target"}
    assert StudySettings.from_json({k: v for k, v in one.to_json().items() if k != "num_gpus"}).num_gpus == 1
    base, two = _study_plan(), _study_plan(num_gpus=2)
    assert stable_hash(base.settings.training_json()) != stable_hash(two.settings.training_json())
    for a, b in zip(base.units, two.units):
        if a.kind == "prepare":
            assert a.hashes == b.hashes                       # preprocessing does not depend on the GPUs
        else:
            assert all(a.hashes[k] != b.hashes[k] for k in ("train", "predict", "evaluate"))


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_gpus=2, device="cpu"), ["'cpu'"]),
    (dict(num_gpus=2, batch_size=1), ["batch size is 1"]),
    (dict(num_gpus=2, arms=["learned:2"]), ["arm 'learned:2'", "remove it from --arms", "--num-gpus 1"]),
])
def test_study_refuses_what_ddp_cannot_run(kwargs, words):
    with pytest.raises(InputError) as info:
        _study_plan(**kwargs)
    for word in words:
        assert word in str(info.value)


def _study_args(tmp_path, *more):
    return build_parser().parse_args(["study", str(tmp_path / "ds"), "--out", str(tmp_path / "study"), *more])


@pytest.mark.parametrize("more, gres", [
    ([], "gpu:2"),
    (["--gres", "gpu:a100:1"], "gpu:a100:2"),
    (["--gres", "gpu:1,shard:4"], "gpu:2,shard:4"),
])
def test_slurm_job_script_requests_num_gpus_per_array_task(tmp_path, more, gres):
    from backsplit.commands.study import executor_from_args
    from backsplit.study.slurm import array_script

    args = _study_args(tmp_path, "--executor", "slurm", "--partition", "gpu", "--num-gpus", "2", *more)
    executor = executor_from_args(args)
    script = array_script(tmp_path / "study", ["binary-fold0-seed1", "backsplit-fold0-seed1"], executor.config,
                          tmp_path / "study" / "slurm")
    assert f"#SBATCH --gres={gres}\n" in script
    assert "#SBATCH --array=0-1\n" in script and "#SBATCH --partition=gpu\n" in script
    one = executor_from_args(_study_args(tmp_path, "--executor", "slurm"))
    assert "--gres" not in array_script(tmp_path / "study", ["u"], one.config, tmp_path)   # as before: no request


def test_slurm_config_asking_gpus_another_way_is_refused(tmp_path):
    from backsplit.commands.study import executor_from_args

    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"extra_args": ["--gpus-per-task=1"]}))
    with pytest.raises(InputError, match="--gpus-per-task=1"):
        executor_from_args(_study_args(tmp_path, "--executor", "slurm", "--slurm-config", str(config),
                                       "--num-gpus", "2"))


def test_local_executor_groups_the_gpu_pool(tmp_path, monkeypatch):
    from backsplit.commands.study import executor_from_args
    from backsplit.study import local

    monkeypatch.setattr(local, "visible_gpus", lambda: ["0", "1", "2", "3", "4"])   # no GPUs here: a fake list
    assert executor_from_args(_study_args(tmp_path, "--num-gpus", "2")).gpus == ["0,1", "2,3"]
    assert executor_from_args(_study_args(tmp_path)).gpus == ["0", "1", "2", "3", "4"]
    assert executor_from_args(_study_args(tmp_path, "--num-gpus", "2", "--gpus", "2,3")).gpus == ["2,3"]
    with pytest.raises(InputError, match="--gpus 3 gives 1 GPU"):
        executor_from_args(_study_args(tmp_path, "--num-gpus", "2", "--gpus", "3"))
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0"])
    assert executor_from_args(_study_args(tmp_path, "--num-gpus", "2")).gpus == []   # the training checks torch


def test_local_executor_gives_each_unit_its_gpus(tmp_path):
    """Real unit processes (a stand-in command that records its CUDA_VISIBLE_DEVICES and writes the unit's status)."""
    from backsplit.study.local import LocalExecutor

    script = ("import json, os, sys, time; d = sys.argv[1]; time.sleep(0.5); "
              "open(os.path.join(d, 'gpus.txt'), 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', '')); "
              "json.dump({'ok': True, 'returncode': 0}, open(os.path.join(d, 'status.json'), 'w'))")

    def popen(command, **kwargs):    # command: [python, -m, backsplit.study.runtask, STUDY, UNIT]
        unit = Path(command[-2]) / "units" / command[-1]
        return subprocess.Popen([sys.executable, "-c", script, str(unit)], **kwargs)

    executor = LocalExecutor(gpus=["0", "1", "2", "3"], gpus_per_unit=2, popen=popen, poll_s=0.05)
    started = []
    units = ["a-fold0-seed1", "b-fold0-seed1", "c-fold0-seed1"]
    results = executor.run(tmp_path, units, echo=started.append)
    assert all(r.ok for r in results.values())
    seen = [(tmp_path / "units" / u / "gpus.txt").read_text(encoding="utf-8") for u in units]
    assert seen[:2] == ["0,1", "2,3"] and seen[2] in ("0,1", "2,3")
    assert "started a-fold0-seed1 on GPU 0,1" in started
