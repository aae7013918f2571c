"""Long work a user can watch: tile progress inside a case, the up-front estimate (recorded next to the real time),
quiet output on real tiny runs, the terminal bar, compact probability maps. Real nnU-Net runs on the CPU with the
tiny models of fixtures_nnunet; nothing is mocked."""

import io
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case
from fixtures_nnunet import TINY_SHAPE

from backsplit.io.geometry import Geometry
from backsplit.runtime.progress import Eta, ProgressEvent, TextProgressBar

NOISE = ("perform_everything_on_device", "hiddenlayer", "Please cite", "nnU-Net", "Warning", "warn(")


def test_bar_in_place_on_a_terminal_and_sparse_lines_otherwise():
    ticks = iter(range(0, 10_000))
    events = [ProgressEvent("predict", "case a", i, 200, {"seconds_left": 200 - i}) for i in range(201)]
    plain = io.StringIO()
    bar = TextProgressBar(plain, tty=False, step=0.1, interval=1e9, clock=lambda: float(next(ticks)))
    for event in events + [ProgressEvent("done", "finished")]:
        bar(event)
        bar(event)                                        # the same event twice: never printed twice
    lines = plain.getvalue().splitlines()
    assert 10 <= len(lines) <= 13                         # every 10 %, the end, the final message
    assert "about 3 min 20 s left" in lines[0] and lines[-2].startswith("[" + "#" * 30 + "] 100%")
    assert len(lines) == len(set(lines))
    screen = io.StringIO()
    bar = TextProgressBar(screen, tty=True)
    for event in events[:3] + [ProgressEvent("estimate", "about 5 min"), events[-1]]:
        bar(event)
    text = screen.getvalue()
    assert text.count("\n") == 2 and text.count("\r") >= 3   # in place; the estimate and the end on own lines
    eta, now = Eta(clock=lambda: now), 0.0
    assert eta.update(0.0) is None
    now = 10.0
    assert eta.update(0.25) == pytest.approx(30.0)


def test_oriented_shape_matches_the_reorientation_prediction_applies():
    from backsplit.inference.tiles import oriented_shape

    a = np.deg2rad(20)
    direction = np.array([[0, 0, -1], [np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]])   # columns: i, j, k
    image = sitk.Image([7, 9, 11], sitk.sitkUInt8)
    image.SetSpacing((0.5, 0.8, 2.0))
    image.SetDirection(direction.ravel().tolist())
    oriented = sitk.DICOMOrient(image, "LPS")
    shape = oriented_shape(image.GetSize(), image.GetSpacing(), image.GetDirection(), "LPS")
    assert shape.size_zyx == tuple(oriented.GetSize()[::-1])
    assert shape.spacing_zyx == pytest.approx(oriented.GetSpacing()[::-1])


def _write(case, path):
    sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(path))
    return path


