"""A training worker killed by a signal (as the kernel's out-of-memory killer does, with SIGKILL) ends ``backsplit
train`` with exit 1 and one message saying it was killed, by which signal, the likely cause and ``--resume``
(backsplit/training/follow.py, backsplit/runtime/exits.py). It used to end with exit 247 (the shell's view of -9)
and no word. A real ``backsplit train`` on the tiny dataset; its worker is killed with a real SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
from fixtures_nnunet import export_tiny

from backsplit.runtime.exits import ended_text


def _worker(parent: psutil.Process, deadline: float) -> psutil.Process:
    while time.time() < deadline:
        for child in parent.children():
            try:
                if "backsplit.training.worker" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.1)
    raise AssertionError("the training worker did not start")


def test_train_worker_killed_by_a_signal_is_said_in_words(tmp_path):
    dataset = export_tiny(tmp_path / "raw", n_cases=3).dataset_dir
    command = [sys.executable, "-m", "backsplit", "train", str(dataset), "--work-dir", str(tmp_path / "work"),
               "-c", "2d", "--device", "cpu", "--epochs", "1", "--iterations-per-epoch", "2", "--val-iterations", "1"]
    train = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = _worker(psutil.Process(train.pid), time.time() + 300)
        time.sleep(1.0)   # let it get going (it starts with imports and nnU-Net's planning: minutes on 2 cores)
        helpers = worker.children(recursive=True)
        worker.send_signal(signal.SIGKILL)
        out, err = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
    for helper in helpers:   # nnU-Net's own preprocessing processes, orphaned by the kill: end them
        try:
            helper.kill()
        except psutil.NoSuchProcess:
            pass
    assert train.returncode == 1, err
    message = [line for line in err.splitlines() if line.startswith("backsplit: error:")]
    assert len(message) == 1, err
    assert "was killed" in message[0] and "SIGKILL (signal 9" in message[0], message
    assert "out-of-memory killer" in message[0] and "--resume" in message[0] and "--batch-size" in message[0]
    assert "full log:" in err


def test_ended_text_names_the_signal_and_its_likely_cause():
    assert ended_text(-9).startswith("ended by signal SIGKILL (signal 9: most often the machine ran out of memory")
    assert "time limit" in ended_text(-15) and ended_text(-99) == "ended by signal 99"
    assert ended_text(3) == "ended with exit code 3" and ended_text(130) == "was cancelled"
