"""Every numeric option of every command is range-checked where it is parsed (backsplit/runtime/argtypes.py): a
value outside its meaning ends the command line with exit 2 and one line naming the option, the range and the value
(``evaluate --nsd-tolerance -1`` used to report NSD 0 on perfect cases). No command runs here: argparse refuses a
value as soon as it meets it."""

from __future__ import annotations

import numpy as np
import pytest

from backsplit.cli import build_parser
from backsplit.errors import InputError

REFUSED = [
    ("evaluate", "--nsd-tolerance", "-1"), ("evaluate", "--nsd-tolerance", "0"), ("evaluate", "--nsd-tolerance", "nan"),
    ("calibrate", "--sensitivity", "0"), ("calibrate", "--sensitivity", "1.5"),
    ("predict", "--threshold", "1.2"), ("predict", "--threshold", "-0.1"), ("predict", "--min-volume", "-2"),
    ("export", "--id", "0"), ("export", "--id", "1000"), ("export", "--binary-id", "-5"),
    ("model list", "--channels", "0"),
    ("supports suggest", "--distance", "0"), ("supports suggest", "--host-fraction", "2"),
    ("supports suggest", "--min-share", "-1"), ("supports suggest", "--top", "0"),
    ("supports suggest", "--planned-steps", "0"),
    ("train", "--epochs", "0"), ("train", "--iterations-per-epoch", "-3"), ("train", "--val-iterations", "0"),
    ("train", "--lr", "0"), ("train", "--lr", "inf"), ("train", "--save-every", "0"), ("train", "--workers", "-1"),
    ("train", "--batch-size", "0"), ("train", "--seed", "-1"), ("train", "--num-gpus", "0"),
    ("train", "--support-head", "-1"), ("train", "--epochs", "2.5"),
    ("study", "--folds", "1"), ("study", "--folds", "6"), ("study", "--epochs", "0"),
    ("study", "--iterations-per-epoch", "0"), ("study", "--val-iterations", "0"), ("study", "--batch-size", "0"),
    ("study", "--nsd-tolerance", "-1"), ("study", "--sensitivity", "0"), ("study", "--save-every", "0"),
    ("study", "--num-gpus", "0"), ("study", "--nice", "20"), ("study", "--nice", "-5"), ("study", "--parallel", "0"),
    ("study", "--cpus-per-task", "0"), ("study", "--poll", "0"),
    ("demo", "--cases", "0"), ("demo", "--test-cases", "0"), ("demo", "--epochs", "0"), ("demo", "--iterations", "0"),
    ("demo", "--batch-size", "-1"), ("demo", "--seed", "-1"),
]


@pytest.mark.parametrize("command, option, value", REFUSED)
def test_numeric_option_out_of_range_is_refused_where_parsed(capsys, command, option, value):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*command.split(), f"{option}={value}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}" in err and "must be" in err and value in err, err


def test_study_seeds_are_checked_where_parsed():
    from backsplit.commands.study import settings_from_args

    with pytest.raises(InputError, match="--seeds '1,-1' must be whole numbers from 0"):
        settings_from_args(build_parser().parse_args(["study", "ds", "--out", "o", "--seeds", "1,-1"]))


def test_range_types_accept_their_bounds():
    from backsplit.runtime import argtypes

    assert argtypes.fraction("0") == 0.0 and argtypes.fraction("1") == 1.0
    assert argtypes.sensitivity("1") == 1.0 and argtypes.positive_mm("0.01") == 0.01
    assert argtypes.count("1") == 1 and argtypes.non_negative_int("0") == 0 and argtypes.nice_value("19") == 19
    assert argtypes.dataset_id("999") == 999 and argtypes.folds("2") == 2 and argtypes.seed("0") == 0
    args = build_parser().parse_args(["evaluate", "--model", "m", "--out", "o", "--nsd-tolerance", "0.5"])
    assert args.nsd_tolerance == 0.5


def test_engine_refuses_a_non_positive_nsd_tolerance():
    """The Slicer panel and Python callers do not pass through argparse: the metric refuses it too."""
    from backsplit.evaluation.metrics import class_metrics

    mask = np.zeros((4, 6, 6), bool)
    mask[1:3, 2:4, 2:4] = True
    assert class_metrics(mask, mask, (1, 1, 1), 2.0).nsd == 1.0
    with pytest.raises(InputError, match="must be > 0 mm"):
        class_metrics(mask, mask, (1, 1, 1), -1.0)
