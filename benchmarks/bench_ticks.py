"""How long the panel's timer ticks block the GUI thread, on a 512x512x300 case (slicer-core scene, no Qt).

Times every call of the step functions the panels drive from their timers:
- export, before (``--export one-shot``): the engine's ``iter_export`` stepped on the GUI thread as the panel did up
  to this change, each case in one tick (read from the scene with one ``ExportSegmentsToLabelmapNode`` per segment,
  checked, composed, written), then the finishing steps;
- export, after (``--export stepwise``): ``ExportRun.step`` (the engine runs in a child process; each tick reads one
  slab of a volume or segment labelmap from the scene, writes one slab of it for the child, or looks at the child's
  progress). Also printed: how late the GUI thread woke up from its 10 ms timer sleep (waiting for a CPU);
- prediction import (``PredictionFinish.step``): from files of a 512x512x300 prediction with 3 classes and a
  probability map (the child process is not run: its output files and scene arrays are made here, its job object
  is a stand-in).

Prints each step's duration and the longest tick per group. The goal is <= ~100 ms per tick. The case has 5
segments (drawn on the volume's grid, as the Segment Editor makes them); ``--other-grid`` draws them on a grid of
another spacing, which Slicer must resample (one ``ExportSegmentsToLabelmapNode`` tick per segment).

    python benchmarks/bench_ticks.py                        # 512 x 512 x 300, export before and after, import
    python benchmarks/bench_ticks.py --shape 300 256 256 --export stepwise --no-import
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "Testing"), str(REPO / "BackSplitSegment")]


def timed(step):
    """(result, wall ms); the GUI thread's own CPU ms of the call is kept for ``cpu_ms`` (wall minus CPU: waiting
    for a core or for the GIL; on a loaded machine most of it is waiting for a core)."""
    started, cpu = time.perf_counter(), time.thread_time()
    result = step()
    global LAST_CPU_MS
    LAST_CPU_MS = 1000 * (time.thread_time() - cpu)
    return result, 1000 * (time.perf_counter() - started)


LAST_CPU_MS = 0.0


def volume_and_masks(shape, count=3):
    import numpy as np

    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c = np.array(shape) / 2
    image = (40 + 30 * np.sin(x / 17.0) * np.cos(y / 23.0) + 0 * z).astype(np.int16)
    image = np.broadcast_to(image, shape).copy()

    def ellipsoid(centre, radii):
        return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
               ((x - centre[2]) / radii[2]) ** 2 <= 1

    masks = {"lesion": ellipsoid(c, c * 0.08), "organ": ellipsoid(c, c * 0.6),
             "vessel": ellipsoid(c + [0, 20, 0], [shape[0] / 2, 10, 10]),
             "kidney": ellipsoid(c + [0, 0, shape[2] / 4], c * [0.3, 0.2, 0.15]),
             "bone": ellipsoid(c - [0, shape[1] / 3, 0], c * [0.9, 0.1, 0.5])}
    return image, dict(list(masks.items())[:count])


def export_scene(made, shape, other_grid: bool):
    """(volume, segmentation) of 5 segments; on the volume's grid, or drawn on a grid of 1.5x the spacing."""
    import numpy as np
    from fixtures_slicer import add_segmentation, add_volume

    image, masks = volume_and_masks(shape, 5)
    volume = add_volume(made.slicer, image, np.eye(4), "CT")
    reference = volume
    if other_grid:
        coarse = tuple(int(n / 1.5) for n in shape)
        reference = add_volume(made.slicer, np.zeros(coarse, np.int16), np.diag([1.5, 1.5, 1.5, 1.0]), "coarse")
        masks = {name: mask[::3, ::3, ::3].repeat(2, 0).repeat(2, 1).repeat(2, 2)[:coarse[0], :coarse[1], :coarse[2]]
                 for name, mask in masks.items()}
    segmentation = add_segmentation(made.slicer, made.scene, masks, reference)
    return volume, segmentation


