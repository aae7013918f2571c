"""`--arms` with per-arm settings: `learned:2,m=10,tau=5` stays one arm (its settings are comma-separated too)."""

import pytest

from backsplit.errors import InputError
from backsplit.study.arms import ArmContext, parse_arms, split_arms


def test_settings_stay_with_their_arm():
    assert split_arms("binary,learned:2,m=10,tau=5,kmeans") == ["binary", "learned:2,m=10,tau=5", "kmeans"]
    assert split_arms(" binary , noisy:erode:2,sampling:stock,") == ["binary", "noisy:erode:2", "sampling:stock"]
    arms = parse_arms(split_arms("binary,learned:2,m=10,tau=5"), ArmContext(["cyst"], ["kidney"]))
    learned = next(a for a in arms if a.kind == "learned")
    assert "margin_mm=10.0" in learned.train_context and "temperature_mm=5.0" in learned.train_context


def test_a_setting_without_an_arm_is_refused():
    with pytest.raises(InputError, match="settings follow their arm"):
        split_arms("m=10,binary")
