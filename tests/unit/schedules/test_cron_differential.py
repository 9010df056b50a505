"""The cron parser against robfig/cron v3.0.1 itself (as Kubernetes' CronJob uses it): random expressions in four
zones with DST changes (Lord Howe's is 30 minutes; Kathmandu is +05:45), from times near those changes, must
parse alike and give the same next activation times. One Go process (dev/crondiff) answers every request."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rds_export_operator.schedules import cron

BUILD = Path(__file__).resolve().parents[3] / "dev" / "build-crondiff.sh"
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu")
EXPRESSIONS = 5000
NEXTS = 3  # successive activations per request
_NAMES = {
    3: ["JAN", "feb", "Mar", "apr", "MAY", "jun", "Jul", "aug", "SEP", "oct", "Nov", "dec"],
    4: ["SUN", "mon", "Tue", "wed", "THU", "fri", "Sat"],
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


@pytest.fixture(scope="module")
def crondiff() -> Path:
    """The Go program, built once (cached; the build script prints its path last)."""
    done = subprocess.run(["bash", str(BUILD)], check=False, stdout=subprocess.PIPE, text=True, timeout=900)
    assert done.returncode == 0, f"{BUILD} failed with exit code {done.returncode} (see its output)"
    return Path(done.stdout.strip().splitlines()[-1])


def _value(rng: random.Random, index: int, value: int | None = None) -> str:
    low, high = _BOUNDS[index]
    value = rng.randint(low, high) if value is None else value
    if index in _NAMES and rng.random() < 0.3:
        return _NAMES[index][value - low]
    if rng.random() < 0.02:  # just outside the range (7 for the weekday): refused by both
        return str(rng.choice([low - 1 if low > 0 else high + 1, high + 1]))
    return str(value)


def _item(rng: random.Random, index: int) -> str:
    roll = rng.random()
    if roll < 0.3:
        base = rng.choice(["*", "*", "?"])
    elif roll < 0.6:
        base = _value(rng, index)
    else:
        low, high = _BOUNDS[index]
        a = rng.randint(low, high)
        b = rng.randint(a, high) if rng.random() < 0.9 else rng.randint(low, high)  # a few run backwards
        base = f"{_value(rng, index, a)}-{_value(rng, index, b)}"
    if rng.random() < 0.35:
        base += f"/{rng.choice([1, 2, 2, 3, 4, 5, 7, 10, 15, 30, 0 if rng.random() < 0.05 else 6])}"
    return base


def _field(rng: random.Random, index: int) -> str:
    if rng.random() < 0.35:  # mostly star: the day-of-month/day-of-week interplay needs both kinds
        return "*"
    return ",".join(_item(rng, index) for _ in range(rng.choice([1, 1, 1, 2, 3])))


def expression(rng: random.Random) -> str:
    if rng.random() < 0.03:
        return rng.choice([*cron.DESCRIPTORS, "@Daily"])
    fields = [_field(rng, i) for i in range(5)]
    if rng.random() < 0.3:  # sub-hourly and hourly ones meet the repeated and the skipped hour
        fields[0], fields[1] = rng.choice(["*/15", "*/10", "0,30", "45", "*/7"]), rng.choice(["*", "1-3", "2", "0"])
    return " ".join(fields)


def _transitions(zone: str) -> list[datetime]:
    """Instants of the zone's offset changes in 2025-2028 (found by the hour, then to the minute)."""
    tz, found = ZoneInfo(zone), []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    while t.year < 2029:
        if t.astimezone(tz).utcoffset() != (t + timedelta(hours=1)).astimezone(tz).utcoffset():
            found.append(t)
        t += timedelta(hours=1)
    return found


def start(rng: random.Random, transitions: list[datetime]) -> int:
    if transitions and rng.random() < 0.7:  # within a day or two of an offset change
        at = rng.choice(transitions) + timedelta(seconds=rng.randint(-2 * 86400, 86400))
    else:
        at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 4 * 365 * 86400))
    return int(at.timestamp())


def python_answer(text: str, zone: str, unix: int) -> str:
    try:
        parsed = cron.parse(text, zone)
    except cron.CronError:
        return "ERR"
    out: list[str] = []
    t = datetime.fromtimestamp(unix, UTC)
    for _ in range(NEXTS):
        found = parsed.next_after(t)
        if found is None:
            out.append("0")
            break
        out.append(str(int(found.timestamp())))
        t = found
    return " ".join(out)


def test_next_activations_equal_robfig_cron(crondiff: Path) -> None:
    rng = random.Random(24)
    requests: list[tuple[str, int, str]] = []
    for zone in ZONES:
        transitions = _transitions(zone)  # none for Kathmandu (no DST; +05:45 is the point there)
        requests += [(zone, start(rng, transitions), expression(rng)) for _ in range(EXPRESSIONS)]
    lines = "".join(f"{zone}\t{unix}\t{NEXTS}\t{text}\n" for zone, unix, text in requests)
    done = subprocess.run([str(crondiff)], input=lines, capture_output=True, text=True, timeout=300, check=True)
    answers = done.stdout.splitlines()
    assert len(answers) == len(requests)
    differences = [
        f"{zone} from {datetime.fromtimestamp(unix, UTC):%Y-%m-%dT%H:%M:%SZ} {text!r}: robfig {go!r}, ours {ours!r}"
        for (zone, unix, text), go in zip(requests, answers, strict=True)
        if (ours := python_answer(text, zone, unix)) != go
    ]
    assert not differences, f"{len(differences)} differences, e.g.:\n" + "\n".join(differences[:20])
    parsed = sum(1 for a in answers if a != "ERR")
    assert parsed > 0.8 * len(requests)  # the generator mostly makes valid expressions: the comparison means something


def test_the_go_program_reports_robfigs_answers(crondiff: Path) -> None:
    """The harness itself: a refusal, the zero time, and a known activation."""
    lines = "UTC\t0\t2\t0 0 31 2 *\nUTC\t0\t1\t0 0 * * 7\nEurope/Berlin\t1700000000\t1\t0 3 * * *\n"
    done = subprocess.run([str(crondiff)], input=lines, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines() == ["0", "ERR", str(int(datetime(2023, 11, 15, 2, tzinfo=UTC).timestamp()))]
