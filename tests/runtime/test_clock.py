"""Clock offsets: the NTP formula on literal exchanges, and the min-RTT choice."""

import pytest

from splitpipe.runtime.clock import ClockOffset, ClockSample, estimate_offset


def test_symmetric_delays_give_the_exact_offset() -> None:
    # The node's clock is 5 s ahead; 0.1 s each way; the node holds the ping 0.1 s.
    sample = ClockSample(t0=100.0, t1=105.1, t2=105.2, t3=100.3)
    assert sample.offset == pytest.approx(5.0)
    assert sample.rtt == pytest.approx(0.2)


def test_asymmetric_delay_errs_by_half_the_difference() -> None:
    # 0.3 s out, 0.1 s back, clocks equal: the estimate is off by (0.3 - 0.1) / 2.
    sample = ClockSample(t0=0.0, t1=0.3, t2=0.3, t3=0.4)
    assert sample.offset == pytest.approx(0.1)


def test_the_sample_with_the_smallest_round_trip_wins() -> None:
    slow = ClockSample(0.0, 2.5, 2.5, 1.0)      # rtt 1.0, offset 2.0
    fast = ClockSample(10.0, 12.05, 12.05, 10.1)  # rtt 0.1, offset 2.0 +- 0
    odd = ClockSample(20.0, 23.0, 23.0, 20.5)   # rtt 0.5, offset 2.75
    best = estimate_offset([slow, odd, fast])
    assert isinstance(best, ClockOffset)
    assert (best.offset_s, best.rtt_s) == (pytest.approx(2.0), pytest.approx(0.1))
    assert best.to_node(1.0) == pytest.approx(3.0)
    assert best.to_coordinator(3.0) == pytest.approx(1.0)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one ping"):
        estimate_offset([])
