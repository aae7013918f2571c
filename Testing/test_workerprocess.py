"""The shared pieces of the step-generator jobs (``runsteps``) and of the JSON-request workers (``workerprocess``).

Export, ``dataset add``, prediction and organ-model generation are tested end to end in their own files (real
writes, real child processes); these tests pin the shared pieces: exact messages, exit codes, command line and
environment. The Popen factory is a stand-in so that the command line can be read without starting a process."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass

import pytest

from backsplit.errors import InputError, OutputError
from backsplit.runtime.progress import ProgressEvent
from backsplit.runtime.steps import raise_write_error, run_to_result
from backsplit.runtime.workerprocess import JsonRequest, WorkerProcess, run_worker


def steps():
    yield ProgressEvent("export", "one", 1, 2)
    yield ProgressEvent("done", "two", 2, 2, {"result": "the result", "case": "a"})


def test_run_to_result_returns_the_result_and_passes_every_event():
    seen = []
    assert run_to_result(steps(), seen.append) == "the result"
    assert [e.message for e in seen] == ["one", "two"] and seen[-1].data == {"case": "a"}   # result taken out


def test_run_to_result_without_a_result_raises():
    with pytest.raises(RuntimeError, match="without a result"):
        run_to_result(iter([ProgressEvent("export", "one")]))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_message(code):
    try:
        raise OSError(code, "No space left on device")
    except OSError as exc:
        with pytest.raises(OutputError) as caught:
            raise_write_error(exc, "/data/raw", failed="writing failed", fix="free space", unchanged="nothing changed")
    assert str(caught.value) == "the disk holding '/data/raw' is full; free space (nothing changed)"
    assert caught.value.__cause__ is None


def test_other_write_error_message_keeps_the_cause():
    error = OSError(errno.EACCES, "Permission denied")
    try:
        raise error
    except OSError as exc:
        with pytest.raises(OutputError) as caught:
            raise_write_error(exc, "/data/raw", failed="writing failed", fix="free space", unchanged="nothing changed")
    assert str(caught.value) == "writing failed ([Errno 13] Permission denied); nothing changed"
    assert caught.value.__cause__ is error


@dataclass
class EchoRequest(JsonRequest):
    text: str
    count: int = 1


def test_json_request_round_trip_and_unknown_field():
    request = EchoRequest("hi", 3)
    assert EchoRequest.from_json(request.to_json()) == request
    with pytest.raises(TypeError):
        EchoRequest.from_json(json.dumps({"text": "hi", "other": 1}))


def run(tmp_path, job, content):
    path = tmp_path / "request.json"
    path.write_text(content, encoding="utf-8")
    events = []
    code = run_worker(job, EchoRequest, "echo", events.append, [str(path)])
    return code, events


def test_run_worker_exit_codes_and_events(tmp_path):
    code, events = run(tmp_path, lambda r: ProgressEvent("done", r.text * r.count), EchoRequest("ab", 2).to_json())
    assert code == 0 and [(e.stage, e.message) for e in events] == [("done", "abab")]

    def refuse(request):
        raise InputError("no such model; choose another", path="/m")

    code, events = run(tmp_path, refuse, EchoRequest("ab").to_json())
    assert code == 1 and events[0].stage == "error" and events[0].message == "file '/m': no such model; choose another"
    code, events = run(tmp_path, lambda r: 1 / 0, EchoRequest("ab").to_json())
    assert code == 2 and events[0].message == "echo failed: ZeroDivisionError: division by zero"
    code, events = run(tmp_path, lambda r: None, "{}")   # a request without its required field
    assert code == 2 and events[0].message.startswith("echo failed: TypeError:")


def test_worker_process_command_and_environment(tmp_path):
    calls = []

    class Started:
        pid, stdout = 1, iter(())

        def poll(self):
            return 0

    def popen(args, **kwargs):   # stands in for subprocess.Popen: only the arguments are checked
        calls.append((args, kwargs))
        return Started()

    before = dict(os.environ)
    job = WorkerProcess("backsplit.some.worker", EchoRequest("hi"), "backsplit-echo-", python="py", popen=popen,
                        base_env={"KEEP": "1"}).start()
    try:
        args, kwargs = calls[0]
        assert args == ["py", "-m", "backsplit.some.worker", str(job.request_file)]
        assert job.request_file.name.startswith("backsplit-echo-") and job.request_file.suffix == ".json"
        assert EchoRequest.from_json(job.request_file.read_text(encoding="utf-8")) == EchoRequest("hi")
        assert kwargs["env"]["KEEP"] == "1" and kwargs["env"]["nnUNet_compile"] == "f"
        assert kwargs["env"]["PYTHONUNBUFFERED"] == "1"
        assert dict(os.environ) == before   # the variables are set for the child only
        assert kwargs.get("start_new_session") is True or "creationflags" in kwargs   # own group: cancel ends all
        assert job.error is None
    finally:
        job.request_file.unlink()
