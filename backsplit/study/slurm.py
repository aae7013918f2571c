"""SLURM executor: one job array per wave of units (one array task per arm x fold x seed), submitted with
``sbatch``, followed with ``squeue`` (and ``sacct`` when accounting is on), cancelled with ``scancel`` on Ctrl-C.
SLURM does the scheduling; each array task runs ``python -m backsplit.study.runtask STUDY UNIT`` on its node.

Resources (``SlurmConfig``) and the client commands (``SlurmClient``) are the engine's SLURM client,
``backsplit.runtime.slurm``, shared with training on a cluster (``backsplit.training.cluster``).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from backsplit.runtime.slurm import Runner, SlurmClient, SlurmConfig, check_directive_path, shell_line
from backsplit.study.executors import Echo, UnitResult, log_path, read_result, unit_command


def array_script(study_dir: Path, unit_ids: Sequence[str], config: SlurmConfig, output_dir: Path) -> str:
    """The sbatch script of one job array: task i runs unit_ids[i], appending to the unit's log.txt. The config's
    values and the folders in ``#SBATCH`` lines are checked first (InputError: a line break in a value would be a
    line of the script; a space ends an ``#SBATCH`` value)."""
    study_dir = Path(study_dir).resolve()
    config.check()
    check_directive_path(study_dir, "study folder")
    check_directive_path(output_dir.resolve(), "SLURM output folder")
    throttle = f"%{config.max_parallel}" if config.max_parallel else ""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={config.job_name}", f"#SBATCH --array=0-{len(unit_ids) - 1}{throttle}",
             f"#SBATCH --output={output_dir.resolve()}/%A_%a.out", f"#SBATCH --chdir={study_dir}"]
    lines += [f"#SBATCH {option}" for option in config.directives()]
    command = shell_line(unit_command(study_dir, "UNIT_PLACEHOLDER", config.python)).replace("UNIT_PLACEHOLDER",
                                                                                             '"$UNIT"')
    lines += ["set -u", "UNITS=(" + " ".join(unit_ids) + ")", 'UNIT="${UNITS[$SLURM_ARRAY_TASK_ID]}"',
              f'LOG="{study_dir}/units/$UNIT/log.txt"', 'mkdir -p "$(dirname "$LOG")"',
              'echo "--- $(date "+%Y-%m-%d %H:%M:%S") slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on '
              '$(hostname)" >> "$LOG"', f'exec {command} >> "$LOG" 2>&1', ""]
    return "\n".join(lines)


class SlurmExecutor:
    """Runs units as SLURM array jobs (see the module doc); ``run`` and ``sleep`` are injectable for tests."""

    def __init__(self, config: Optional[SlurmConfig] = None, run: Runner = subprocess.run,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config if config is not None else SlurmConfig()
        self.client = SlurmClient(run, missing="SLURM's client commands must be on PATH for --executor slurm (run "
                                               "the study on a SLURM login node)")
        self._sleep = sleep

    def submit(self, study_dir: Path, unit_ids: Sequence[str]) -> str:
        """Write the array script (and its unit list) into ``<study>/slurm/`` and submit it; returns the job id."""
        folder = Path(study_dir) / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / f"array-{time.strftime('%Y%m%d-%H%M%S')}-{len(unit_ids)}.sh"
        script.write_text(array_script(study_dir, unit_ids, self.config, folder), encoding="utf-8")
        (folder / (script.stem + ".units.json")).write_text(json.dumps(list(unit_ids)), encoding="utf-8")
        return self.client.submit(script)

    def run(self, study_dir: Path, unit_ids: Sequence[str], echo: Echo = print) -> dict[str, UnitResult]:
        """Submit the units as one array job, follow it until every task has left the queue, and return one
        result per unit (from its status.json; SLURM's state and exit code where accounting is on). Ctrl-C, or
        any failure while following the job, cancels it (``scancel``) and raises again: nothing keeps running
        unwatched."""
        if not unit_ids:
            return {}
        job_id = self.submit(study_dir, unit_ids)
        last: dict[str, str] = {}
        try:
            echo(f"submitted SLURM job array {job_id} ({len(unit_ids)} task(s)); cancel with Ctrl-C or scancel "
                 f"{job_id}")
            while True:
                states = self.client.queued(job_id)
                if states != last:
                    counts: dict[str, int] = {}
                    for state in states.values():
                        counts[state] = counts.get(state, 0) + 1
                    echo(f"job {job_id}: " + (", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
                                              or "every task has left the queue"))
                    last = states
                if not states:
                    break
                self._sleep(self.config.poll_s)
        except KeyboardInterrupt:
            echo(f"interrupted: scancel {job_id}")
            self.client.cancel(job_id)
            raise
        except BaseException as exc:
            echo(f"following job {job_id} failed ({type(exc).__name__}): scancel {job_id}")
            self.client.cancel(job_id)
            raise
        accounting = self.client.accounting(job_id)
        results = {}
        for index, unit_id in enumerate(unit_ids):
            state, code = accounting.get(index, ("", None))
            result = read_result(study_dir, unit_id, code, state)
            if not result.ok and not log_path(study_dir, unit_id).is_file():
                slurm_out = Path(study_dir) / "slurm" / f"{job_id}_{index}.out"
                if slurm_out.is_file():
                    text = slurm_out.read_text(errors="replace", encoding="utf-8")
                    result.log_tail = "\n".join(text.splitlines()[-20:])
            results[unit_id] = result
            echo(f"{'finished' if result.ok else 'FAILED'} {unit_id} (array task {job_id}_{index}"
                 f"{', ' + state if state else ''})")
        return results
