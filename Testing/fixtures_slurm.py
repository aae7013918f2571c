"""A real single-node SLURM cluster for tests, started by the test session itself (Debian's slurm-wlm and munge).

The fixture writes a one-node ``slurm.conf`` in a temporary folder (free ports, state and logs there), starts
``munged`` (unless one already runs), ``slurmctld`` and ``slurmd`` as root, waits until the node is idle, and
stops every daemon it started by the process id in its pid file. It skips, naming the reason, only when the packages
are not installed or the tests do not run as root (``.ci/run`` installs them: ``apt-get install slurm-wlm munge``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _stop(pid_file: Path, timeout: float = 15.0) -> None:
    pid = _alive(pid_file)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def slurm_unavailable_reason() -> str | None:
    missing = [d for d in DAEMONS if not os.path.exists(d)] + [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        return (f"SLURM/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge "
                "(.ci/run does)")
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    return None


def write_conf(folder: Path, host: str, cpus: int, memory_mb: int) -> Path:
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=backsplit-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldLogFile={folder}/ctld.log
SlurmdLogFile={folder}/d.log
SlurmctldPidFile={folder}/ctld.pid
SlurmdPidFile={folder}/d.pid
SlurmUser=root
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    (folder / "state").mkdir(exist_ok=True)
    (folder / "spool").mkdir(exist_ok=True)
    return conf


def _start_munge(folder: Path) -> Path | None:
    """Start munged unless one runs; returns its pid file when this fixture started it."""
    pid_file = Path("/run/munge/munged.pid")
    if _alive(pid_file):
        return None
    key = Path("/etc/munge/munge.key")
    if not key.is_file():
        subprocess.run(["mungekey", "-c", "-f"], check=True, capture_output=True)
    shutil.chown(key, "munge", "munge")
    os.chmod(key, 0o400)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True, capture_output=True)
    deadline = time.time() + 10
    while not _alive(pid_file) and time.time() < deadline:
        time.sleep(0.2)
    return pid_file


@contextlib.contextmanager
def single_node_slurm(folder: Path):
    """Start munged (if needed), slurmctld and slurmd with a one-node conf in ``folder``; yields the clients'
    environment; stops the daemons it started by pid."""
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 2
    memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    conf = write_conf(folder, host, cpus, memory)
    env = dict(os.environ, SLURM_CONF=str(conf))
    started: list[Path] = []
    try:
        munge_pid = _start_munge(folder)
        if munge_pid:
            started.append(munge_pid)
        for daemon, pid_name in (("/usr/sbin/slurmctld", "ctld.pid"), ("/usr/sbin/slurmd", "d.pid")):
            subprocess.run([daemon], env=env, check=True, capture_output=True, timeout=60)
            started.append(folder / pid_name)
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        if state != "idle":
            log = (folder / "ctld.log").read_text(errors="replace")[-2000:] if (folder / "ctld.log").exists() else ""
            raise RuntimeError(f"the test SLURM node did not become idle (state '{state}'):\n{log}")
        yield env
    finally:
        for pid_file in reversed(started):
            _stop(pid_file)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running one-node SLURM: yields the environment (SLURM_CONF) that clients need; daemons stopped after."""
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with single_node_slurm(tmp_path_factory.mktemp("slurm")) as env:
        yield env
