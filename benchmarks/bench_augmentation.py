"""Augmentation cost of a BackSplit vs a binary segmentation on a CPU (prints numbers; no assertions).

nnU-Net's training augmentation (its own ``get_training_transforms``, 2d settings as for the demo) applied to the same
image patches with a segmentation of the BackSplit dataset (background, target and two support classes) and with the
binary twin's segmentation (the support classes folded into background). The spatial transform resamples the
segmentation one label at a time, so more labels could cost more; with ``nnUNet_n_proc_DA=0`` (fastest on few cores)
augmentation runs in the training process. Compare the difference with the seconds per training iteration.

    python benchmarks/bench_augmentation.py               # demo-like 2d patches (56 x 72), batch 58
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patch", type=int, nargs=2, default=[56, 72])
    parser.add_argument("--batch", type=int, default=58)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(2)
    patch = tuple(args.patch)
    transforms = nnUNetTrainer.get_training_transforms(
        patch, (-np.pi, np.pi), [[1, 1], [0.5, 0.5], [0.25, 0.25], [0.125, 0.125]], (0, 1), False,
        use_mask_for_norm=[False], foreground_labels=[1, 2, 3])
    rng = np.random.default_rng(0)
    # input patches are larger than the patch (nnU-Net crops them after rotation); 4 classes in blobs
    shape = tuple(int(s * 1.4) for s in patch)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    seg4 = np.zeros(shape, np.int16)
    seg4[(yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape) / 3) ** 2] = 3       # host organ
    seg4[(yy - shape[0] / 3) ** 2 + (xx - shape[1] / 2.5) ** 2 < (min(shape) / 8) ** 2] = 2     # neighbour
    seg4[(yy - shape[0] / 2) ** 2 + (xx - shape[1] / 1.8) ** 2 < (min(shape) / 10) ** 2] = 1    # lesion
    seg2 = (seg4 == 1).astype(np.int16)
    images = [torch.from_numpy(rng.normal(0, 1, (1, *shape)).astype(np.float32)) for _ in range(args.batch)]

    def run(seg):
        torch.manual_seed(0)
        started = time.perf_counter()
        for image in images:
            transforms(image=image.clone(), segmentation=torch.from_numpy(seg[None].copy()))
        return time.perf_counter() - started

    times = {"backsplit": [], "binary": []}
    run(seg4)  # warm-up
    for _ in range(args.repeats):
        times["binary"].append(run(seg2))
        times["backsplit"].append(run(seg4))
    bs, bn = statistics.median(times["backsplit"]), statistics.median(times["binary"])
    print(f"augmentation of {args.batch} patches {patch[0]}x{patch[1]} (nnU-Net's 2d training transforms), "
          f"medians of {args.repeats}:")
    print(f"  BackSplit segmentation (4 labels): {bs:.3f} s per batch")
    print(f"  binary segmentation (2 labels):    {bn:.3f} s per batch")
    print(f"  difference {bs - bn:.3f} s per iteration; ratio {bs / bn:.3f}")


if __name__ == "__main__":
    main()
