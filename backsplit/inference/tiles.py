"""Sliding-window progress inside a case, and the tile arithmetic the up-front estimate needs.

nnU-Net predicts a case tile by tile (``nnUNetPredictor._internal_predict_sliding_window_return_logits``): it lists
the tiles with ``_internal_get_sliding_window_slicers`` and evaluates each (with its mirrored copies) in
``_internal_maybe_mirror_and_predict``. ``progress_predictor_class()`` subclasses the predictor and reports both
calls to a ``TileListener``; nothing else of nnU-Net's prediction changes (checked against nnunetv2 2.8.1,
``nnunetv2/inference/predict_from_raw_data.py``). ``tile_count`` repeats nnU-Net's own arithmetic (resampling to the
configuration's spacing, padding to the patch, ``compute_steps_for_sliding_window``) from an image header, so the
number of tiles of every case is known before any is predicted.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

TileCallback = Callable[[int, int], None]   # (tiles done, tiles in all) of the current case


class TileListener:
    """Counts the tiles of the case being predicted (all folds of an ensemble together) and calls back at most
    every ``min_interval`` seconds (and always at the last tile)."""

    def __init__(self, callback: TileCallback, n_models: int = 1, min_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.callback = callback
        self.n_models = max(1, int(n_models))
        self.min_interval = min_interval
        self._clock = clock
        self.done = 0
        self.total = 0
        self._windows = 0
        self._reported_at = -1e18

    def start_case(self) -> None:
        self.done, self.total, self._windows, self._reported_at = 0, 0, 0, -1e18

    def sliding_window(self, n_tiles: int) -> None:
        """nnU-Net listed the tiles of one model's pass over the case."""
        self._windows += 1
        if self._windows == 1:
            self.total = int(n_tiles) * self.n_models
            self.callback(0, self.total)

    def tile_done(self) -> None:
        self.done += 1
        self.total = max(self.total, self.done)   # a GPU pass repeated on the CPU after running out of memory
        now = self._clock()
        if self.done == self.total or now - self._reported_at >= self.min_interval:
            self._reported_at = now
            self.callback(self.done, self.total)


