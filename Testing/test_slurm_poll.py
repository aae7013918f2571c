"""N3: the Train panel's timer never waits for ``squeue`` (``backsplit.runtime.slurm_poll.BackgroundQueue``). A
slow slurmctld is played by a real ``squeue`` script on PATH that answers only when a file appears (no timing)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from backsplit.errors import BackSplitError
from backsplit.runtime.slurm import SlurmClient
from backsplit.runtime.slurm_poll import PENDING, BackgroundQueue


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script stands in for squeue")
def test_squeue_runs_beside_the_timer_and_its_last_answer_is_used(tmp_path, monkeypatch):
    go = tmp_path / "go"
    script = tmp_path / "bin" / "squeue"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nwhile [ ! -e '{go}' ]; do sleep 0.05; done\necho '42|RUNNING'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    other = []
    queue = BackgroundQueue(run=lambda args, **kwargs: other.append(args), interval_s=0.0)
    client = SlurmClient(run=queue)
    for _ in range(5):                                  # slurmctld does not answer: every tick returns at once
        with pytest.raises(BackSplitError, match=PENDING):
            client.queued("42")
    go.touch()
    for _ in range(500):
        try:
            states = client.queued("42")
            break
        except BackSplitError:
            time.sleep(0.02)
    assert states == {"42": "RUNNING"}
    client.cancel("42")                                 # other commands are run as given (scancel, sbatch)
    assert other == [["scancel", "42"]]
    queue.close()
