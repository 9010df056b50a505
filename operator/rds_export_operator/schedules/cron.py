"""Cron expressions exactly as Kubernetes' CronJob reads them: robfig/cron v3.0.1's standard parser and its
``SpecSchedule.Next``, ported line by line (pure). tests/unit/schedules/test_cron_differential.py compares this
module with the Go library itself (dev/crondiff) over thousands of random expressions in zones with DST changes.

Parsing (robfig's ``ParseStandard``): five fields (minute hour day-of-month month day-of-week) split on white
space; each a comma list (empty items are dropped) of ``*``/``?``, a value, a range ``a-b``, each optionally with
a step ``/n`` (``a/n`` runs from a to the field's end); names JAN-DEC and SUN-SAT in any case; day of week is
0-6 (7 is refused, as robfig refuses it); descriptors @yearly, @annually, @monthly, @weekly, @daily, @midnight,
@hourly (exact, lower case). When both day fields are restricted (not ``*``/``?`` without a step above 1), a day
matching either is due. Deliberate differences, both refused rather than read differently: ``@every <duration>``
(robfig accepts it; the CRD refuses it) and any schedule containing ``TZ`` (CronJob refuses ``TZ=``/``CRON_TZ=``
in new objects: ``timeZone`` says the zone).

Next (robfig's algorithm, so DST follows it exactly): it walks month, day, hour, minute and second forward in
the zone's local time, adding whole hours and minutes as instants. So a local time skipped in spring is not due
that day, a local time that occurs twice in autumn is due at both occurrences when the walk reaches it minute by
minute (e.g. ``*/15 1 * * *``), and a day's start is taken at Go's ``time.Date`` normalisation. No due time within
five years (``0 0 31 2 *``): None (robfig's zero time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
    m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, lowest, highest, names): robfig's bounds
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
MAX_YEARS = 5  # robfig's Next gives up (the zero time) after this many years
_WHITESPACE = re.compile("[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")  # Go's
_ATOI = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi accepts
_EPOCH_DAY = date(1970, 1, 1).toordinal()


class CronError(ValueError):
    """The expression or the time zone is not valid; the message says which part and why."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool  # robfig's star bit: then a day needs both fields to match, else either
    weekdays_star: bool
    zone: ZoneInfo

    def next_after(self, after: datetime) -> datetime | None:
        """The first due time strictly after ``after`` (aware), in UTC; None if none within MAX_YEARS."""
        unix = (after - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
        found = self._next(unix)
        return None if found is None else datetime.fromtimestamp(found, UTC)

    def _local(self, unix: int) -> datetime:
        return datetime.fromtimestamp(unix, self.zone)

    def _offset(self, unix: int) -> int:
        offset = self._local(unix).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _date(self, year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
        """Go's ``time.Date`` in the zone: fields normalised, a skipped or repeated local time resolved as Go does
        (the offset at the local time read as UTC, unless the result falls outside that offset's period)."""
        year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        local = (date(year, month, 1).toordinal() - _EPOCH_DAY + day - 1) * 86400 + hour * 3600 + minute * 60 + second
        offset = self._offset(local)
        if self._offset(local - offset) != offset:
            offset = self._offset(local - offset)
        return local - offset

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        return dom and dow if self.days_star or self.weekdays_star else dom or dow

    def _next(self, unix: int) -> int | None:
        t = unix + 1
        added = False
        year_limit = self._local(t).year + MAX_YEARS
        while True:  # WRAP
            lt = self._local(t)
            if lt.year > year_limit:
                return None
            wrapped = False
            while lt.month not in self.months:
                if not added:
                    added = True
                    t = self._date(lt.year, lt.month, 1, 0, 0, 0)
                    lt = self._local(t)
                t = self._date(lt.year, lt.month + 1, lt.day, lt.hour, lt.minute, lt.second)  # AddDate(0, 1, 0)
                lt = self._local(t)
                if lt.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(lt):
                if not added:
                    added = True
                    t = self._date(lt.year, lt.month, lt.day, 0, 0, 0)
                    lt = self._local(t)
                t = self._date(lt.year, lt.month, lt.day + 1, lt.hour, lt.minute, lt.second)  # AddDate(0, 0, 1)
                lt = self._local(t)
                if lt.hour != 0:  # midnight did not exist (DST): back to it, or on to the next one
                    t += (24 - lt.hour) * 3600 if lt.hour > 12 else -lt.hour * 3600
                    lt = self._local(t)
                if lt.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while lt.hour not in self.hours:
                if not added:
                    added = True
                    t = self._date(lt.year, lt.month, lt.day, lt.hour, 0, 0)
                t += 3600
                lt = self._local(t)
                if lt.hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while lt.minute not in self.minutes:
                if not added:
                    added = True
                    t -= t % 60  # Truncate(time.Minute): on the instant
                t += 60
                lt = self._local(t)
                if lt.minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            if lt.second != 0:  # the seconds field is 0: one step to the next whole minute, then WRAP
                added = True
                t += 60 - lt.second
                continue
            return t

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
    """robfig/cron's ParseStandard (with CronJob's refusal of TZ in the schedule), in ``time_zone``."""
    if "TZ" in expression:
        raise CronError("the schedule must not name a time zone (TZ=...): set timeZone instead")
    if not expression:
        raise CronError("the schedule is empty")
    text = expression
    if text.startswith("@"):
        if text not in DESCRIPTORS:
            raise CronError(f"unknown descriptor {text!r}; known: {', '.join(DESCRIPTORS)} (@every is not supported)")
        text = DESCRIPTORS[text]
    parts = [p for p in _WHITESPACE.split(text) if p]
    if len(parts) != 5:
        raise CronError(f"a schedule has 5 fields (minute hour day-of-month month day-of-week), not {len(parts)}")
    values: list[frozenset[int]] = []
    stars: list[bool] = []
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        field_values, star = _field(part, name, low, high, names)
        values.append(field_values)
        stars.append(star)
    return Cron(values[0], values[1], values[2], values[3], values[4], stars[2], stars[4], zone(time_zone))


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """robfig's getField and getRange: the values, and whether the star bit is set."""
    result: set[int] = set()
    star = False
    for item in (i for i in text.split(",") if i):
        range_and_step = item.split("/")
        if len(range_and_step) > 2:
            raise CronError(f"{name}: too many slashes in {item!r}")
        low_and_high = range_and_step[0].split("-")
        item_star = low_and_high[0] in ("*", "?")  # robfig ignores anything after "*-"
        if item_star:
            first, last = low, high
        else:
            if len(low_and_high) > 2:
                raise CronError(f"{name}: too many hyphens in {item!r}")
            first = _value(low_and_high[0], name, names)
            last = _value(low_and_high[1], name, names) if len(low_and_high) == 2 else first
        step = 1
        if len(range_and_step) == 2:
            step = _number(range_and_step[1], name)
            if len(low_and_high) == 1:
                last = high  # "a/n" means "a-<end>/n"
            item_star = item_star and step <= 1
        if first < low or last > high:
            raise CronError(f"{name}: {item!r} is outside {low}-{high}")
        if first > last:
            raise CronError(f"{name}: range {item!r} runs backwards")
        if step == 0:
            raise CronError(f"{name}: step in {item!r} must be a positive number")
        result.update(range(first, last + 1, step))
        star = star or item_star
    return frozenset(result), star


def _value(text: str, name: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    return _number(text, name, " or a name" if names else "")


def _number(text: str, name: str, alternative: str = "") -> int:
    if not _ATOI.fullmatch(text):
        raise CronError(f"{name}: {text!r} is not a number{alternative}")
    value = int(text)
    if value < 0:
        raise CronError(f"{name}: {text!r} is negative")
    return value
