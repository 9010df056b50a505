"""The backfill benchmark's arithmetic (issue 27): slot utilisation, the idle gap per freed slot, fairness."""

from __future__ import annotations

import math

from localdev.backfill import Backfill, busy_share, draw_durations, fairness, gaps


def test_the_gap_of_a_freed_slot_is_the_start_that_refills_it() -> None:
    starts = [0.0, 0.0, 0.0, 0.0, 0.0, 12.0, 31.0]
    ends = [10.0, 30.0, 40.0, 40.0, 40.0, 50.0, 60.0]
    assert gaps(starts, ends) == [2.0, 1.0]


def test_utilisation_counts_used_slot_time_within_the_window() -> None:
    runs = [(0.0, 10.0)] * 5
    assert busy_share(runs, 0.0, 10.0) == 1.0
    assert busy_share([*runs[:4], (5.0, 10.0)], 0.0, 10.0) == 0.9
    assert math.isnan(busy_share(runs, 3.0, 3.0))


def test_fairness_is_the_small_namespaces_share_while_both_wait() -> None:
    starts = [(float(i), n) for i, n in enumerate(["big-0", "small-0", "big-1", "small-1", "big-2", "big-3"])]
    assert fairness(starts) == 0.5
    assert fairness([(0.0, "big-0"), (1.0, "big-1"), (2.0, "small-0")]) == 0.0  # small waited throughout


def test_durations_are_seeded_and_within_bounds() -> None:
    names = [f"e{i}" for i in range(200)]
    drawn = draw_durations(Backfill(durations=(20.0, 60.0)), names)
    assert drawn == draw_durations(Backfill(durations=(20.0, 60.0)), names)
    assert all(20.0 <= d <= 60.0 for d in drawn.values())
    assert len(set(drawn.values())) > 100