def export_request(out: Path):
    from backsplit.datasets.export import ExportRequest

    return ExportRequest(out, 601, "Ticks", ["lesion"], ["organ", "vessel", "kidney", "bone"])


def bench_export_one_shot(volume, segmentation, out: Path) -> list:
    """Before: the engine's generator stepped on the GUI thread, one whole case per tick (what ExportRun did)."""
    from backsplit.datasets.export import iter_export
    from BackSplitSegmentLib.scene_cases import SceneCase

    events = iter_export([SceneCase("case0", volume, segmentation).source()], export_request(out))
    ticks = []
    while True:
        try:
            event, ms = timed(lambda: next(events))
        except StopIteration:
            return ticks
        kind = "one-shot case" if event.message.startswith("wrote case") else "one-shot finishing"
        ticks.append((kind, event.message.splitlines()[0][:60], ms, LAST_CPU_MS))
        ticks.append(("one-shot timer wake-up", "late wake-up after the 10 ms sleep", sleep_late_ms(), 0.0))


STALLS: list = []   # (ms, where the export thread was) for polling ticks over 150 ms


def worker_at(run) -> str:
    """The export thread's innermost frames right after a long tick (where it held the GIL, or ran meanwhile)."""
    import traceback

    thread = getattr(run, "_thread", None)   # gone since the export runs in a child process (ExportRun)
    frame = sys._current_frames().get(thread.ident) if thread is not None else None
    if frame is None:
        return "(no export thread in this process)"
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in
                       reversed(traceback.extract_stack(frame)[-3:]))


def sleep_late_ms(interval: float = 0.01) -> float:
    """The panel's timer interval; how much later than asked the GUI thread runs again (GIL or CPU)."""
    started = time.perf_counter()
    time.sleep(interval)
    return 1000 * (time.perf_counter() - started - interval)


def bench_export(volume, segmentation, out: Path) -> list:
    """After: ``ExportRun.step`` as the panel's 10 ms timer drives it."""
    from BackSplitSegmentLib.export_run import ExportRun
    from BackSplitSegmentLib.scene_cases import SceneCase

    run = ExportRun([SceneCase("case0", volume, segmentation).source()], export_request(out))
    ticks = []
    while True:
        step, ms = timed(run.step)
        message = step.message.splitlines()[0][:60]
        kind = "reading" if message.startswith(("reading case", "handing case")) else "finishing" \
            if message.startswith("finishing") else "worker poll"
        ticks.append((kind, message, ms, LAST_CPU_MS))
        if ms > 150 and kind == "worker poll":
            STALLS.append((ms, worker_at(run)))
        if step.done:
            assert step.state == "finished", step.message
            return ticks
        ticks.append(("timer wake-up", "late wake-up after the 10 ms sleep", sleep_late_ms(), 0.0))


