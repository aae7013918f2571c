"""`backsplit study --parallel N`: the local executor runs N units at the same time on a CPU-only machine, each with
its share of the cores. Real child processes stand in for the units (a short Python script that records when it ran
and its OMP_NUM_THREADS, then writes the unit's status as runtask does); the scheduling is what is tested."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backsplit.cli import build_parser
from backsplit.errors import InputError
from backsplit.runtime.devices import usable_cpu_count

SCRIPT = ("import json, os, sys, time; d = sys.argv[1]; os.makedirs(d, exist_ok=True); start = time.time(); "
          "time.sleep(0.6); json.dump({'start': start, 'end': time.time(), "
          "'omp': os.environ.get('OMP_NUM_THREADS', '')}, open(os.path.join(d, 'ran.json'), 'w')); "
          "json.dump({'ok': True, 'returncode': 0}, open(os.path.join(d, 'status.json'), 'w'))")


def _popen(command, **kwargs):    # command: [python, -m, backsplit.study.runtask, STUDY, UNIT]
    unit = Path(command[-2]) / "units" / command[-1]
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(unit)], **kwargs)


def _ran(study: Path, unit: str) -> dict:
    return json.loads((study / "units" / unit / "ran.json").read_text(encoding="utf-8"))


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_parallel_units_overlap_and_share_the_cores(tmp_path, monkeypatch):
    from backsplit.study.local import LocalExecutor

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    units = ["a-fold0-seed1", "b-fold0-seed1", "c-fold0-seed1"]
    results = LocalExecutor(parallel=2, popen=_popen, poll_s=0.05).run(tmp_path, units, echo=lambda m: None)
    assert all(r.ok for r in results.values())
    ran = [_ran(tmp_path, u) for u in units]
    assert _overlap(ran[0], ran[1])                                   # two at a time ...
    assert not (_overlap(ran[2], ran[0]) and _overlap(ran[2], ran[1]))  # ... never three
    assert {r["omp"] for r in ran} == {str(max(1, usable_cpu_count() // 2))}


def test_one_unit_at_a_time_by_default_and_user_threads_kept(tmp_path, monkeypatch):
    from backsplit.study.local import LocalExecutor

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    units = ["a-fold0-seed1", "b-fold0-seed1"]
    LocalExecutor(popen=_popen, poll_s=0.05).run(tmp_path / "serial", units, echo=lambda m: None)
    first, second = (_ran(tmp_path / "serial", u) for u in units)
    assert not _overlap(first, second)
    LocalExecutor(parallel=2, popen=_popen, poll_s=0.05).run(tmp_path / "par", units, echo=lambda m: None)
    assert {_ran(tmp_path / "par", u)["omp"] for u in units} == {"3"}     # the user's setting wins


def test_parallel_option(tmp_path):
    from backsplit.commands.study import executor_from_args

    def args(*more):
        return build_parser().parse_args(["study", str(tmp_path / "ds"), "--out", str(tmp_path / "s"),
                                          "--device", "cpu", *more])

    assert executor_from_args(args("--parallel", "2")).parallel == 2
    assert executor_from_args(args()).parallel == 1
    with pytest.raises(SystemExit):   # refused where it is parsed (runtime/argtypes.py)
        args("--parallel", "0")


def test_parallel_is_refused_where_units_use_gpus(tmp_path, monkeypatch):
    """No GPU here: the GPU list is a stand-in (``visible_gpus``)."""
    from backsplit.commands.study import executor_from_args
    from backsplit.study import local

    monkeypatch.setattr(local, "visible_gpus", lambda: ["0"])
    parsed = build_parser().parse_args(["study", str(tmp_path / "ds"), "--out", str(tmp_path / "s"),
                                        "--parallel", "2"])
    with pytest.raises(InputError, match="--parallel 2 runs units side by side on the CPU.*--device cpu"):
        executor_from_args(parsed)
    parsed.device = "cpu"
    assert executor_from_args(parsed).parallel == 2


def test_auto_gpus_follow_cuda_visible_devices(monkeypatch):
    """A shared machine's share of GPUs (nvidia-smi ignores CUDA_VISIBLE_DEVICES); no GPU is needed to check it."""
    from backsplit.study.local import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or shutil.which("taskset") is None,
                    reason="needs Linux CPU affinity and util-linux's taskset")
def test_thread_counts_follow_the_cpus_this_process_may_use():
    """A SLURM allocation or a cpuset gives a process fewer cores than the machine has; ``taskset -c 0`` does the
    same here, and the count BackSplit sizes its torch threads and units by follows it."""
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                          "from backsplit.runtime.devices import usable_cpu_count; print(usable_cpu_count())"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    assert usable_cpu_count() == len(os.sched_getaffinity(0))
