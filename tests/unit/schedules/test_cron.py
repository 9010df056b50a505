"""Cron expressions as CronJob reads them (robfig/cron v3): fields, names, steps, day-of-month/day-of-week, time
zones and DST. Every expectation here is robfig's answer (dev/crondiff); test_cron_differential.py compares more."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rds_export_operator.schedules import cron


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def times(expression: str, start: datetime, n: int, tz: str | None = None) -> list[datetime]:
    parsed = cron.parse(expression, tz)
    out: list[datetime] = []
    t: datetime | None = start
    for _ in range(n):
        assert t is not None
        t = parsed.next_after(t)
        assert t is not None
        out.append(t)
    return out


def test_every_minute_is_strictly_after() -> None:
    assert times("* * * * *", utc(2026, 1, 1, 0, 0), 2) == [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]
    assert times("* * * * *", utc(2026, 1, 1, 0, 0, 30), 1) == [utc(2026, 1, 1, 0, 1)]


def test_lists_ranges_steps_and_names() -> None:
    parsed = cron.parse("0,30 9-17/4 * JAN-MAR mon-fri")
    assert parsed.minutes == {0, 30} and parsed.hours == {9, 13, 17}
    assert parsed.months == {1, 2, 3} and parsed.weekdays == {1, 2, 3, 4, 5}
    assert cron.parse("5/20 * * * *").minutes == {5, 25, 45}  # a/n runs to the end of the range
    assert cron.parse("1,,2 * * * *").minutes == {1, 2}  # empty list items are dropped, as robfig drops them


def test_weekday_step_from_a_value_never_wraps_to_sunday() -> None:
    # "1/2" is Mon, Wed, Fri (1-6/2): not Sunday. 2026-01-01 is a Thursday.
    assert cron.parse("0 0 * * 1/2").weekdays == {1, 3, 5}
    assert times("0 0 * * 1/2", utc(2026, 1, 1), 3) == [utc(2026, 1, 2), utc(2026, 1, 5), utc(2026, 1, 7)]


@pytest.mark.parametrize(
    ("descriptor", "first"),
    [("@hourly", utc(2026, 1, 1, 1, 0)), ("@daily", utc(2026, 1, 2)), ("@weekly", utc(2026, 1, 4))],
)
def test_descriptors(descriptor: str, first: datetime) -> None:
    assert times(descriptor, utc(2026, 1, 1, 0, 0), 1) == [first]  # 2026-01-01 is a Thursday


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 1st of the month OR a Monday (as cron and CronJob read it); 2026-06-01 is a Monday, 06-08 the next.
    got = times("0 0 1 * MON", utc(2026, 5, 30), 3)
    assert got == [utc(2026, 6, 1), utc(2026, 6, 8), utc(2026, 6, 15)]
    # A star in one of them: AND (only Mondays); a step over the star restricts, so OR applies again.
    assert times("0 0 * * MON", utc(2026, 5, 30), 1) == [utc(2026, 6, 1)]
    assert times("0 0 */10 * MON", utc(2026, 6, 1), 2) == [utc(2026, 6, 8), utc(2026, 6, 11)]


def test_impossible_date_has_no_next_time() -> None:
    assert cron.parse("0 0 30 2 *").next_after(utc(2026, 1, 1)) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * * 7", "outside 0-6"),  # robfig (and so CronJob) refuses 7
        ("@Daily", "unknown descriptor"),  # descriptors are exact
        ("@every 5m", "@every is not supported"),
        ("0 0 * * * TZ", "timeZone"),
        ("*/0 * * * *", "positive"),
        ("5-1 * * * *", "backwards"),
        ("x * * * *", "not a number"),
        ("* * * FOO *", "not a number or a name"),
        ("@reboot", "unknown descriptor"),
        ("TZ=UTC * * * * *", "timeZone"),
        ("CRON_TZ=Europe/Berlin 0 * * * *", "timeZone"),
    ],
)
def test_invalid_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message):
        cron.parse(expression)


def test_unknown_time_zone() -> None:
    with pytest.raises(cron.CronError, match="unknown time zone 'Mars/Olympus'"):
        cron.parse("0 3 * * *", "Mars/Olympus")


def test_time_zone_shifts_due_times() -> None:
    # 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
    assert times("0 3 * * *", utc(2026, 1, 10), 1, "Europe/Berlin") == [utc(2026, 1, 10, 2)]
    assert times("0 3 * * *", utc(2026, 7, 10), 1, "Europe/Berlin") == [utc(2026, 7, 10, 1)]


def test_spring_forward_gap_is_not_due_that_day() -> None:
    # 2026-03-29 Berlin skips 02:00-03:00 local: robfig's walk never meets 02:30 that day.
    got = times("30 2 * * *", utc(2026, 3, 28, 12), 2, "Europe/Berlin")
    assert got == [utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]


def test_fall_back_runs_a_repeated_time_at_both_occurrences() -> None:
    # 2026-10-25 Berlin repeats 02:00-03:00 local: 02:30 CEST (00:30 UTC) and 02:30 CET (01:30 UTC).
    got = times("30 2 * * *", utc(2026, 10, 24, 12), 3, "Europe/Berlin")
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)]
    # Sub-hourly in the repeated hour: every slot of both occurrences (New York, 2026-11-01).
    got = times("*/30 1 * * *", utc(2026, 10, 31, 12), 5, "America/New_York")
    assert got == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 2, 6),
    ]


def test_most_recent_counts_missed_runs() -> None:
    parsed = cron.parse("*/10 * * * *")
    latest, count = parsed.most_recent(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 35))
    assert (latest, count) == (utc(2026, 1, 1, 0, 30), 3)
    assert parsed.most_recent(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 9)) == (None, 0)
    # The end is inclusive, the start exclusive.
    assert parsed.most_recent(utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 0, 20)) == (utc(2026, 1, 1, 0, 20), 1)


def test_most_recent_after_a_long_outage_is_still_the_latest() -> None:
    parsed = cron.parse("* * * * *")
    latest, count = parsed.most_recent(utc(2026, 1, 1), utc(2026, 1, 5, 7, 3, 20))
    assert latest == utc(2026, 1, 5, 7, 3) and count > 100
