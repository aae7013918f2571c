"""training/budget.py: the supports-per-budget advice and the break-even budget. Until issue 19's measurement is
filled in, the advice is the BackSplit paper's Fig. 6 statements and must say so; the break-even budget is unknown."""

from backsplit.training import budget


def test_placeholder_is_marked_as_the_papers_statement_not_a_measurement():
    assert budget.MEASURED_BREAK_EVEN is None and budget.break_even_steps() is None
    assert "paper" in budget.SOURCE_OF_SUPPORTS_TABLE and "not our measurement" in budget.SOURCE_OF_SUPPORTS_TABLE


def test_supports_warning_names_the_source_and_the_fix():
    assert budget.supports_warning(1, 5 * 50) is None                   # 1 support: the paper's fine case
    text = budget.supports_warning(9, 5 * 50)
    assert "9 support structures" in text and "250 optimiser steps" in text
    assert "BackSplit paper" in text and "not yet measured" in text and "fewer support structures" in text
    assert budget.supports_advised(10 ** 9) is None and budget.supports_warning(9, 10 ** 9) is None
