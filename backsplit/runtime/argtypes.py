"""Range-checked number types for the command line: every numeric option of every ``backsplit`` command is parsed
with one of these (``type=`` of argparse), so a value outside its meaning (a negative NSD tolerance, a threshold of
2, zero epochs) is refused where it is typed, naming the option, the range and the value received (exit 2).

Engine functions keep their own checks (the Slicer panels and Python callers do not go through argparse).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional


def number(kind: type = float, low: Optional[float] = None, high: Optional[float] = None, *,
           low_open: bool = False, high_open: bool = False, unit: str = "") -> Callable[[str], float]:
    """An argparse ``type=`` parsing ``kind`` (int or float) within [low, high] (an end excluded with
    ``low_open`` / ``high_open``; None: no bound). NaN and infinity are refused. Raises
    ``argparse.ArgumentTypeError`` with e.g. "must be > 0 mm (got -1)"; argparse puts the option's name in front
    and exits with status 2."""
    wanted = describe(low, high, low_open, high_open, unit)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what}{', ' + wanted if wanted else ''} (got '{text}')") \
                from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number (got '{text}')")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text})")
        return value

    parse.__name__ = kind.__name__   # argparse names the type in its own "invalid <name> value" messages
    return parse


def describe(low: Optional[float], high: Optional[float], low_open: bool = False, high_open: bool = False,
             unit: str = "") -> str:
    """The range in words: "> 0 mm", ">= 1", "from 0 to 1", "above 0 and at most 1"."""
    u = f" {unit}" if unit else ""
    if low is not None and high is not None:
        if not low_open and not high_open:
            return f"from {low:g} to {high:g}{u}"
        return f"{'above' if low_open else 'at least'} {low:g} and {'below' if high_open else 'at most'} {high:g}{u}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}{u}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}{u}"
    return ""


# One type per meaning (the ranges follow from what each option is)
fraction = number(float, 0.0, 1.0)                              # --threshold, --host-fraction, --min-share
sensitivity = number(float, 0.0, 1.0, low_open=True)            # --sensitivity: 0 keeps nothing
positive_mm = number(float, 0.0, low_open=True, unit="mm")      # --nsd-tolerance, --distance
non_negative_ml = number(float, 0.0, unit="ml")                 # --min-volume
positive_number = number(float, 0.0, low_open=True)             # --lr, --support-head W
positive_seconds = number(float, 0.0, low_open=True, unit="s")  # --poll
count = number(int, 1)                                          # epochs, iterations, batch size, cases, GPUs, ...
non_negative_int = number(int, 0)                               # --workers
seed = number(int, 0, 2**32 - 1)                                # NumPy's seeds are 32-bit unsigned
nice_value = number(int, 0, 19)                                 # nice(1): only lowering the priority
dataset_id = number(int, 1, 999)                                # nnU-Net's DatasetNNN_Name: three digits
folds = number(int, 2, 5)                                       # study cross-validation folds
