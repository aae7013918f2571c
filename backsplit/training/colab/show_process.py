"""``backsplit context show`` in a child process (the Slicer panel never waits on torch):
``python -m backsplit.training.colab.show_process REQUEST.json``; progress events on stdout, results as files.

``ShowContextProcess(request).start()``, then ``poll_events()`` from a timer; ``cancel()`` ends the tree. The final
``done`` event carries the output folder and the cases written; an ``error`` event the user's error message. The
start, environment and worker ``main`` are the shared ones of ``backsplit.runtime.workerprocess``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Optional

from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.progress import ProgressEvent, Stage, emit_event
from backsplit.runtime.workerprocess import WorkerProcess, run_worker
from backsplit.training.colab.show_cases import ShowRequest

MODULE = "backsplit.training.colab.show_process"


class ShowContextProcess(WorkerProcess):
    """The learned-context view as a child process; ``cases`` (dicts) and ``error`` are filled by ``poll_events``."""

    def __init__(self, request: ShowRequest, python: Optional[str] = None, popen: PopenFactory = subprocess.Popen,
                 base_env=None):
        super().__init__(MODULE, request, "backsplit-context-show-", python=python, popen=popen, base_env=base_env)

    @property
    def cases(self) -> list[dict]:
        """The cases written, from the 'done' event (empty before it)."""
        return list(self.done_data.get("cases", []))

    def poll_events(self) -> list[ProgressEvent]:
        events = super().poll_events()
        if self.process is not None and self.process.poll() is not None:
            self.request_file.unlink(missing_ok=True)
        return events


def _show(request: ShowRequest) -> ProgressEvent:
    from backsplit.training.colab.show_cases import show_learned_context

    shown = show_learned_context(request, progress=emit_event)
    return ProgressEvent(Stage.DONE, f"learned context of {len(shown)} case(s) in {request.out_dir}", len(shown),
                         len(shown), {"out_dir": request.out_dir, "cases": [c.to_json() for c in shown]})


def main(argv: Optional[list] = None) -> int:
    return run_worker(_show, ShowRequest, "showing the learned context", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
