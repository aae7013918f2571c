"""How long the panel's timer ticks block the GUI thread, on a 512x512x300 case (slicer-core scene, no Qt).

Times every call of the step functions the panels drive from their timers:
- export (``ExportRun.step``): the case steps (one whole case each: read from the scene, check, write) and the
  finishing steps (compression of the last files, dataset.json, version stamp, moves);
- prediction import (``PredictionFinish.step``): from files of a 512x512x300 prediction with 3 classes and a
  probability map (the child process is not run: its output files are made here, its job object is a stand-in).

Prints each step's duration and the longest tick per group. The goal is <= ~100 ms per tick for the finishing and
import steps; a case step is one whole case by design (Slicer's export of its segments cannot be split).

    python benchmarks/bench_ticks.py                 # 512 x 512 x 300
    python benchmarks/bench_ticks.py --shape 300 256 256
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
    started = time.perf_counter()
    result = step()
    return result, 1000 * (time.perf_counter() - started)


def volume_and_masks(shape):
    import numpy as np

    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c = np.array(shape) / 2
    image = (40 + 30 * np.sin(x / 17.0) * np.cos(y / 23.0) + 0 * z).astype(np.int16)
    image = np.broadcast_to(image, shape).copy()

    def ellipsoid(centre, radii):
        return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
               ((x - centre[2]) / radii[2]) ** 2 <= 1

    masks = {"lesion": ellipsoid(c, c * 0.08), "organ": ellipsoid(c, c * 0.6),
             "vessel": ellipsoid(c + [0, 20, 0], [shape[0] / 2, 10, 10])}
    return image, masks


def bench_export(made, shape, out: Path) -> list:
    from fixtures_slicer import add_segmentation, add_volume

    from backsplit.export import ExportRequest
    from BackSplitSegmentLib.export_run import ExportRun
    from BackSplitSegmentLib.scene_cases import SceneCase

    import numpy as np

    image, masks = volume_and_masks(shape)
    volume = add_volume(made.slicer, image, np.eye(4), "CT")
    segmentation = add_segmentation(made.slicer, made.scene, masks, volume)
    run = ExportRun([SceneCase("case0", volume, segmentation).source()],
                    ExportRequest(out, 601, "Ticks", ["lesion"], ["organ", "vessel"]))
    ticks = []
    while True:
        step, ms = timed(run.step)
        kind = "case" if step.message.startswith("wrote case") else "finishing"
        ticks.append((kind, step.message.splitlines()[0][:60], ms))
        if step.done:
            assert step.state == "finished", step.message
            return ticks
        time.sleep(0.01)   # the panel's timer interval: the compression threads run meanwhile


def bench_prediction_import(made, shape, out: Path) -> list:
    import numpy as np
    import SimpleITK as sitk

    from backsplit.schema import LabelSchema
    from BackSplitSegmentLib.prediction_run import PredictionFinish
    from BackSplitSegmentLib.scene_cases import volume_geometry

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
    job = types.SimpleNamespace(   # stands in for a finished PredictionProcess (its child is not what is timed)
        cancelled=False, returncode=0, error=None, log_lines=[], summaries=[{"lesion_count": 1}],
        request=types.SimpleNamespace(out_dir=str(out)), lesion_only=False, work_dir=out / "not-there",
        model_info=types.SimpleNamespace(schema=schema, variant="backsplit"), poll_events=lambda: [])
    finish = PredictionFinish(job, volume)
    ticks = []
    while True:
        (done, ms) = timed(finish.step)
        ticks.append(("import", finish.phase, ms))
        if done:
            assert finish.outcome is not None
            return ticks
        time.sleep(0.01)   # the panel's timer interval: the reading thread runs meanwhile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], metavar=("K", "J", "I"),
                        help="volume size in voxels, slices first (default: 300 512 512)")
    args = parser.parse_args(argv)
    from fixtures_slicer import make_scene

    shape = tuple(args.shape)
    made, restore = make_scene()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ticks = bench_export(made, shape, Path(tmp) / "raw")
            ticks += bench_prediction_import(made, shape, Path(tmp) / "prediction")
    finally:
        restore()
    print(f"volume {shape[2]} x {shape[1]} x {shape[0]} voxels (i x j x k)")
    groups = []                                   # consecutive ticks with the same message, printed once
    for kind, what, ms in ticks:
        if groups and groups[-1][:2] == [kind, what]:
            groups[-1][2].append(ms)
        else:
            groups.append([kind, what, [ms]])
    for kind, what, durations in groups:
        count = f" (x{len(durations)}, longest)" if len(durations) > 1 else ""
        print(f"  {kind:<9} {max(durations):8.1f} ms  {what}{count}")
    for kind in ("case", "finishing", "import"):
        durations = [ms for k, _, ms in ticks if k == kind]
        if durations:
            print(f"max tick {kind:<9}: {max(durations):8.1f} ms over {len(durations)} tick(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
