"""Two trainings on one work folder no longer race in nnU-Net's preprocessing (the loser crashed with "Error while
creating the NDArray"): ``training/prepare.prepare`` takes the dataset's preparation lock first, so a second one
waits, says so, then reuses the finished preprocessing. Real processes, real nnU-Net preprocessing of the tiny
dataset; the test holds the lock at first (as a running preparation does) so that both children must wait."""

from __future__ import annotations

import subprocess
import sys
import time

from fixtures_nnunet import export_tiny, tiny_options

CHILD = """
import sys
from backsplit.datasets.folder import load_dataset_folder
from backsplit.training.options import TrainOptions
from backsplit.training.prepare import prepare
options = TrainOptions.from_json(open(sys.argv[1]).read())
prepare(load_dataset_folder(options.dataset_dir), options, None)
"""


def test_two_preparations_of_one_dataset_wait_for_each_other(tmp_path, monkeypatch):
    from backsplit.datasets.folder import load_dataset_folder
    from backsplit.training.lock import TrainingLock
    from backsplit.training.prepare import preparation_lock
    from backsplit.training.process import training_environment

    dataset = export_tiny(tmp_path / "raw", n_cases=3).dataset_dir
    options = tiny_options(dataset, tmp_path / "work", preprocess_processes=1)
    options_file = tmp_path / "options.json"
    options_file.write_text(options.to_json())
    env = training_environment(options)
    monkeypatch.setenv("nnUNet_preprocessed", env["nnUNet_preprocessed"])
    folder = load_dataset_folder(dataset)
    lock = TrainingLock(preparation_lock(folder))
    lock.acquire()
    outputs = [tmp_path / f"child{i}.out" for i in (0, 1)]
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(options_file)], env=env, stdout=out.open("w"),
                                 stderr=subprocess.STDOUT) for out in outputs]
    try:
        deadline = time.time() + 300
        while not all("waiting for another training" in out.read_text(encoding="utf-8") for out in outputs):
            ended = [c.returncode for c in children if c.poll() is not None]
            assert not ended and time.time() < deadline, [out.read_text(encoding="utf-8")[-2000:] for out in outputs]
            time.sleep(0.2)
        assert not list((tmp_path / "work").rglob("backsplit_prepared_*.json"))   # nothing done while waiting
    finally:
        lock.release()
        codes = [c.wait(timeout=600) for c in children]
    texts = [out.read_text(encoding="utf-8") for out in outputs]
    assert codes == [0, 0], [t[-3000:] for t in texts]
    assert sum("already preprocessed" in t for t in texts) == 1, texts
    assert list((tmp_path / "work").rglob("backsplit_prepared_2d.json"))
    assert not preparation_lock(folder).exists()
