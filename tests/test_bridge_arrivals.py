"""When a session's next frame is due (bridge.arrivals): nothing until two gaps are seen, one period after the last
arrival, a missed tick or a pause does not move the period, a real change of rate does within a few frames."""
from bridge.arrivals import Arrivals

P = 1 / 60


def test_due_one_period_after_the_last_arrival_once_two_gaps_are_seen():
    a = Arrivals()
    assert a.due("s") is None
    a.arrived("s", 10.0)
    a.arrived("s", 10.0 + P)
    assert a.due("s") is None  # one gap: not a pace yet
    a.arrived("s", 10.0 + 2 * P)
    assert abs(a.due("s") - (10.0 + 3 * P)) < 1e-9
    a.forget("s")
    assert a.due("s") is None


def test_a_missed_tick_or_a_pause_keeps_the_period_and_a_new_rate_replaces_it():
    a = Arrivals()
    t = [i * P for i in range(6)] + [7 * P, 8 * P]  # tick 6 missed: one gap of two periods
    for x in t:
        a.arrived("s", x)
    assert abs(a.due("s") - 9 * P) < 1e-9
    a.arrived("s", 100.0)  # a pause of 100 s
    assert abs(a.due("s") - (100.0 + P)) < 1e-9
    for k in range(1, 6):  # now at 30 frames/s
        a.arrived("s", 100.0 + 2 * P * k)
    assert abs(a.due("s") - (100.0 + 12 * P)) < 1e-9
