"""Estimate a prediction's duration before it starts, in seconds of timing on the chosen device.

Two measurements: the network on a few tiles of the plans' patch size (``tiles.seconds_per_tile``, mirrored as
configured; without mirroring a tile is that over its 2^axes network passes), and the per-voxel work around it
(nnU-Net's resampling to the model's spacing and back, the softmax, writing a compressed file) on a small synthetic
block with the first case's spacing. Tile counts come from the image headers (``tiles.tile_count``), so nothing is
read in full before the estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from backsplit.inference.tiles import CaseShape, case_shape_from_header, seconds_per_tile, tile_count
from backsplit.runtime.devices import usable_cpu_count
from backsplit.runtime.durations import Estimate, prediction_advice, prediction_seconds

CALIBRATION_BLOCK = (16, 96, 96)    # (z, y, x) voxels of the synthetic block timed for the per-voxel work
CASE_OVERHEAD_S = 0.3               # per case: reading headers, summary, label table (measured < 0.3 s here)


@dataclass
class PredictionPlan:
    estimate: Estimate
    tiles_per_case: list          # tiles of each case, all folds together (None where a header could not be read)
    shapes: list                  # CaseShape per case (None where unknown)


def plan_prediction(predictor, info, inputs: Sequence, use_mirroring: bool, device: str,
                    job_started: Optional[float] = None) -> PredictionPlan:
    """Tile counts of all cases and the expected duration (see the module docstring) from ``job_started``
    (``time.time()``; default: now), so that loading the model counts too."""
    started = time.time() if job_started is None else job_started
    plans = predictor.plans_manager.plans
    code = info.manifest.get("training_orientation")
    n_models = len(predictor.list_of_parameters)
    shapes, tiles = [], []
    for case in inputs:
        try:
            shape = case_shape_from_header(case.images[0], code)
            shapes.append(shape)
            tiles.append(tile_count(shape, plans, info.configuration, predictor.tile_step_size) * n_models)
        except Exception:  # noqa: BLE001 - an unreadable header is reported by the prediction itself
            shapes.append(None)
            tiles.append(None)
    known = [t for t in tiles if t is not None]
    mean_tiles = float(np.mean(known)) if known else 1.0
    tiles = [t if t is not None else int(round(mean_tiles)) for t in tiles]
    n_channels = len(info.channel_names)
    tile_s = seconds_per_tile(predictor, n_channels)
    no_mirror_s = None
    if use_mirroring and predictor.allowed_mirroring_axes:   # a mirrored tile is 2^axes network passes
        no_mirror_s = tile_s / 2 ** len(predictor.allowed_mirroring_axes)
    first = next((s for s in shapes if s is not None), None)
    voxel_s = seconds_per_voxel(predictor, first) if first is not None else 0.0
    voxels = sum(int(np.prod(s.size_zyx)) if s is not None else 0 for s in shapes)
    common = dict(voxels=voxels, voxel_overhead_s=voxel_s, cases=len(inputs), case_overhead_s=CASE_OVERHEAD_S)
    probe_s = time.time() - started
    seconds = prediction_seconds(tiles=sum(tiles), tile_s=tile_s, **common) + probe_s
    without = prediction_seconds(tiles=sum(tiles), tile_s=no_mirror_s, **common) + probe_s \
        if no_mirror_s is not None else None
    cores = usable_cpu_count()
    estimate = Estimate(
        "prediction", seconds, predictor.device.type,
        f"network tiles of {list(predictor.configuration_manager.patch_size)} voxels "
        f"({tile_s:.2f} s each{', mirrored' if use_mirroring and predictor.allowed_mirroring_axes else ''}) x "
        f"{sum(tiles)} tiles in {len(inputs)} case(s)",
        {"tile_s": tile_s, "tile_without_mirroring_s": no_mirror_s, "tiles": tiles, "voxels": voxels,
         "voxel_overhead_s": voxel_s, "probe_s": probe_s, "cases": len(inputs), "folds": n_models},
        made_after_s=probe_s)
    if estimate.long_on_cpu:
        estimate.advice = prediction_advice(seconds=seconds, cores=cores, mirroring=use_mirroring,
                                            seconds_without_mirroring=without, configuration=info.configuration)
    return PredictionPlan(estimate, tiles, shapes)


def seconds_per_voxel(predictor, shape: CaseShape) -> float:
    """Seconds per input voxel of the work around the network for a case with this spacing: resampling to the
    model's spacing (nnU-Net's data resampling), back (its probability resampling, one channel per class), the
    softmax and argmax, and writing a compressed uint8 file. Timed on a ``CALIBRATION_BLOCK`` of random values."""
    import gzip

    import torch

    config = predictor.configuration_manager
    transpose = predictor.plans_manager.transpose_forward
    spacing = [shape.spacing_zyx[i] for i in transpose]
    target = list(config.spacing)
    if len(target) < 3:
        target = [spacing[0]] + target
    block = np.random.default_rng(0).normal(size=(1, *CALIBRATION_BLOCK)).astype(np.float32)
    small = [max(1, int(round(s * sp / t))) for s, sp, t in zip(CALIBRATION_BLOCK, spacing, target)]
    heads = predictor.label_manager.num_segmentation_heads
    started = time.perf_counter()
    resampled = config.resampling_fn_data(block, small, spacing, target)
    logits = np.repeat(np.asarray(resampled, np.float32)[:1], heads, axis=0)
    back = config.resampling_fn_probabilities(logits, list(CALIBRATION_BLOCK), target, spacing)
    probabilities = torch.softmax(torch.as_tensor(np.asarray(back, np.float32)), 0)
    labels = probabilities.argmax(0).numpy().astype(np.uint8)
    gzip.compress(labels.tobytes() + (probabilities[1] * 255).to(torch.uint8).numpy().tobytes(), 6)
    return (time.perf_counter() - started) / float(np.prod(CALIBRATION_BLOCK))
