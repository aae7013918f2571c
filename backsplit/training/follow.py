"""Follow a training child process in a terminal: a progress bar with the time left, error lines, Ctrl-C cancels.

Used by ``backsplit train`` and by the demo pipeline (``backsplit.demo.pipeline``), so no command imports another.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Optional, TextIO

from backsplit.runtime.exits import EXIT_CANCELLED, ended_text
from backsplit.runtime.progress import FINAL_STAGES, ProgressEvent, Stage, TextProgressBar
from backsplit.training.status import TrainingStatus


def follow(process, *, jsonl: bool = False, show_log: bool = False, stream: Optional[TextIO] = None) -> int:
    """Print a process's progress until it ends; Ctrl-C cancels the whole process tree.

    ``process`` is a started ``TrainingProcess`` (or anything with ``poll_events()``, ``is_running()``, ``wait()``,
    ``cancel()``, ``returncode``). Progress goes to ``stream`` (default stderr); with ``jsonl`` each event is
    printed to stdout as one JSON line instead. Returns the exit code to use: 0 on success, 130 after Ctrl-C, 1
    after an error, also when the child was killed by a signal (said in words: ``killed_text``), else the child's
    own code. Raises nothing of its own."""
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
    code = process.returncode
    if not status.error and code not in (0, None, EXIT_CANCELLED):   # ended without its error event: killed, ...
        message = killed_text(code)
        if jsonl:
            print(ProgressEvent(Stage.ERROR, message).to_json(), flush=True)
        else:
            print(f"backsplit: error: {message}", file=stream)
    if status.error or code not in (0, None, EXIT_CANCELLED):
        if not jsonl:
            tail = "\n".join(getattr(process, "log_lines", [])[-15:])
            if tail and code not in (0, 1):
                print(tail, file=stream)
            if getattr(process, "log_file", None):
                print(f"full log: {process.log_file}", file=stream)
        return 1 if code in (0, 1, None) or code < 0 else int(code)
    return int(code or 0)


def killed_text(returncode: int) -> str:
    """The user's message for a training process that ended without reporting an error (``exits.ended_text``):
    which signal, its likely cause, what to change and how to continue (``--resume``)."""
    text = f"the training process {ended_text(returncode)}"
    if returncode < 0:
        text = f"the training process was killed: it {ended_text(returncode)}"
        if -returncode == getattr(signal, "SIGKILL", 9):
            text += "; if memory ran out, lower --batch-size or --workers, or close other programs"
        text += ("; continue from its last checkpoint with the same command and --resume (a checkpoint is kept "
                 "every --save-every epochs)")
    return text
