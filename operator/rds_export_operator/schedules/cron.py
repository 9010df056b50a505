"""Cron expressions as CronJob reads them (robfig/cron's standard parser), in a time zone (pure).

Five fields (minute hour day-of-month month day-of-week), each ``*``, ``?``, a value, a range ``a-b``, a step
``*/n`` or ``a-b/n`` or ``a/n``, or a comma list of those; month and weekday names (JAN, MON); 7 is Sunday too;
the descriptors @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly. As in CronJob, when both
day fields are restricted a day matching either one is due, and ``TZ=``/``CRON_TZ=`` prefixes are refused
(``timeZone`` says that). Written here rather than taken from croniter so that the semantics are CronJob's.

Time zones: a local time that does not exist (the hour skipped in spring) is due at the same distance after
the gap (02:30 -> 03:30); a local time that occurs twice (autumn) is due once, at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1 for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
MAX_YEARS = 5  # "0 0 30 2 *" never comes: searching ends after this many years


class CronError(ValueError):
    """The expression or the time zone is not valid; the message says which part and why."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool  # day of month unrestricted (``*``/``?``): then only the weekday decides, and vice versa
    weekdays_star: bool
    zone: ZoneInfo

    def _day_matches(self, day: date) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        return dom and dow if self.days_star or self.weekdays_star else dom or dow

    def next_after(self, after: datetime) -> datetime | None:
        """The first due time strictly after ``after`` (aware), in UTC; None if there is none within MAX_YEARS."""
        after = after.astimezone(UTC)
        # Start a day early: a local day can begin before ``after`` in UTC terms and still hold due times after it.
        day = after.astimezone(self.zone).date() - timedelta(days=1)
        end = day + timedelta(days=366 * MAX_YEARS)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        while day <= end:
            if day.month in self.months and self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        due = self._utc(day, hour, minute)
                        if due > after:
                            return due
            day += timedelta(days=1)
        return None

    def _utc(self, day: date, hour: int, minute: int) -> datetime:
        # fold=0: an ambiguous time is its first occurrence; a time in a gap gets the offset from before the
        # gap, which lands as far after the gap's start as the wall time says.
        return datetime.combine(day, time(hour, minute), tzinfo=self.zone).astimezone(UTC)

    def most_recent(self, earliest: datetime, now: datetime, limit: int = 100) -> tuple[datetime | None, int]:
        """The latest due time in (earliest, now], and how many due times that interval holds; counting stops
        past ``limit`` (CronJob's "too many missed start times"), and the latest is then found near ``now``."""
        found, count = self._walk(earliest, now, limit)
        if count <= limit:
            return found, count
        for window in (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367)):
            recent, _ = self._walk(max(earliest, now - window), now, None)
            if recent is not None:
                return recent, count
        return found, count

    def _walk(self, earliest: datetime, now: datetime, limit: int | None) -> tuple[datetime | None, int]:
        found: datetime | None = None
        count = 0
        t = self.next_after(earliest)
        while t is not None and t <= now and (limit is None or count <= limit):
            found, count = t, count + 1
            t = self.next_after(t)
        return found, count


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone ``name`` (None or empty: UTC)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}: not in the IANA time zone database") from exc


def parse(expression: str, time_zone: str | None = None) -> Cron:
    text = expression.strip()
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise CronError("the schedule must not name a time zone (TZ=...): set timeZone instead")
    if text.startswith("@"):
        if text.lower() not in DESCRIPTORS:
            raise CronError(f"unknown descriptor {text!r}; known: {', '.join(DESCRIPTORS)}")
        text = DESCRIPTORS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"a schedule has 5 fields (minute hour day-of-month month day-of-week), not {len(parts)}")
    values: list[frozenset[int]] = []
    stars: list[bool] = []
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        field_values, star = _field(part, name, low, high, names)
        values.append(field_values)
        stars.append(star)
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(values[0], values[1], values[2], values[3], weekdays, stars[2], stars[4], zone(time_zone))


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    result: set[int] = set()
    star = False
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} in {item!r} must be a positive number")
            step = int(step_text)
        if span in ("*", "?"):
            first, last = low, high
            star = star or step == 1
        else:
            first_text, dash, last_text = span.partition("-")
            first = _value(first_text, name, low, high, names)
            # "a/n" runs from a to the end of the range, as robfig/cron reads it.
            last = _value(last_text, name, low, high, names) if dash else (high if step_text else first)
            if first > last:
                raise CronError(f"{name}: range {span!r} runs backwards")
        result.update(range(first, last + 1, step))
    return frozenset(result), star


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value