def progress_predictor_class():
    """``nnUNetPredictor`` with a ``tile_listener`` attribute (None: behaves exactly like the stock predictor)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class ProgressPredictor(nnUNetPredictor):
        tile_listener: Optional[TileListener] = None

        def __init__(self, *args, **kwargs):
            # The stock constructor prints "perform_everything_on_device=True is only supported for cuda devices!"
            # on every CPU run; it says nothing to a user (the setting is switched off for the CPU anyway).
            with contextlib.redirect_stdout(io.StringIO()):
                super().__init__(*args, **kwargs)

        def _internal_get_sliding_window_slicers(self, image_size):
            slicers = super()._internal_get_sliding_window_slicers(image_size)
            if self.tile_listener is not None:
                self.tile_listener.sliding_window(len(slicers))
            return slicers

        def _internal_maybe_mirror_and_predict(self, x):
            prediction = super()._internal_maybe_mirror_and_predict(x)
            if self.tile_listener is not None:
                self.tile_listener.tile_done()
            return prediction

    return ProgressPredictor


@dataclass
class CaseShape:
    """What nnU-Net will see of a case: array size and spacing in the training orientation, axes (z, y, x)."""
    size_zyx: tuple
    spacing_zyx: tuple


def oriented_shape(size_xyz: Sequence[int], spacing_xyz: Sequence[float], direction: Sequence[float],
                   target_code: Optional[str]) -> CaseShape:
    """Size and spacing after the lossless reorientation to ``target_code`` (e.g. 'LPS') that prediction applies.

    ``direction``: the 3x3 direction cosines, row-major (ITK). Each image axis goes to the physical axis its
    column points along most (L/R: x, P/A: y, S/I: z); the oriented axes follow the code's letters.
    """
    size, spacing = list(size_xyz), list(spacing_xyz)
    if target_code:
        matrix = np.asarray(direction, float).reshape(3, 3)
        dominant = [int(np.argmax(np.abs(matrix[:, i]))) for i in range(3)]   # physical axis of image axis i
        physical = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
        if sorted(dominant) == [0, 1, 2]:
            order = [dominant.index(physical[letter]) for letter in target_code.upper()]
            size, spacing = [size[i] for i in order], [spacing[i] for i in order]
    return CaseShape(tuple(int(v) for v in size[::-1]), tuple(float(v) for v in spacing[::-1]))


def tile_count(case: CaseShape, plans: dict, configuration: str, tile_step_size: float = 0.5) -> int:
    """Tiles nnU-Net's sliding window evaluates for one model on this case (nnunetv2 2.8.1 arithmetic:
    ``DefaultPreprocessor.run_case_npy`` resampling, ``pad_nd_image``, ``compute_steps_for_sliding_window``)."""
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    config = plans["configurations"][configuration]
    transpose = plans.get("transpose_forward", [0, 1, 2])
    shape = [case.size_zyx[i] for i in transpose]
    spacing = [case.spacing_zyx[i] for i in transpose]
    target = list(config["spacing"])
    if len(target) < len(shape):
        target = [spacing[0]] + target
    new_shape = [int(round(s * sp / t)) for s, sp, t in zip(shape, spacing, target)]
    patch = list(config["patch_size"])
    if len(patch) < len(new_shape):          # 2d: one slice at a time
        plane = [max(s, p) for s, p in zip(new_shape[1:], patch)]
        steps = compute_steps_for_sliding_window(plane, patch, tile_step_size)
        return int(new_shape[0] * np.prod([len(s) for s in steps]))
    padded = [max(s, p) for s, p in zip(new_shape, patch)]
    steps = compute_steps_for_sliding_window(padded, patch, tile_step_size)
    return int(np.prod([len(s) for s in steps]))


def case_shape_from_header(path, target_code: Optional[str]) -> CaseShape:
    """``oriented_shape`` from an image file's header (nothing but the header is read)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return oriented_shape(reader.GetSize(), reader.GetSpacing(), reader.GetDirection(), target_code)


def seconds_per_tile(predictor, n_channels: int, repeats: int = 3, min_seconds: float = 2.0,
                     max_tiles: int = 10, max_seconds: float = 10.0) -> float:
    """Time the network on tiles of the plans' patch size on the predictor's device, mirroring as configured: one
    warm-up tile, then the mean of at least ``repeats`` tiles and ``min_seconds`` (at most ``max_tiles``, and no
    more once ``max_seconds`` are spent); the mean, not the median: on a shared machine the throughput counts.
    Random input: the weights and values do not change the cost."""
    import torch

    patch = list(predictor.configuration_manager.patch_size)
    network = predictor.network.to(predictor.device)
    network.eval()
    from nnunetv2.configuration import default_num_processes

    threads = torch.get_num_threads()
    torch.set_num_threads(min(default_num_processes, threads))   # as predict_logits_from_preprocessed_data does
    listener, predictor.tile_listener = getattr(predictor, "tile_listener", None), None
    try:
        x = torch.randn((1, n_channels, *patch), device=predictor.device)
        autocast = torch.autocast(predictor.device.type) if predictor.device.type == "cuda" \
            else contextlib.nullcontext()
        times: list[float] = []
        with torch.inference_mode(), autocast:
            while len(times) < 2 or (sum(times) < max_seconds and (len(times) < 1 + repeats or (
                    sum(times[1:]) < min_seconds and len(times) < 1 + max_tiles))):
                started = time.perf_counter()
                predictor._internal_maybe_mirror_and_predict(x)
                if predictor.device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
        return float(np.mean(times[1:]))
    finally:
        predictor.tile_listener = listener
        torch.set_num_threads(threads)
