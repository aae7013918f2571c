"""The training estimate is made after planning and preprocessing: its message says how much of the total is left."""

from backsplit.runtime.durations import Estimate


def test_estimate_made_late_says_time_left():
    # as seen on the command line: estimate of 149 s made 144 s into the job (planning + preprocessing)
    text = Estimate("training", 149, "cpu", "3 training iteration(s)", made_after_s=144.3).message()
    assert "about 2 min 29 s on this CPU in all" in text and "about 5 s left" in text


def test_estimate_made_at_the_start_reads_as_before():
    text = Estimate("prediction", 40, "cpu", "8 tiles").message()
    assert text == "expected prediction time: about 40 s on this CPU (timed: 8 tiles)"
