"""What the device choice means on this computer (GPU name and free memory), asked in a child process so that
Slicer's own process does not import torch before the user trains. ``DeviceProbe`` runs the question without
waiting (the panel polls it from a timer: importing torch with CUDA can take many seconds); ``probe_devices`` waits."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Optional

PROBE = r"""
import json
try:
    import torch
except ImportError:
    print(json.dumps({"torch": None})); raise SystemExit
info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "gpus": []}
if info["cuda"]:
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        info["gpus"].append({"name": torch.cuda.get_device_name(i), "free_gb": free / 2**30, "total_gb": total / 2**30})
info["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
print(json.dumps(info))
"""


def probe_devices(python: str = sys.executable, timeout: float = 60) -> dict:
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"torch": None, "error": out.stderr[-500:]}


def describe_devices(info: dict) -> str:
    if info.get("error") and not info.get("torch"):
        detail = str(info["error"]).strip().splitlines()
        return f"Could not check the devices: {detail[-1] if detail else 'no answer'}"
    if not info.get("torch"):
        return "PyTorch is not installed yet (it is installed on the first training)."
    if info.get("gpus"):
        return "; ".join(f"GPU {i}: {g['name']}, {g['free_gb']:.1f} of {g['total_gb']:.1f} GB free"
                         for i, g in enumerate(info["gpus"]))
    if info.get("mps"):
        return "Apple GPU (mps) available."
    return "No GPU found: training runs on the CPU (slow; use few epochs or a GPU computer)."


class DeviceProbe:
    """``DeviceProbe(python).start()``; then ``poll()`` from a timer until it returns the description text."""

    def __init__(self, python: Optional[str] = None, timeout: float = 120.0):
        from backsplit.runtime.childprocess import python_executable

        self.python = python or python_executable()
        self.timeout = timeout
        self.job = None
        self.info: Optional[dict] = None

    def start(self) -> "DeviceProbe":
        from backsplit.runtime.childprocess import ChildProcess, child_environment

        self.job = ChildProcess([self.python, "-c", PROBE], child_environment()).start()
        return self

    def poll(self) -> Optional[str]:
        """None while the child runs; then the description (also when the probe failed or took too long)."""
        if self.info is not None:
            return describe_devices(self.info)
        job = self.job
        if job is None:
            raise RuntimeError("the probe was not started")
        if job.is_running():
            if job.started_at is not None and _elapsed(job.started_at) > self.timeout:
                job.cancel(grace_seconds=1.0, wait=False)   # never wait on the panel's timer
                self.info = {"torch": None, "error": "the device check took too long"}
                return describe_devices(self.info)
            return None
        job.wait(timeout=5)
        self.info = parse_probe_output(job.log_lines)
        return describe_devices(self.info)


def _elapsed(started: float) -> float:
    import time

    return time.time() - started


def parse_probe_output(lines) -> dict:
    """The probe's JSON answer from its output lines (the last line that is a JSON object)."""
    for line in reversed(list(lines)):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {"torch": None, "error": "\n".join(list(lines)[-5:])}
