"""What the device choice means on this computer (GPU name and free memory), asked in a child process so that
Slicer's own process does not import torch before the user trains."""

from __future__ import annotations

import json
import subprocess
import sys

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
    if not info.get("torch"):
        return "PyTorch is not installed yet (it is installed on the first training)."
    if info.get("gpus"):
        return "; ".join(f"GPU {i}: {g['name']}, {g['free_gb']:.1f} of {g['total_gb']:.1f} GB free"
                         for i, g in enumerate(info["gpus"]))
    if info.get("mps"):
        return "Apple GPU (mps) available."
    return "No GPU found: training runs on the CPU (slow; use few epochs or a GPU computer)."
