"""Metrics, case summary and calibration on hand-made masks with known answers."""

import math

import numpy as np
import pytest

from backsplit.errors import InputError
from backsplit.evaluation.metrics import class_metrics, dice, finite_mean, hd95, lesion_counts, nsd
from backsplit.evaluation.summary import DecisionRule, calibrate_min_volume, decision_counts, read_rule, summarise
from backsplit.io.geometry import Geometry


def cube(shape, start, size):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_dice_known_values():
    a = cube((10, 10, 10), (0, 0, 0), 4)
    b = cube((10, 10, 10), (0, 0, 2), 4)          # half overlap along x
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0


def test_hd95_and_nsd_for_shifted_cube_with_anisotropic_spacing():
    a = cube((20, 20, 20), (5, 5, 5), 6)
    b = cube((20, 20, 20), (5, 5, 8), 6)          # shifted 3 voxels along x
    spacing_zyx = (3.0, 1.0, 2.0)                 # x spacing 2 mm -> shift of 6 mm
    assert hd95(a, b, spacing_zyx) == pytest.approx(6.0)
    assert nsd(a, b, spacing_zyx, 6.0) == pytest.approx(1.0)
    assert nsd(a, b, spacing_zyx, 0.5) < 1.0
    shifted_z = cube((20, 20, 20), (7, 5, 5), 6)  # 2 voxels along z at 3 mm -> 6 mm
    assert hd95(a, shifted_z, spacing_zyx) == pytest.approx(6.0)


def test_empty_mask_conventions():
    empty = np.zeros((5, 5, 5), bool)
    full = cube((5, 5, 5), (1, 1, 1), 2)
    both = class_metrics(empty, empty, (1, 1, 1))
    assert (both.dice, both.hd95, both.nsd) == (1.0, 0.0, 1.0)
    assert math.isnan(both.precision) and math.isnan(both.recall)
    missed = class_metrics(full, empty, (1, 1, 1))
    diagonal = math.sqrt(3 * 5 ** 2)                 # worst value: the image's diagonal (BraTS 2023 convention)
    assert (missed.dice, missed.hd95, missed.nsd, missed.recall) == (0.0, pytest.approx(diagonal), 0.0, 0.0)
    assert (missed.reference_empty, missed.prediction_empty) == (0, 1)
    assert math.isnan(missed.precision) and missed.missed_lesions == 1
    false_alarm = class_metrics(empty, full, (1, 1, 1))
    assert false_alarm.precision == 0.0 and false_alarm.false_positive_lesions == 1
    assert finite_mean([1.0, math.inf, math.nan, 0.0]) == (0.5, 0.5, 2)


def test_precision_recall_and_lesion_counts():
    shape = (20, 20, 20)
    ref = cube(shape, (2, 2, 2), 3) | cube(shape, (10, 10, 10), 3) | cube(shape, (15, 2, 15), 2)
    pred = cube(shape, (2, 2, 2), 3) | cube(shape, (11, 11, 11), 3) | cube(shape, (2, 15, 2), 2)
    n_ref, detected, missed, fp = lesion_counts(ref, pred)
    assert (n_ref, detected, missed, fp) == (3, 2, 1, 1)
    m = class_metrics(ref, pred, (1, 1, 1))
    tp = 27 + 8                                   # first cube fully, second cube 2x2x2 overlap
    assert m.precision == pytest.approx(tp / (27 + 27 + 8))
    assert m.recall == pytest.approx(tp / (27 + 27 + 8))
    assert m.reference_ml == pytest.approx(62 / 1000)


def test_summary_and_decision_rule():
    geometry = Geometry.create((2.0, 2.0, 2.0), (0, 0, 0), None, (20, 20, 20))   # 8 mm3 voxels
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[cube((20, 20, 20), (1, 1, 1), 5)] = 1         # 125 voxels = 1 ml
    labels[cube((20, 20, 20), (12, 12, 12), 2)] = 1      # 8 voxels
    labels[cube((20, 20, 20), (12, 1, 1), 4)] = 2        # support class: not a lesion
    probability = np.where(labels == 1, 0.9, 0.1).astype(np.float32)
    probability[cube((20, 20, 20), (12, 12, 12), 2)] = 0.6
    s = summarise("c", labels, geometry, [1], probability, DecisionRule(0.7, 0.5))
    assert s.lesion_count == 2 and s.lesion_volume_ml == pytest.approx(133 * 0.008)
    assert s.largest_lesion_ml == pytest.approx(1.0) and s.max_lesion_probability == pytest.approx(0.9)
    assert s.lesion_score_ml == pytest.approx(1.0) and s.lesion_present
    assert not summarise("c", labels, geometry, [1], probability, DecisionRule(0.7, 1.5)).lesion_present
    none = summarise("n", np.zeros((4, 4, 4), np.uint8), geometry.__class__.create((1, 1, 1), (0, 0, 0), None,
                                                                                   (4, 4, 4)), [1])
    assert (none.lesion_count, none.lesion_volume_ml, none.lesion_present) == (0, 0.0, False)


