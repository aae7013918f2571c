"""Follow a training child process in a terminal: a progress bar with the time left, error lines, Ctrl-C cancels.

Used by ``backsplit train`` and by the demo pipeline (``backsplit.demo.pipeline``), so no command imports another.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from backsplit.runtime.progress import FINAL_STAGES, ProgressEvent, Stage, TextProgressBar
from backsplit.training.status import TrainingStatus


def follow(process, *, jsonl: bool = False, show_log: bool = False, stream: Optional[TextIO] = None) -> int:
    """Print a process's progress until it ends; Ctrl-C cancels the whole process tree.

    ``process`` is a started ``TrainingProcess`` (or anything with ``poll_events()``, ``is_running()``, ``wait()``,
    ``cancel()``, ``returncode``). Progress goes to ``stream`` (default stderr); with ``jsonl`` each event is
    printed to stdout as one JSON line instead. Returns the exit code to use: 0 on success, 130 after Ctrl-C, 1 (or
    the child's own code when it died otherwise) after an error. Raises nothing of its own."""
    stream = stream or sys.stderr
    status = TrainingStatus(models_total=process.options.runs_total if getattr(process, "options", None) else 1)
    bar = TextProgressBar(stream)
    try:
        while True:
            for event in process.poll_events():
                if event.stage == Stage.LOG:
                    if show_log:
                        print(event.message, file=stream)
                    continue
                status.update(event)
                if jsonl:
                    print(event.to_json(), flush=True)
                elif event.stage == Stage.ERROR:  # as every other command prints its errors
                    print(f"backsplit: error: {event.message}", file=stream)
                else:
                    # epochs: the status line (elapsed, time left); other events: their own message (two 'train'
                    # events at the start rendered as the same status line printed it twice)
                    text = status.summary() if event.stage == "epoch" else \
                        (f"{status.model}: {event.message}" if event.stage == "train" and status.model and
                         not event.message.startswith(status.model) else event.message)
                    bar(ProgressEvent(event.stage, text, event.current, event.total,
                                      {} if event.stage == "epoch" else {"seconds_left": status.seconds_left()}))
            if not process.is_running():
                process.wait()
                for event in process.poll_events():
                    status.update(event)
                    if event.stage in FINAL_STAGES and not jsonl:
                        print(f"backsplit: error: {event.message}" if event.stage == Stage.ERROR else event.message,
                              file=stream)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("cancelling: ending the training process tree ...", file=stream)
        process.cancel()
        return 130
    if status.error:
        if not jsonl:
            tail = "\n".join(getattr(process, "log_lines", [])[-15:])
            if tail and process.returncode not in (0, 1):
                print(tail, file=stream)
            if getattr(process, "log_file", None):
                print(f"full log: {process.log_file}", file=stream)
        return 1 if process.returncode in (0, 1, None) else int(process.returncode)
    return int(process.returncode or 0)