def bench_prediction_import(made, shape, out: Path) -> list:
    import numpy as np
    import SimpleITK as sitk

    from backsplit.labels.schema import LabelSchema
    from BackSplitSegmentLib.prediction_run import PredictionFinish
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    image, masks = volume_and_masks(shape)
    volume = made.slicer.util.addVolumeFromArray(image, np.eye(4), name="input")
    geometry = volume_geometry(volume)
    labels = np.zeros(shape, np.uint8)
    labels[masks["organ"]] = 3
    labels[masks["vessel"]] = 2
    labels[masks["lesion"]] = 1
    probability = np.where(masks["lesion"], 0.9, 0.02).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(geometry.to_sitk(labels), str(out / "input.nii.gz"), True)
    sitk.WriteImage(geometry.to_sitk(probability), str(out / "input_lesion_probability.nii.gz"), True)
    schema = LabelSchema.create(["Lesion"], ["Vessel", "Organ"])
    from backsplit.inference.scenearrays import write_scene_arrays

    started = time.perf_counter()   # the prediction child's last step (not on the GUI thread): timed, not a tick
    write_scene_arrays(out, "input", len(schema.classes))
    print(f"prediction child: scene arrays written in {time.perf_counter() - started:.2f} s (not a GUI tick)")
    job = types.SimpleNamespace(   # stands in for a finished PredictionProcess (its child is not what is timed)
        cancelled=False, returncode=0, error=None, log_lines=[], summaries=[{"lesion_count": 1}],
        request=types.SimpleNamespace(out_dir=str(out)), lesion_only=False, work_dir=out / "not-there",
        model_info=types.SimpleNamespace(schema=schema, variant="backsplit"), poll_events=lambda: [])
    finish = PredictionFinish(job, volume)
    ticks = []
    while True:
        (done, ms) = timed(finish.step)
        ticks.append(("import", finish.phase, ms, LAST_CPU_MS))
        if done:
            assert finish.outcome is not None
            return ticks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], metavar=("K", "J", "I"),
                        help="volume size in voxels, slices first (default: 300 512 512)")
    parser.add_argument("--export", choices=("both", "one-shot", "stepwise", "none"), default="both",
                        help="which case export to time: one-shot (before), stepwise (after), both (default), none")
    parser.add_argument("--other-grid", action="store_true",
                        help="segments drawn on a grid of 1.5x the volume's spacing (Slicer resamples them); "
                             "default: on the volume's grid")
    parser.add_argument("--no-import", action="store_true", help="skip the prediction import (default: timed)")
    args = parser.parse_args(argv)
    from fixtures_slicer import make_scene

    shape = tuple(args.shape)
    made, restore = make_scene()
    ticks, walls = [], {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.export != "none":
                volume, segmentation = export_scene(made, shape, args.other_grid)
                if args.export in ("both", "one-shot"):
                    started = time.perf_counter()
                    ticks += bench_export_one_shot(volume, segmentation, Path(tmp) / "one-shot")
                    walls["one-shot export"] = time.perf_counter() - started
                if args.export in ("both", "stepwise"):
                    started = time.perf_counter()
                    ticks += bench_export(volume, segmentation, Path(tmp) / "stepwise")
                    walls["stepwise export"] = time.perf_counter() - started
            if not args.no_import:
                ticks += bench_prediction_import(made, shape, Path(tmp) / "prediction")
    finally:
        restore()
    print(f"volume {shape[2]} x {shape[1]} x {shape[0]} voxels (i x j x k), 5 segments "
          f"{'on another grid' if args.other_grid else 'on the volume grid'}")
    groups = []                                   # consecutive ticks with the same message, printed once
    for kind, what, ms, cpu in ticks:
        if groups and groups[-1][:2] == [kind, what]:
            groups[-1][2].append(ms)
            groups[-1][3].append(cpu)
        elif not kind.endswith("wake-up"):
            groups.append([kind, what, [ms], [cpu]])
    print("  group              longest tick: wall ms (GUI-thread CPU ms)  step")
    for kind, what, durations, cpus in groups:
        count = f" (x{len(durations)}, longest)" if len(durations) > 1 else ""
        print(f"  {kind:<18} {max(durations):8.1f} ms ({max(cpus):7.1f})  {what}{count}")
    kinds = []
    for kind, *_ in ticks:
        if kind not in kinds:
            kinds.append(kind)
    for kind in kinds:
        durations = sorted(ms for k, _, ms, _ in ticks if k == kind)
        cpus = [cpu for k, _, _, cpu in ticks if k == kind]
        cpu_text = "" if kind.endswith("wake-up") else f", GUI-thread CPU longest {max(cpus):7.1f} ms"
        print(f"max tick {kind:<24}: {durations[-1]:8.1f} ms wall (median {durations[len(durations) // 2]:6.1f})"
              f"{cpu_text} over {len(durations)} tick(s)")
    for ms, where in STALLS:
        print(f"long polling tick {ms:8.1f} ms; the export thread was then at {where}")
    for what, seconds in walls.items():
        print(f"wall time {what:<23}: {seconds:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
