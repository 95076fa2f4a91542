"""--speed-change in real runs: T counts from training's start (the first segment's agreed
start), not from the process's start; before that the node runs at its base speed."""

from splitpipe.runtime.node import SpeedClock, anchor_speed, speed_over_time


class Clock:
    """A hand-moved clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_before_training_starts_the_speed_is_the_base_however_late() -> None:
    clock = Clock(1000.0)
    speed = speed_over_time(2.0, [(0.0, 0.1), (5.0, 0.5)], clock)
    assert callable(speed) and speed() == 2.0
    clock.now = 1e6  # a process that took ages to start, import and join
    assert speed() == 2.0


def test_after_anchoring_each_change_applies_from_the_anchor_plus_its_t() -> None:
    clock = Clock(50.0)
    speed = SpeedClock(1.0, [(10.0, 0.1), (3.0, 0.5)], clock)
    anchor_speed(speed, 100.0)  # training starts at 100 on this node's clock (the start's `at`)
    for now, expected in ((99.0, 1.0), (102.9, 1.0), (103.0, 0.5), (109.9, 0.5), (110.0, 0.1), (1e6, 0.1)):
        clock.now = now
        assert speed() == expected, now


def test_later_starts_keep_the_first_anchor() -> None:
    clock = Clock(0.0)
    speed = SpeedClock(1.0, [(10.0, 0.1)], clock)
    speed.anchor(100.0)
    speed.anchor(200.0)  # a later segment, a rewound one, the next epoch
    clock.now = 111.0
    assert speed.started == 100.0 and speed() == 0.1


def test_without_changes_the_speed_stays_a_float_and_anchoring_it_does_nothing() -> None:
    speed = speed_over_time(0.5, [])
    assert speed == 0.5
    anchor_speed(speed, 100.0)
    anchor_speed(lambda: 0.3, 100.0)  # any other callable Speed is left as it is
