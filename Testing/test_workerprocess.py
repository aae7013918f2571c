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


# ---- the one exit mapping (runtime/exits.py), shared by every worker and the study's units ---------------------
def test_failures_map_to_one_exit_status_and_message():
    from backsplit.errors import CancelledError
    from backsplit.runtime.exits import EXIT_CANCELLED, EXIT_ERROR, EXIT_UNEXPECTED, ended_text, failure

    assert failure(OutputError("the model folder exists; choose another"), "training") == \
        (EXIT_ERROR, "the model folder exists; choose another")
    code, message = failure(OSError(errno.ENOSPC, "No space left on device", "/w/x.pth"), "training",
                            disk_full="free space")
    assert (code, message) == (EXIT_ERROR, "the disk is full (writing '/w/x.pth'); free space")
    assert failure(OSError(errno.EDQUOT, "Disk quota exceeded"), disk_full="ask for more")[1] == \
        "the disk is full; ask for more"

    class OutOfMemoryError(RuntimeError):   # torch.cuda.OutOfMemoryError is found by its name: no torch import
        pass

    assert failure(OutOfMemoryError("CUDA error"), out_of_memory="choose 2d") == \
        (EXIT_ERROR, "the GPU ran out of memory; choose 2d")
    assert failure(RuntimeError("MPS backend out of memory"))[0] == EXIT_ERROR
    assert failure(CancelledError("cancelled by the user"))[0] == EXIT_CANCELLED
    assert failure(KeyError("x"), "training") == (EXIT_UNEXPECTED, "training failed: KeyError: 'x'")
    assert failure(OSError(errno.EACCES, "Permission denied")) == \
        (EXIT_UNEXPECTED, "PermissionError: [Errno 13] Permission denied")
    assert ended_text(-9).startswith("ended by signal SIGKILL (") and ended_text(3) == "ended with exit code 3"
    assert ended_text(EXIT_CANCELLED) == "was cancelled"


def test_run_worker_reports_a_full_disk_and_wrong_arguments(tmp_path, capsys):
    def full(request):
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "request.json"
    path.write_text(EchoRequest("ab").to_json(), encoding="utf-8")
    events = []
    assert run_worker(full, EchoRequest, "echo", events.append, [str(path)], disk_full="free space") == 1
    assert [(e.stage, e.message) for e in events] == [("error", "the disk is full; free space")]
    assert run_worker(full, EchoRequest, "echo", events.append, []) == 2 and len(events) == 1
    assert "usage: python -m" in capsys.readouterr().err


def test_event_record_keeps_done_error_estimate_and_the_log(tmp_path):
    from backsplit.runtime.progress import Stage
    from backsplit.runtime.workerprocess import EventRecord

    record = EventRecord()
    record.init_record(tmp_path / "logs" / "job.log", log_own_events=False)
    record.record([ProgressEvent(Stage.LOG, "nnU-Net says hi"), ProgressEvent(Stage.ESTIMATE, "1 min", data={"s": 60}),
                   ProgressEvent(Stage.DONE, "ok", data={"models": ["/m"]})])
    assert record.estimate == {"s": 60} and record.done_data == {"models": ["/m"]} and record.error is None
    # own events left out here
    assert (tmp_path / "logs" / "job.log").read_text(encoding="utf-8") == "nnU-Net says hi\n"
    record.log_own_events = True
    record.record([ProgressEvent(Stage.ERROR, "no model")])
    assert record.error == "no model" and (tmp_path / "logs" / "job.log").read_text(encoding="utf-8").endswith(
        "[backsplit error] no model\n")


def test_slurm_client_words_each_failure():
    """The SLURM client shared by the study and the training panel (runtime/slurm.py); the real commands run in
    test_study_run.py (a single-node SLURM)."""
    import subprocess

    from backsplit.errors import BackSplitError
    from backsplit.runtime.slurm import SlurmClient

    replies = {"sbatch": (0, "77;cluster\n", ""), "squeue": (1, "", "slurm_load_jobs error: Invalid job id specified"),
               "sacct": (1, "", "accounting off"), "scancel": (1, "", "already gone")}
    calls = []

    def run(args, **kwargs):
        calls.append(args)
        code, out, err = replies[args[0]]
        return subprocess.CompletedProcess(args, code, out, err)

    client = SlurmClient(run, missing="install SLURM here")
    assert client.submit("job.sh") == "77" and calls[0] == ["sbatch", "--parsable", "job.sh"]
    assert client.queued("77") == {} and client.accounting("77") == {}
    client.cancel("77")
    assert calls[-1] == ["scancel", "77"]
    replies["sbatch"] = (1, "", "invalid partition")
    with pytest.raises(BackSplitError, match=r"sbatch --parsable job.sh failed \(exit 1\): invalid partition"):
        client.submit("job.sh")

    def missing(args, **kwargs):
        raise FileNotFoundError(args[0])

    with pytest.raises(BackSplitError, match="'squeue' was not found: install SLURM here"):
        SlurmClient(missing, missing="install SLURM here").queued("1")
