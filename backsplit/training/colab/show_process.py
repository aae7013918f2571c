"""``backsplit context show`` in a child process (the Slicer panel never waits on torch):
``python -m backsplit.training.colab.show_process REQUEST.json``; progress events on stdout, results as files.

``ShowContextProcess(request).start()``, then ``poll_events()`` from a timer; ``cancel()`` ends the tree. The final
``done`` event carries the output folder and the cases written; an ``error`` event the user's error message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Optional

from ...errors import BackSplitError
from ...process import ChildProcess, PopenFactory, child_environment, python_executable
from ...progress import ProgressEvent, emit_event
from .show_cases import ShowRequest

MODULE = "backsplit.training.colab.show_process"


class ShowContextProcess(ChildProcess):
    def __init__(self, request: ShowRequest, python: Optional[str] = None, popen: PopenFactory = subprocess.Popen,
                 base_env=None):
        self.request = request
        handle, name = tempfile.mkstemp(prefix="backsplit-context-show-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(request.to_json())
        self.request_file = Path(name)
        env = child_environment(base_env)
        env["nnUNet_compile"] = "f"
        super().__init__([python or python_executable(), "-m", MODULE, str(self.request_file)], env, popen=popen)
        self.cases: list[dict] = []
        self.error: Optional[str] = None

    def poll_events(self) -> list[ProgressEvent]:
        events = super().poll_events()
        for event in events:
            if event.stage == "done":
                self.cases = list(event.data.get("cases", []))
            elif event.stage == "error":
                self.error = event.message
        if self.process is not None and self.process.poll() is not None:
            self.request_file.unlink(missing_ok=True)
        return events


def main(argv: Optional[list] = None) -> int:
    from .show_cases import show_learned_context

    argv = sys.argv[1:] if argv is None else argv
    try:
        request = ShowRequest.from_json(Path(argv[0]).read_text(encoding="utf-8"))
        shown = show_learned_context(request, progress=emit_event)
    except BackSplitError as exc:
        emit_event(ProgressEvent("error", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - reported, traceback in the log
        traceback.print_exc()
        emit_event(ProgressEvent("error", f"showing the learned context failed: {type(exc).__name__}: {exc}"))
        return 2
    emit_event(ProgressEvent("done", f"learned context of {len(shown)} case(s) in {request.out_dir}", len(shown),
                             len(shown), {"out_dir": request.out_dir, "cases": [c.to_json() for c in shown]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
