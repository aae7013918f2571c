"""Support-structure benchmarks (print numbers; no assertions).

1. ``suggest``: suggestions over N cases of 512x512x300 voxels with 10 candidate structures (a host organ, neighbours
   at known distances, far structures, one missing in some cases), generated lazily one case at a time; seconds (in
   suggest vs making the cases) and peak memory (ru_maxrss). Run two N to see memory flat in N (target: N=200 in
   < 60 s of suggest time)::

       python benchmarks/bench_supports.py suggest --cases 200
       python benchmarks/bench_supports.py suggest --cases 10

2. ``generate``: organ-model generation, seconds per case through the engine (``generate_supports`` with
   ``NnUNetModelRunner``, model loading included, writes the .seg.nrrd files) vs the same model through raw
   ``nnUNetv2_predict_from_modelfolder`` (process start included; a copy of the model whose checkpoint names the
   stock trainer). Target ratio <= 1.05::

       python benchmarks/bench_supports.py generate --model MODEL_DIR --folder CASES_DIR [--device cuda]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (300, 512, 512)  # (z, y, x)
SPACING = (2.0, 0.8, 0.8)


def lazy_cases(n: int, timer: list, with_prediction: bool = False):
    """One synthetic case at a time: target (a 'lesion' blob) and 10 candidates at known places."""
    import numpy as np

    from backsplit.supports.suggest import SuggestCase

    rng = np.random.default_rng(0)
    for i in range(n):
        started = time.perf_counter()
        cz, cy, cx = 150 + int(rng.integers(-20, 20)), 256 + int(rng.integers(-40, 40)), 256
        masks = {}

        def box(z0, z1, y0, y1, x0, x1):
            mask = np.zeros(SHAPE, bool)
            mask[max(z0, 0):z1, max(y0, 0):y1, max(x0, 0):x1] = True
            return mask

        masks["lesion"] = box(cz - 5, cz + 5, cy - 12, cy + 12, cx - 12, cx + 12)
        masks["organ"] = box(cz - 40, cz + 40, cy - 90, cy + 90, cx - 90, cx + 90)                 # host
        masks["vessel"] = box(0, 300, cy - 8, cy + 8, cx + 100, cx + 112)                         # outside host
        masks["near_1"] = box(cz + 7, cz + 9, cy - 12, cy + 12, cx - 12, cx + 12)                  # 4 mm
        masks["near_2"] = box(cz - 5, cz + 5, cy + 20, cy + 30, cx - 12, cx + 12)                  # ~7 mm
        masks["far_1"] = box(0, 40, 0, 60, 0, 60)
        masks["far_2"] = box(260, 300, 450, 512, 450, 512)
        masks["bone"] = box(0, 300, 440, 470, 230, 280)
        masks["muscle"] = box(40, 260, 20, 60, 100, 400)
        masks["fat"] = box(40, 260, 470, 500, 100, 400)
        if i % 4:
            masks["sometimes"] = box(cz - 20, cz + 20, cy - 30, cy + 30, cx + 20, cx + 40)       # missing in 1/4
        prediction = None
        if with_prediction:
            prediction = masks["lesion"].copy()
            prediction[5:8, 450:455, 240:245] = True                                             # FP in bone
        timer[0] += time.perf_counter() - started
        yield SuggestCase(f"case{i:04d}", SPACING, masks, prediction)


def bench_suggest(args) -> None:
    from backsplit.supports.suggest import SuggestOptions, format_table, suggest

    timer = [0.0]
    started = time.perf_counter()
    report = suggest(lazy_cases(args.cases, timer, args.predictions), SuggestOptions("lesion", neighbour_mm=10))
    total = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(format_table(report).splitlines()[0])
    print(f"suggest over {args.cases} cases of {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} with 10 candidates"
          f"{' and binary predictions' if args.predictions else ''}: {total - timer[0]:.1f} s in suggest "
          f"({(total - timer[0]) / args.cases:.3f} s/case), {timer[0]:.1f} s making the cases, {total:.1f} s in all; "
          f"peak memory {peak_mb:.0f} MB (one case = {11 * 512 * 512 * 300 / 2**20:.0f} MB of masks)")
    print("ranking:", ", ".join(f"{c.name} ({c.role})" for c in report.ranked))


def bench_generate(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inference import raw_predict

    from backsplit.io.readers import cases_from_folder
    from backsplit.supports.generate import GenerateRequest, generate_supports
    from backsplit.supports.runners import NnUNetModelRunner

    sources = cases_from_folder(args.folder)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = tmp / "inputs"
        inputs.mkdir()
        for source in sources:
            shutil.copy(source.images[0], inputs / f"{source.case_id}_0000.nii.gz")
        engine_times, raw_times = [], []
        for repeat in range(args.repeats):  # alternated, engine first then raw, then swapped
            order = ("engine", "raw") if repeat % 2 == 0 else ("raw", "engine")
            for kind in order:
                if kind == "engine":
                    started = time.perf_counter()
                    runner = NnUNetModelRunner(args.model, device=args.device)
                    generate_supports(sources, runner, GenerateRequest(tmp / f"engine{repeat}"))
                    engine_times.append(time.perf_counter() - started)
                else:
                    raw_times.append(raw_predict(args.model, inputs, tmp / f"raw{repeat}", args.device, tmp))
        import statistics

        engine, raw = statistics.median(engine_times), statistics.median(raw_times)
        n = len(sources)
        runs = {k: ", ".join(f"{t:.1f}" for t in v) for k, v in (("engine", engine_times), ("raw", raw_times))}
        print(f"{n} cases, device {args.device}: engine {engine / n:.2f} s/case (runs {runs['engine']} s), "
              f"raw nnUNetv2_predict_from_modelfolder {raw / n:.2f} s/case (runs {runs['raw']} s)")
        print(f"engine / raw ratio (medians of {args.repeats}): {engine / raw:.3f}  (target <= 1.05; the engine also "
              "writes .seg.nrrd files with the user's segments; raw includes its process start)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("suggest")
    s.add_argument("--cases", type=int, default=200)
    s.add_argument("--predictions", action="store_true", help="also count false-positive lesions of a binary model")
    g = sub.add_parser("generate")
    g.add_argument("--model", type=Path, required=True)
    g.add_argument("--folder", type=Path, required=True, help="case folder (<case>.nii.gz + <case>.seg.nrrd)")
    g.add_argument("--device", default="cpu")
    g.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bench_suggest(args) if args.what == "suggest" else bench_generate(args)


if __name__ == "__main__":
    main()
