"""Cost of reading compressed inputs with their end-to-end integrity check: SimpleITK's plain read (no check), the
check alone (backsplit.io.compressed.verify_compressed) and BackSplit's checked read
(backsplit.io.imagefile.read_sitk: one
streamed decompression that checks the CRC into a temporary copy, which ITK reads), alternated, on a 512 x 512 x 300
int16 CT-like volume as .nii.gz and as a gzip-encoded .nrrd. Prints the median seconds of --repeats runs and the peak
Python memory of the check. Usage: python benchmarks/bench_input_checks.py [--repeats 3] [--shape 300 512 512]"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from backsplit.io import compressed
from backsplit.io.compressed import verify_compressed
from backsplit.io.imagefile import read_sitk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], help="z y x voxels")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z = np.arange(args.shape[0])[:, None, None]
    volume = (np.sin(z / 7.0) * 400 + rng.normal(0, 30, args.shape)).astype(np.int16)  # compressible like CT
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".nii.gz", ".nrrd"):
            path = Path(tmp) / f"ct{suffix}"
            sitk.WriteImage(sitk.GetImageFromArray(volume), str(path), True)
            verify, read, checked = [], [], []
            for _ in range(args.repeats):
                compressed._VERIFIED.clear()
                start = time.perf_counter()
                verify_compressed(path)
                verify.append(time.perf_counter() - start)
                start = time.perf_counter()
                sitk.ReadImage(str(path))
                read.append(time.perf_counter() - start)
                start = time.perf_counter()
                read_sitk(path, "image", None)
                checked.append(time.perf_counter() - start)
            compressed._VERIFIED.clear()
            tracemalloc.start()
            verify_compressed(path)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{suffix}: {path.stat().st_size / 2**20:.0f} MiB compressed, {volume.nbytes / 2**20:.0f} MiB "
                  f"voxels; SimpleITK read (unchecked) {statistics.median(read):.2f} s, check alone "
                  f"{statistics.median(verify):.2f} s, BackSplit checked read {statistics.median(checked):.2f} s "
                  f"(median of {args.repeats}); check peak memory {peak / 2**20:.1f} MiB; "
                  f"decompressor: {'isal' if compressed._fast_zlib else 'zlib'}")


if __name__ == "__main__":
    main()
