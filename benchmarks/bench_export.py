"""Export benchmark: N synthetic cases of 512x512x300 with 5 overlapping segments, CT-like int16 image.

Prints cases per second (including .nii.gz compression of image, BackSplit labels and binary labels) and the peak
memory (max RSS) of the exporting process, for each N. Each N runs in a fresh child process so that its peak memory
is its own. Targets on 2 cores: >= 1 case/s, peak memory that does not grow with N (<= 2 GB).

    python benchmarks/bench_export.py            # N = 2 and N = 20
    python benchmarks/bench_export.py --n 2 --shape 128 128 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_base(shape):
    import numpy as np

    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    image = (40 + 30 * np.sin(x / 17.0) * np.cos(y / 23.0) + 0 * z).astype(np.int16)
    image = np.broadcast_to(image, shape).copy()
    image[:, :, ::7] += 12  # some texture
    c = np.array(shape) / 2

    def ellipsoid(centre, radii):
        return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
               ((x - centre[2]) / radii[2]) ** 2 <= 1

    organ = ellipsoid(c, c * 0.6)
    segments = {
        "lesion": ellipsoid(c, c * 0.08),
        "organ": organ,                                   # contains the lesion
        "vessel": ellipsoid(c + [0, 20, 0], [shape[0] / 2, 10, 10]),  # crosses the organ
        "neighbour": ellipsoid(c + [0, 0, c[2] * 0.5], c * 0.3),      # overlaps the organ
        "body": ellipsoid(c, c * 0.95),                   # contains everything
    }
    image[organ] += 100
    return image, segments


def run_one(n: int, shape, context: str = "none") -> dict:
    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.io.cases import Case, LazyCaseSource
    from backsplit.io.geometry import Geometry
    from backsplit.labels.context import ContextSpec

    image, segments = make_base(shape)
    geometry = Geometry.create((0.8, 0.8, 1.5), (0, 0, 0), None, shape)
    sources = [LazyCaseSource(f"case{i:03d}", (lambda i=i: Case(f"case{i:03d}", [image], geometry, segments)))
               for i in range(n)]
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        request = ExportRequest(Path(tmp), 900, "Bench", ["lesion"], ["vessel", "neighbour", "organ", "body"],
                                context=ContextSpec.parse(context))
        start = time.perf_counter()
        export_dataset(sources, request)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.nii.gz"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "seconds": seconds, "cases_per_s": n / seconds, "peak_rss_mb": peak_mb,
            "written_mb": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300], metavar=("X", "Y", "Z"))
    parser.add_argument("--context", default="none", help="generated context classes too, e.g. rings:5,15 or kmeans:2")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(args.shape[::-1])
    if args.child:
        print(json.dumps(run_one(args.n[0], shape, args.context)))
        return
    print(f"export benchmark: {args.shape[0]}x{args.shape[1]}x{args.shape[2]} int16, 5 overlapping segments, "
          f"BackSplit + binary twin, .nii.gz, generated context: {args.context}")
    for n in args.n:
        out = subprocess.run([sys.executable, __file__, "--child", "--n", str(n), "--context", args.context,
                              "--shape", *map(str, args.shape)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"N={r['n']:3d}: {r['seconds']:7.1f} s  {r['cases_per_s']:.2f} cases/s  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB  written {r['written_mb']:.0f} MB")


if __name__ == "__main__":
    main()
