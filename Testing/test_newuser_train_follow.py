"""``backsplit train`` prints a training child's error as every command prints its errors ("backsplit: error: ...";
it was "error: ..."). The child process is replaced by a stand-in that replays its events (no training needed to
check the printing)."""

import io

from backsplit.runtime.progress import ProgressEvent
from backsplit.training.follow import follow


class ReplayedProcess:
    """Stand-in for TrainingProcess: its events, then ended with exit status 1 (a user error in the child)."""

    def __init__(self, events, running_polls=1):
        self.events, self.returncode, self.log_file, self.log_lines = list(events), 1, "work/jobs/train-x.log", []
        self._running = running_polls

    def poll_events(self):
        events, self.events = self.events, []
        return events

    def is_running(self):
        self._running -= 1
        return self._running >= 0

    def wait(self):
        return self.returncode


def _error():
    return ProgressEvent("error", "device 'cuda' was asked for but no CUDA GPU is available", None, None, {})


def test_error_while_running_is_printed_like_other_commands():
    stream = io.StringIO()
    assert follow(ReplayedProcess([_error()], running_polls=1), stream=stream) == 1
    text = stream.getvalue()
    assert "backsplit: error: device 'cuda'" in text and "full log: work/jobs/train-x.log" in text


def test_error_after_the_end_is_printed_like_other_commands():
    stream = io.StringIO()
    process = ReplayedProcess([], running_polls=0)
    process.wait = lambda: process.events.append(_error())
    assert follow(process, stream=stream) == 1
    assert "backsplit: error: device 'cuda'" in stream.getvalue()
