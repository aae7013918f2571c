"""GPUs per unit (``--num-gpus N``, one DDP training on N GPUs): the local executor's GPU groups and the SLURM
generic-resource request. Pure functions."""

from __future__ import annotations

import re
from typing import Optional, Sequence

from backsplit.errors import InputError


def gpu_groups(gpus: Sequence[str], per_unit: int = 1) -> list[str]:
    """The GPU pool cut into groups of ``per_unit`` devices, each a CUDA_VISIBLE_DEVICES value: ["0", "1"] for one
    GPU a unit, ["0,1", "2,3"] for two; GPUs left over (5 GPUs, 2 a unit: the fifth) stay unused. Empty pool: [].
    Raises InputError when the pool is not empty but smaller than one group."""
    gpus = [str(g).strip() for g in gpus if str(g).strip()]
    if per_unit < 1:
        raise InputError(f"--num-gpus {per_unit} is not valid; give at least 1")
    if not gpus:
        return []
    if len(gpus) < per_unit:
        raise InputError(f"--gpus {','.join(gpus)} gives {len(gpus)} GPU(s) but --num-gpus {per_unit} needs "
                         f"{per_unit} for each training; list at least {per_unit} GPUs or lower --num-gpus")
    return [",".join(gpus[i:i + per_unit]) for i in range(0, len(gpus) - per_unit + 1, per_unit)]


_GPU_ENTRY = re.compile(r"^gpu(?::(?P<type>[^:]*[^:\d][^:]*))?(?::(?P<count>\d+))?$")   # type: not all digits
_GPU_OPTIONS = ("--gpus", "--gpus-per-task", "--gpus-per-node", "-G")


def slurm_gres(gres: Optional[str], num_gpus: int, extra_args: Sequence[str] = ()) -> Optional[str]:
    """The ``--gres`` value of an array task that trains on ``num_gpus`` GPUs: ``gres`` unchanged for 1 GPU;
    otherwise its ``gpu[:type][:count]`` entry with the count set to ``num_gpus`` (type kept, other resources kept),
    or ``gpu:N`` added. SLURM's format: name[:type][:count], comma-separated (slurm.conf gres.conf man pages).
    Raises InputError when ``extra_args`` already asks for GPUs another way (--gpus, --gpus-per-task, ...)."""
    if num_gpus <= 1:
        return gres
    clash = [a for a in extra_args if str(a).split("=", 1)[0] in _GPU_OPTIONS]
    if clash:
        raise InputError(f"the SLURM options {' '.join(map(str, clash))} ask for GPUs while --num-gpus {num_gpus} "
                         f"asks for {num_gpus} per unit through --gres; remove them from extra_args (BackSplit "
                         f"requests gpu:{num_gpus})")
    entries = [e.strip() for e in (gres or "").split(",") if e.strip()]
    out, found = [], False
    for entry in entries:
        match = _GPU_ENTRY.match(entry)
        if match and not found:
            found = True
            kind = match.group("type")
            entry = f"gpu:{kind}:{num_gpus}" if kind else f"gpu:{num_gpus}"
        out.append(entry)
    if not found:
        out.append(f"gpu:{num_gpus}")
    return ",".join(out)