def test_prediction_reports_tiles_reaches_100_and_records_its_estimate(tiny_model_dir, tmp_path):
    from backsplit.inference.files import InputCase, predict_files

    big = make_case("big", shape=(24, 40, 48), seed=7)                    # more tiles than the tiny cases
    small = make_case("small", shape=TINY_SHAPE, seed=8)
    inputs = [InputCase("big", [_write(big, tmp_path / "big.nii.gz")]),
              InputCase("small", [_write(small, tmp_path / "small.nii.gz")])]
    events = []
    predict_files(tiny_model_dir, inputs, tmp_path / "out", device="cpu", use_mirroring=True, probabilities=True,
                  progress=events.append)
    estimates = [e for e in events if e.stage == "estimate"]
    assert len(estimates) == 1 and estimates[0].data["seconds"] > 0 and "expected prediction time" in \
        estimates[0].message
    tiles = [e for e in events if e.stage == "predict" and e.data.get("phase") == "network"]
    per_case = {case: [e.data["tiles_done"] for e in tiles if e.data["case"] == case] for case in ("big", "small")}
    assert per_case["big"] and per_case["small"]
    assert per_case["big"] == sorted(per_case["big"])
    fractions = [e.fraction for e in events if e.stage == "predict" and e.fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0   # never back, ends at 100 %
    assert any(e.data.get("seconds_left") is not None for e in tiles)
    record = json.loads((tmp_path / "out" / "prediction_run.json").read_text(encoding="utf-8"))
    assert record["estimate"]["seconds"] == pytest.approx(estimates[0].data["seconds"])
    assert record["actual_s"] > 0
    assert record["tiles"] == estimates[0].data["details"]["tiles"]  # the header arithmetic = nnU-Net's count
    done = [e for e in events if e.data.get("phase") == "case done"]
    assert [e.data["case"] for e in done] == ["big", "small"] and all("seconds" in e.data for e in done)


def test_probability_map_round_trips_within_the_stated_precision(tmp_path):
    import nibabel

    from backsplit.inference.probability import DESCRIPTION, PRECISION, read_probability_map, write_probability_map

    rng = np.random.default_rng(0)
    probability = rng.random((6, 7, 8)).astype(np.float32)
    probability[0, 0, :3] = [0.0, 1.0, 0.5]
    a = np.deg2rad(30)
    geometry = Geometry.create((0.7, 0.8, 2.5), (10, -5, 3), [np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0,
                                                               0, 1], probability.shape)
    path = write_probability_map(probability, geometry, tmp_path / "p.nii.gz")
    back = read_probability_map(path)
    assert back.dtype == np.float32 and np.abs(back - probability).max() <= PRECISION + 1e-6
    image = sitk.ReadImage(str(path))
    assert np.allclose(image.GetDirection(), geometry.to_sitk(probability).GetDirection())
    assert np.allclose(image.GetOrigin(), geometry.origin) and np.allclose(image.GetSpacing(), geometry.spacing)
    header = nibabel.load(str(path)).header
    assert header.get_data_dtype() == np.uint8 and header["descrip"].tobytes().rstrip(b"\0") == DESCRIPTION
    assert not list(tmp_path.glob(".*"))                                   # no partial files left


def test_training_estimate_is_produced_and_recorded(tiny_training):
    options, process, events, models = tiny_training
    estimates = [e for e in events if e.stage == "estimate"]
    assert estimates and estimates[0].data["seconds"] > 0 and "expected training time" in estimates[0].message
    manifest = json.loads((models[0] / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["estimate"]["estimated_s"] > 0 and manifest["estimate"]["actual_s"] > 0
    assert process.estimate is not None
    cases = [e for e in events if e.stage == "preprocess" and e.data.get("phase") == "cases"]
    assert cases and cases[-1].data["cases_done"] == cases[-1].data["cases"] == 5      # per case, to the end
    for dataset in {e.message.split(":")[0] for e in cases}:     # the BackSplit dataset and its binary twin
        fractions = [e.fraction for e in cases if e.message.startswith(dataset + ":")]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_folder_progress_counts_cases_as_they_are_written(tmp_path):
    from backsplit.training.case_counter import FolderProgress

    calls = []
    with FolderProgress(tmp_path, "*.pkl", 3, lambda done, total: calls.append((done, total)), interval=0.01):
        for name in ("a", "b", "c"):
            (tmp_path / f"{name}.b2nd").write_bytes(b"")
            (tmp_path / f"{name}.pkl").write_bytes(b"")
    assert calls[-1] == (3, 3) and calls == sorted(set(calls))


def test_prediction_command_line_is_quiet_and_logs_aside(tiny_model_dir, tmp_path):
    case = make_case("quiet", shape=TINY_SHAPE, seed=9)
    _write(case, tmp_path / "quiet.nii.gz")
    result = subprocess.run([sys.executable, "-m", "backsplit", "predict", str(tiny_model_dir),
                             str(tmp_path / "quiet.nii.gz"), "--out", str(tmp_path / "out"), "--device", "cpu",
                             "--probabilities"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith("case") and "quiet" in result.stdout
    for line in result.stderr.splitlines():                    # only BackSplit's own lines on the terminal
        assert line.startswith(("[", "estimate:", "warning:")), line
    assert not any(word in result.stdout + result.stderr for word in NOISE)
    assert (tmp_path / "out" / "backsplit.log").is_file()


def test_training_command_line_is_quiet_without_duplicates(tiny_dataset, tiny_training, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(tiny_training[0].work_dir / "nnUNet_preprocessed", work / "nnUNet_preprocessed")  # no planning
    result = subprocess.run([sys.executable, "-m", "backsplit", "train", str(tiny_dataset.dataset_dir), "--work-dir",
                             str(work), "--epochs", "1", "--iterations-per-epoch", "4", "--val-iterations", "1",
                             "--device", "cpu", "--fold", "all", "--seed", "1"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert not any(word in result.stdout + result.stderr for word in NOISE)
    assert all(a != b for a, b in zip(lines, lines[1:])), lines       # no line twice in a row
    assert any(line.startswith("estimate: expected training time") for line in lines)
    logs = list((work / "jobs").glob("train-*.log"))
    assert logs and "Please cite" in logs[0].read_text(encoding="utf-8")             # nnU-Net's banner went to the log


def test_third_party_output_goes_to_the_log_even_from_c_code(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, warnings
        from backsplit.runtime.quiet import ThirdPartyOutput
        from backsplit.runtime.progress import ProgressEvent, TextProgressBar
        output = ThirdPartyOutput({str(tmp_path / 'run.log')!r})
        bar = TextProgressBar(output.console())
        with output:
            print("python print")
            os.write(1, b"c-level stdout\\n")
            os.write(2, b"c-level stderr\\n")
            warnings.warn("a torch-like warning")
            bar(ProgressEvent("predict", "ours", 1, 2))
        print("result table")
        try:
            with ThirdPartyOutput({str(tmp_path / 'run.log')!r}):
                print("the reason it failed")
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "result table\n"
    assert "ours" in result.stderr and "the reason it failed" in result.stderr   # shown when it explains an error
    assert not any(s in result.stderr for s in ("python print", "c-level", "torch-like"))
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert all(s in log for s in ("python print", "c-level stdout", "c-level stderr", "torch-like warning"))


def test_training_clock_arithmetic():
    """Iterations of 2 s after a 5 s set-up, validation forward passes timed at 0.5 s, 2 runs of 3 epochs x (10 + 4)
    iterations: the estimate is the time so far plus the rest at that speed; large CPU jobs get the faster choices."""
    from backsplit.training.timing import TrainingClock

    now = [100.0]
    events = []
    clock = TrainingClock(events.append, epochs=3, iterations_per_epoch=10, val_iterations_per_epoch=4, runs=2,
                          configuration="3d_fullres", device="cpu", clock=lambda: now[0], job_started=40.0)
    clock.start_run()
    clock.val_iteration_s = 0.5                              # as the forward pass on the second batch measures it
    now[0] += 5.0
    for _ in range(4):                                       # iterations end at 107, 109, 111, 113
        now[0] += 2.0
        clock.step("train")
    assert [e.stage for e in events] == ["estimate"]
    details = events[0].data["details"]
    assert details["train_iteration_s"] == pytest.approx(2.0) and details["setup_s"] == pytest.approx(5.0)
    per_run = 3 * (10 * 2.0 + 4 * 0.5)
    expected = (113 - 40) + (per_run - 4 * 2.0) + (5.0 + per_run)   # so far + rest of run 1 + run 2
    assert events[0].data["seconds"] == pytest.approx(expected)
    clock.step("train")                                      # one estimate only
    now[0] += 40.0
    clock.observing(events.append)(ProgressEvent("epoch", "", 1, 3, {"epoch": 1}))
    assert events[-1].stage == "estimate" and events[-1].data["refined"]
    assert clock.record()["estimated_s"] == pytest.approx(round(expected, 1))
    assert clock.record()["refined_estimate_s"] == pytest.approx(events[-1].data["seconds"], abs=0.1)


def test_long_cpu_jobs_are_named_with_faster_choices():
    from backsplit.runtime.durations import Estimate, training_advice

    advice = training_advice(seconds=6 * 3600, cores=2, configuration="3d_fullres", batch_size=12, epochs=100,
                             iterations_per_epoch=250, val_iterations_per_epoch=50, train_iteration_s=0.7,
                             val_iteration_s=0.25)
    text = Estimate("training", 6 * 3600, "cpu", "3 iterations", advice=advice).message()
    assert "about 6 h 00 min on this CPU" in text and "long job for a CPU" in text
    assert all(choice in text for choice in ("--device cuda", "--configuration 2d", "--batch-size 3"))
    assert "long job" not in Estimate("training", 600, "cpu", "x").message()
    assert "long job" not in Estimate("training", 6 * 3600, "cuda", "x").message()


def test_heartbeat_keeps_a_slow_step_visible():
    """Reading and resampling a large case report nothing themselves: the last event is repeated, time counting down."""
    import time

    from backsplit.inference.watch import PredictionWatch

    events = []
    watch = PredictionWatch(events.append, ["big"])
    watch.estimate_s = 100.0
    with watch.heartbeat(interval=0.05):
        watch.case_started(0)
        time.sleep(0.6)
    beats = [e for e in events if e.data.get("phase") == "preprocessing"]
    assert len(beats) >= 2 and beats[-1].data["seconds_left"] < beats[0].data["seconds_left"]