def test_calibration_reaches_requested_sensitivity():
    scores = [0.0, 0.2, 1.5, 3.0, 0.1, 4.0, 0.05]
    positive = [False, False, True, True, False, True, False]
    assert calibrate_min_volume(scores, positive, 1.0) == 1.5
    assert calibrate_min_volume(scores, positive, 0.6) == 3.0
    cut = calibrate_min_volume(scores, positive, 0.66)
    assert sum(s >= cut for s, p in zip(scores, positive) if p) / 3 >= 0.66
    with pytest.raises(ValueError):
        calibrate_min_volume([1.0], [False])


def test_decision_counts_and_rule_file(tmp_path):
    scores = [0.0, 0.2, 1.5, 3.0, 0.0, 0.4]
    positive = [True, True, True, True, False, False]
    counts = decision_counts(scores, positive, 0.3)
    assert (counts["true_positive"], counts["false_negative"], counts["true_negative"], counts["false_positive"]) == \
        (2, 2, 1, 1)
    assert counts["sensitivity"] == 0.5 and counts["specificity"] == 0.5
    assert decision_counts(scores, positive, 0.0)["sensitivity"] == 0.75   # a score of 0 is never 'present'
    (tmp_path / "rule.json").write_text('{"threshold": 0.3, "min_volume_ml": 1.25}')
    assert read_rule(tmp_path / "rule.json") == DecisionRule(0.3, 1.25)
    (tmp_path / "bad.json").write_text('{"threshold": 0.3}')
    with pytest.raises(InputError, match="not a decision rule"):
        read_rule(tmp_path / "bad.json")


# ---- agreement of the library (DeepMind's surface-distance) with hand-computed answers ------------------------

def test_library_agrees_with_hand_computed_surface_metrics():
    from backsplit.evaluation.metrics import surface_distances

    a = cube((20, 20, 20), (5, 5, 5), 6)
    assert hd95(a, a, (1.0, 1.0, 1.0)) == 0.0 and nsd(a, a, (1.0, 1.0, 1.0), 0.0) == 1.0
    # Two 6-voxel cubes 3 voxels apart along x (2 mm voxels): every surface element of one face lies 6 mm from the
    # other cube's matching face; the faces parallel to x lie on each other (distance 0) where the cubes overlap.
    b = cube((20, 20, 20), (5, 5, 8), 6)
    d_ab, d_ba = surface_distances(a, b, (1.0, 1.0, 2.0))
    assert max(d_ab.max(), d_ba.max()) == pytest.approx(6.0)
    assert min(d_ab.min(), d_ba.min()) == pytest.approx(0.0)
    # NSD at 6 mm: every element is within tolerance; just under 6 mm the x-facing faces are not
    assert nsd(a, b, (1.0, 1.0, 2.0), 6.0) == pytest.approx(1.0)
    assert nsd(a, b, (1.0, 1.0, 2.0), 5.9) < 1.0
    # A single voxel against the voxel two steps away along z (3 mm voxels): HD95 = 6 mm
    p, q = cube((9, 9, 9), (2, 4, 4), 1), cube((9, 9, 9), (4, 4, 4), 1)
    assert hd95(p, q, (3.0, 1.0, 1.0)) == pytest.approx(6.0)


def test_hd95_is_the_larger_directed_percentile():
    """A small blob inside a large one: from the small one's surface every distance is short, from the large one's
    surface long; HD95 follows the larger direction (as MONAI and DeepMind's library define it)."""
    large = cube((30, 30, 30), (5, 5, 5), 20)
    small = cube((30, 30, 30), (13, 13, 13), 4)
    from backsplit.evaluation.metrics import surface_distances

    d_large_to_small, d_small_to_large = surface_distances(large, small, (1.0, 1.0, 1.0))
    assert hd95(large, small, (1.0, 1.0, 1.0)) == pytest.approx(
        max(np.percentile(d_large_to_small, 95), np.percentile(d_small_to_large, 95)), abs=1.5)
    assert hd95(large, small, (1.0, 1.0, 1.0)) > 8.0
