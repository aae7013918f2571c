"""A new user's target name in ``backsplit supports suggest``: compared as the export compares it, and a wrong one
answered with the segments found and the near miss."""

import numpy as np
import pytest

from backsplit.errors import InputError
from backsplit.supports.suggest import SuggestCase, SuggestOptions, suggest

SHAPE = (10, 12, 14)


def _case(case_id: str) -> SuggestCase:
    kidney = np.zeros(SHAPE, bool)
    kidney[2:8, 2:10, 2:12] = True
    cyst = np.zeros(SHAPE, bool)
    cyst[4:6, 4:6, 4:6] = True
    return SuggestCase(case_id, (1.0, 1.0, 1.0), {"cyst": cyst, "kidney": kidney})


def test_wrong_target_lists_the_segments_found_and_the_near_miss():
    with pytest.raises(InputError) as caught:
        suggest([_case("a"), _case("b")], SuggestOptions(target="cysts"))
    message = str(caught.value)
    assert "'cyst', 'kidney'" in message
    assert "'cyst' looks like 'cysts'" in message


def test_target_with_invisible_character_matches_like_in_export():
    # a zero-width space (text copied from a PDF) and a non-breaking space: the export accepts both names
    report = suggest([_case("a")], SuggestOptions(target="c\u200byst\u00a0"))
    assert report.target_cases == 1
