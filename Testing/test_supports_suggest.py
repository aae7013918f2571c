"""Suggestions of support structures (paper 001, Appendix B) on hand-made arrays with known answers in mm."""

import gc
import math
import weakref

import numpy as np
import pytest

from backsplit.errors import InputError
from backsplit.supports.suggest import (
    FALSE_POSITIVE,
    HOST,
    NEIGHBOUR,
    NONE,
    SuggestCase,
    SuggestOptions,
    distance_mm,
    false_positive_lesions,
    format_table,
    host_fraction,
    lesions_touching,
    suggest,
)

SHAPE = (20, 30, 40)
SPACING = (2.0, 1.0, 0.5)  # (z, y, x) mm


def box(z, y, x):
    mask = np.zeros(SHAPE, bool)
    mask[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = True
    return mask


TARGET = box((8, 10), (10, 14), (10, 20))


def test_host_fraction_is_the_share_of_target_voxels_inside():
    assert host_fraction(TARGET, box((5, 15), (5, 25), (5, 30))) == 1.0
    assert host_fraction(TARGET, box((0, 20), (0, 30), (10, 15))) == 0.5
    assert host_fraction(TARGET, box((0, 3), (0, 3), (0, 3))) == 0.0
    assert host_fraction(np.zeros(SHAPE, bool), TARGET) == 0.0


def test_distance_in_mm_between_nearest_voxel_centres():
    # along x (0.5 mm): target's last x index 19, structure from 25 -> 6 voxels = 3 mm
    assert distance_mm(TARGET, box((8, 10), (10, 14), (25, 27)), SPACING, 10) == pytest.approx(3.0)
    # along z (2 mm): last z index 9, structure at 13 -> 4 voxels = 8 mm
    assert distance_mm(TARGET, box((13, 14), (10, 14), (10, 20)), SPACING, 10) == pytest.approx(8.0)
    # diagonal past the corner: dz = 1 (2 mm), dy = 1 (1 mm) -> sqrt(5)
    assert distance_mm(TARGET, box((10, 11), (14, 15), (10, 20)), SPACING, 10) == pytest.approx(math.sqrt(5))
    # overlap -> 0; farther than the limit (z 16: 7 voxels = 14 mm) -> None; the limit is inclusive
    assert distance_mm(TARGET, box((9, 12), (0, 30), (0, 40)), SPACING, 10) == 0.0
    assert distance_mm(TARGET, box((16, 17), (10, 14), (10, 20)), SPACING, 10) is None
    assert distance_mm(TARGET, box((16, 17), (10, 14), (10, 20)), SPACING, 14) == pytest.approx(14.0)
    assert distance_mm(np.zeros(SHAPE, bool), TARGET, SPACING, 10) is None


def test_false_positive_lesions_are_components_that_miss_the_reference():
    prediction = TARGET.copy()
    prediction[0:2, 0:2, 0:2] = True                          # FP 1 (in 'bone')
    prediction[0:2, 0:2, 5:7] = True                          # FP 2 (in 'bone')
    prediction[18:20, 28:30, 38:40] = True                    # FP 3 (elsewhere)
    prediction[3, 3, 3] = prediction[4, 4, 4] = True          # diagonal neighbours: one 26-connected FP (4)
    labels, fps = false_positive_lesions(prediction, TARGET)
    assert len(fps) == 4
    assert lesions_touching(labels, fps, box((0, 2), (0, 2), (0, 10))) == 2
    assert lesions_touching(labels, fps, TARGET) == 0
    _, none = false_positive_lesions(np.zeros(SHAPE, bool), TARGET)
    assert none == []


def make_case(case_id, *, vessel=True, bowel_empty=False, prediction=True):
    masks = {"Cyst": TARGET,
             "liver": box((5, 15), (5, 25), (5, 30)),                 # host, 10*20*25 voxels
             "vessel": box((8, 10), (10, 14), (25, 27)),              # 3 mm away
             "bowel": box((13, 14), (10, 14), (10, 20)),              # 8 mm away
             "far": box((17, 20), (0, 5), (35, 40)),                  # farther than 10 mm, no FP
             "bone": box((0, 2), (0, 2), (0, 10))}                    # far, but holds two FP lesions
    if not vessel:
        del masks["vessel"]
    if bowel_empty:
        masks["bowel"] = np.zeros(SHAPE, bool)
    pred = None
    if prediction:
        pred = TARGET.copy()
        pred[0:2, 0:2, 0:2] = True
        pred[0:2, 0:2, 5:7] = True
    return SuggestCase(case_id, SPACING, masks, pred)


def test_ranking_reasons_coverage_and_accepted_order():
    cases = [make_case("a"), make_case("b", vessel=False), make_case("c", bowel_empty=True)]
    report = suggest(iter(cases), SuggestOptions("cyst", neighbour_mm=10))
    by_name = {c.name: c for c in report.ranked}
    assert report.cases == 3 and report.target_cases == 3 and report.fp_lesions == 6
    assert report.target_volume_ml == pytest.approx(2 * 4 * 10 * 1.0 / 1000)
    assert [c.name for c in report.ranked] == ["liver", "bowel", "vessel", "bone", "far"]
    assert [by_name[n].role for n in ("liver", "bowel", "vessel", "bone", "far")] == \
        [HOST, NEIGHBOUR, NEIGHBOUR, FALSE_POSITIVE, NONE]
    liver = by_name["liver"]
    assert liver.host_cases == 3 and liver.mean_host_fraction == 1.0 and liver.score == 1.0
    vessel = by_name["vessel"]
    assert (vessel.present, vessel.missing, vessel.empty, vessel.near_cases) == (2, 1, 0, 2)
    assert vessel.median_distance_mm == pytest.approx(3.0)
    assert vessel.score == pytest.approx(2 / 3 * 2 / 3, abs=1e-3)
    bowel = by_name["bowel"]
    assert (bowel.present, bowel.empty, bowel.near_cases, bowel.median_distance_mm) == (2, 1, 2, 8.0)
    assert by_name["bone"].fp_touching == 6 and by_name["bone"].fp_cases == 3
    assert any("missing in 1" in r for r in vessel.reasons)
    assert any("host organ: holds 100%" in r for r in liver.reasons)
    # accepted: smaller structures first, so the host organ comes after what it contains (overlap policy)
    assert report.accepted() == ["vessel", "bone", "bowel", "liver"]
    assert report.accepted(top=2) == ["bowel", "liver"]
    table = format_table(report)
    assert "liver" in table and "support list (smaller structures first): vessel, bone, bowel, liver" in table
    data = report.to_json()
    assert data["accepted"] == report.accepted() and data["candidates"][0]["name"] == "liver"


def test_candidate_subset_and_a_candidate_seen_only_later_counts_as_missing_before():
    first = make_case("a", vessel=False, prediction=False)
    second = make_case("b", prediction=False)
    report = suggest([first, second], SuggestOptions("Cyst", candidates=["vessel", "liver", "absent one"]))
    by_name = {c.name: c for c in report.ranked}
    assert set(by_name) == {"vessel", "liver", "absent one"}
    assert (by_name["vessel"].cases, by_name["vessel"].missing, by_name["vessel"].present) == (2, 1, 1)
    assert by_name["absent one"].missing == 2 and by_name["absent one"].role == NONE
    assert not any("false-positive" in r for r in by_name["liver"].reasons)   # no predictions given


def test_cases_are_consumed_one_at_a_time():
    """The generator's previous-but-one case is released before the next is made: memory flat in N."""
    alive = []

    def lazily():
        for i in range(5):
            gc.collect()
            assert sum(ref() is not None for ref in alive) <= 1, "suggest keeps earlier cases"
            case = make_case(f"c{i}", prediction=False)
            alive.append(weakref.ref(case.masks["liver"]))
            yield case

    report = suggest(lazily(), SuggestOptions("cyst"))
    assert report.cases == 5


def test_bad_input():
    with pytest.raises(InputError, match="no case has voxels of the target 'tumor'"):
        suggest([make_case("a")], SuggestOptions("tumor"))
    with pytest.raises(InputError, match="also listed as a candidate"):
        suggest([make_case("a")], SuggestOptions("cyst", candidates=["Cyst", "liver"]))
    with pytest.raises(InputError, match="no cases"):
        suggest([], SuggestOptions("cyst"))
    odd = make_case("odd")
    odd.masks["liver"] = np.zeros((2, 2, 2), bool)
    with pytest.raises(InputError, match="case 'odd', segment 'liver'"):
        suggest([odd], SuggestOptions("cyst"))
