"""WHEN expressions (`--since`, `--at`, `vault diff A B`): a moment in time or a git revision.

Grammar, matched case-insensitively after trimming surrounding whitespace:

- revisions (returned as `Revision`, resolved later by the repo module):
  a commit id or prefix of 4-40 hex digits with at least one letter a-f, or 7-40 plain digits;
  `HEAD` and `@` (both become `HEAD`); any of those, or a branch name, followed by `~N`/`^N`
  suffixes (`HEAD~3`, `HEAD^`, `@~1`, `main~2`, `origin/main^2`). A bare branch name is not
  accepted: it would turn every typo of a time into a revision. Digit-only strings of 1-6 digits
  are rejected as ambiguous (`2026` is a year as much as a commit prefix).
- `now`; `today` and `yesterday`, optionally with a time (`yesterday 17:30`, `today at 9:05`).
- a date `2026-11-21`: the END of that local day by default, so `restore --at 2026-11-20` gives
  the state at the end of Nov 20; `date_means="start"` gives local midnight instead (for
  `log --since`). `today`/`yesterday` follow the same rule; a date that has begun but not ended
  (today) ends "now".
- ISO 8601 date and time, `T` or a space between, seconds and fractions optional, with `Z`,
  `UTC` or a `+01:00`/`+0100`/`+01` offset; without a zone it is local wall time.
- a time of day `HH:MM[:SS]` (optionally with a zone): that time today.
- relative: `2h ago`, `3 days ago`, `1h30m ago`, `1 hour and 30 minutes ago`, `an hour ago`,
  git's `2.weeks.ago`; units s/sec/second, m/min/minute, h/hr/hour, d/day, w/wk/week.
- `@<unix seconds>`, fractions allowed: `@1763720100`.

No moment may lie after `now`. A local wall time that the clocks skip (spring forward)
or pass twice (fall back) is rejected with the two offsets to choose from; computed day
boundaries never fail: they use the first or last instant that really belongs to the day.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Literal, TypeAlias

from vault.errors import UsageError

__all__ = ["Moment", "Revision", "When", "format_utc", "parse_duration", "parse_when"]

UTC = timezone.utc
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1)

FORMS = (
    "use an ISO time (2026-11-21T10:15), a date, HH:MM, '2h ago', 'yesterday' or a commit id"
)
DURATION_FORMS = "use a number and a unit, e.g. 90s, 15m, 1h30m, 2d or 1w"
_NO_FIXED_LENGTH = "months and years have no fixed length; use days or weeks"


@dataclass(frozen=True)
class Moment:
    """A point in time; `at` is always timezone-aware UTC."""

    at: datetime

    def __post_init__(self) -> None:
        if self.at.utcoffset() is None:
            raise ValueError("Moment needs a timezone-aware datetime")
        object.__setattr__(self, "at", self.at.astimezone(UTC))


@dataclass(frozen=True)
class Revision:
    """Something for git to resolve: a commit id or prefix, HEAD, HEAD~3, main~2."""

    spec: str


When: TypeAlias = Moment | Revision

DateMeans = Literal["end", "start"]


# --- the system's local zone -------------------------------------------------------------------


class _SystemLocalTime(tzinfo):
    """The operating system's local zone with its DST rules, as naive datetimes convert.

    `now.astimezone().tzinfo` would be a fixed offset: right for today, an hour off for a date
    on the other side of a DST change.
    """

    def utcoffset(self, dt: datetime | None) -> timedelta:
        """Offset of local wall time `dt` from UTC (the fold picks between repeated times)."""
        if dt is None:
            return _current_offset()
        wall = dt.replace(tzinfo=None, microsecond=0)
        try:
            seconds = int(wall.timestamp())  # naive: interpreted as local time, fold honoured
        except (OverflowError, OSError, ValueError):
            return _current_offset()
        return wall - (_EPOCH + timedelta(seconds=seconds))

    def dst(self, dt: datetime | None) -> timedelta | None:
        """Unknown: the operating system reports offsets, not their split into DST."""
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        """The zone abbreviation the operating system uses at `dt`."""
        if dt is None:
            seconds = time.time()
        else:
            seconds = (dt.replace(tzinfo=None) - self.utcoffset(dt) - _EPOCH).total_seconds()
        try:
            return time.localtime(seconds).tm_zone
        except (OverflowError, OSError, ValueError):
            return None

    def fromutc(self, dt: datetime) -> datetime:
        """Local wall time (fold set on the second pass of a repeated hour) for UTC `dt`."""
        utc = dt.replace(tzinfo=None)
        seconds = (utc.replace(microsecond=0) - _EPOCH) // timedelta(seconds=1)
        try:
            local = datetime.fromtimestamp(seconds)
        except (OverflowError, OSError, ValueError):
            local = utc.replace(microsecond=0) + _current_offset()
        return local.replace(microsecond=utc.microsecond, tzinfo=self)

    def __repr__(self) -> str:
        return "_SystemLocalTime()"


def _current_offset() -> timedelta:
    """The local zone's offset from UTC right now."""
    return datetime.now().astimezone().utcoffset() or timedelta(0)


# --- local wall time to UTC --------------------------------------------------------------------


def _instants(wall: datetime, tz: tzinfo) -> list[datetime]:
    """The UTC instants whose local time in `tz` reads `wall`: none (skipped), one, or two."""
    found: set[datetime] = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == wall:
            found.add(instant)
    return sorted(found)


def _offset_text(offset: timedelta | None) -> str:
    """An offset as +HH:MM."""
    minutes = (offset or timedelta(0)) // timedelta(minutes=1)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _typed_wall_to_utc(wall: datetime, tz: tzinfo, text: str) -> datetime:
    """The one UTC instant a user-typed local time means; skipped or repeated times are errors."""
    found = _instants(wall, tz)
    if len(found) == 1:
        return found[0]
    # The two folds carry the offsets before and after the change, whichever way it went.
    offsets = sorted({_offset_text(wall.replace(tzinfo=tz, fold=f).utcoffset()) for f in (0, 1)})
    choice = " or ".join(offsets)
    if found:
        raise UsageError(
            f"time {text!r} is ambiguous in local time (it happens twice as clocks go back): "
            f"add the offset you mean, {choice}"
        )
    raise UsageError(
        f"time {text!r} does not exist in local time (clocks skip it going forward): "
        f"add an offset, {choice}"
    )


def _day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant of local `day` (after the gap when midnight is skipped), in UTC."""
    wall = datetime(day.year, day.month, day.day)
    found = _instants(wall, tz)
    if found:
        return found[0]
    # Midnight falls in a DST gap: bisect for the instant the clocks jump, the day's first.
    lo, hi = sorted(wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    low, high = 0, (hi - lo) // _ONE_US
    while high - low > 1:
        mid = (low + high) // 2
        if (lo + mid * _ONE_US).astimezone(tz).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return lo + high * _ONE_US


def _day_end(day: date, tz: tzinfo) -> datetime:
    """The last instant (to the microsecond) of local `day`, in UTC."""
    return _day_start(day + timedelta(days=1), tz) - _ONE_US


# --- durations ---------------------------------------------------------------------------------

_UNITS: dict[str, timedelta] = {}
for _names, _size in (
    (("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    (("m", "min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    (("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    (("d", "day", "days"), timedelta(days=1)),
    (("w", "wk", "wks", "week", "weeks"), timedelta(weeks=1)),
):
    for _name in _names:
        _UNITS[_name] = _size

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?) ?([a-z]+)(?:, ?| )?")
_NO_FIXED_UNIT = re.compile(r"\d ?(mo|mos|mon|mons|month|months|y|yr|yrs|year|years)\b")
# git's approxidate spells "2 weeks ago" as 2.weeks.ago; a dot between two digits is a fraction.
_WORD_DOT = re.compile(r"(?<=[0-9a-z])\.(?=[a-z])|(?<=[a-z])\.(?=[0-9])")


def _normalize(text: str) -> str:
    """Lower-case, trimmed, single-spaced."""
    return " ".join(text.lower().split())


def _scan_duration(text: str) -> timedelta | None:
    """Sum of `<number><unit>` parts in normalized `text`, or None when it is not a duration."""
    text = _WORD_DOT.sub(" ", text).replace(" and ", " ")
    text = re.sub(r"^an? (?=[a-z])", "1 ", text)
    pos, total, parts = 0, timedelta(0), 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None or match.group(2) not in _UNITS:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos, parts = match.end(), parts + 1
    return total if parts else None


def _is_duration(text: str) -> bool:
    """True when normalized `text` reads as a duration, however long."""
    try:
        return _scan_duration(text) is not None
    except OverflowError:
        return True


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '15m', '1h30m', '2 days', '1w' into a positive timedelta."""
    norm = _normalize(text)
    try:
        duration = _scan_duration(norm)
    except OverflowError:
        raise UsageError(f"duration {text.strip()!r} is too long") from None
    if duration is None:
        if _NO_FIXED_UNIT.search(norm):
            raise UsageError(
                f"cannot understand duration {text.strip()!r}: {_NO_FIXED_LENGTH} (e.g. 30d)"
            )
        raise UsageError(f"cannot understand duration {text.strip()!r}: {DURATION_FORMS}")
    if duration <= timedelta(0):
        raise UsageError(f"duration {text.strip()!r} must be longer than zero")
    return duration


# --- revisions ---------------------------------------------------------------------------------

_REVISION = re.compile(r"(?P<base>[^~^\s]+)(?P<suffix>(?:~\d*|\^\d*)*)")
_HEX_ID = re.compile(r"[0-9a-fA-F]{4,40}")
_DIGITS = re.compile(r"\d+")
# Close to git check-ref-format: no "..", "//" or "@{"; no leading "-" or "."; no trailing "/",
# "." or ".lock".
_REF_NAME = re.compile(r"(?!.*(?:\.\.|//|@\{|\.lock$|[/.]$))[A-Za-z0-9_][A-Za-z0-9_./+@-]*")


def _revision(text: str) -> Revision | None:
    """The revision `text` names, or None; a short bare number is an error (year or commit?)."""
    match = _REVISION.fullmatch(text)
    if match is None:
        return None
    base, suffix = match.group("base"), match.group("suffix")
    if base.upper() == "HEAD" or base == "@":
        return Revision("HEAD" + suffix)
    if _DIGITS.fullmatch(base) and len(base) < 7 and not suffix:
        raise UsageError(
            f"ambiguous time {text!r}: a short number is neither a date nor a commit id; "
            f"use a full date (2026-11-21), @{text} for unix seconds, or 7+ digits of a commit id"
        )
    if _HEX_ID.fullmatch(base) or (suffix and _REF_NAME.fullmatch(base)):
        return Revision(text)
    return None


# --- moments -----------------------------------------------------------------------------------

_TIME = r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?"
_ZONE = r"(?: ?(?P<zone>z|utc|[+-]\d{2}(?::?\d{2})?))?"
_ISO = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?:[t ]" + _TIME + _ZONE + ")?")
_CLOCK = re.compile(_TIME + _ZONE)
_DAY_WORD = re.compile(r"(?P<word>today|yesterday)(?: (?:at )?" + _TIME + _ZONE + ")?")
_UNIX = re.compile(r"@(?P<seconds>-?\d+(?:\.\d+)?)")
_AGO = re.compile(r"(?P<sign>[+-])?(?P<body>.+) ago")
_IN = re.compile(r"in (?P<body>.+)")


def _zone(match: re.Match[str], local_tz: tzinfo) -> tzinfo:
    """The zone a matched time names, or the local zone when it names none."""
    zone = match.group("zone")
    if zone is None:
        return local_tz
    if zone in ("z", "utc"):
        return UTC
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {zone} is out of range")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if zone[0] == "-" else offset)


def _wall(day: date, match: re.Match[str]) -> datetime:
    """Naive datetime for `day` at the matched time of day."""
    fraction = match.group("fraction") or ""
    return datetime(
        day.year,
        day.month,
        day.day,
        int(match.group("hour")),
        int(match.group("minute")),
        int(match.group("second") or 0),
        int((fraction + "000000")[:6]),  # truncate nanoseconds: never round into the next second
    )


def _at_time(day: date, match: re.Match[str], local_tz: tzinfo, text: str) -> datetime:
    """The UTC instant of the matched time of day on `day`, in its zone or local time."""
    zone = _zone(match, local_tz)
    wall = _wall(day, match)
    if zone is local_tz:
        return _typed_wall_to_utc(wall, zone, text)
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _whole_day(day: date, tz: tzinfo, now: datetime, date_means: DateMeans, text: str) -> datetime:
    """Start or end of local `day`; a day in progress ends now, a day not yet begun is an error."""
    start = _day_start(day, tz)
    if start > now:
        raise _future(text, now)
    if date_means == "start":
        return start
    return min(_day_end(day, tz), now)


def _future(text: str, now: datetime) -> UsageError:
    """The error for a moment after now."""
    return UsageError(f"time {text!r} is in the future", hint=f"it is now {format_utc(now)}")


def _moment(
    norm: str, text: str, now: datetime, local_tz: tzinfo, date_means: DateMeans
) -> datetime | None:
    """The UTC instant normalized `norm` names, or None when it is no time expression."""
    today = now.astimezone(local_tz).date()
    if norm == "now":
        return now
    if match := _DAY_WORD.fullmatch(norm):
        day = today if match.group("word") == "today" else today - timedelta(days=1)
        if match.group("hour") is None:
            return _whole_day(day, local_tz, now, date_means, text)
        if match.group("zone") is not None:
            day = now.astimezone(_zone(match, local_tz)).date() - (today - day)
        return _at_time(day, match, local_tz, text)
    if match := _ISO.fullmatch(norm):
        day = date(int(match.group("year")), int(match.group("month")), int(match.group("day")))
        if match.group("hour") is None:
            return _whole_day(day, local_tz, now, date_means, text)
        return _at_time(day, match, local_tz, text)
    if match := _CLOCK.fullmatch(norm):
        day = now.astimezone(_zone(match, local_tz)).date()
        return _at_time(day, match, local_tz, text)
    if match := _UNIX.fullmatch(norm):
        try:
            return datetime.fromtimestamp(float(match.group("seconds")), UTC)
        except ValueError:  # "year 3170843 is out of range": reported as out of range below
            raise OverflowError from None
    relative = _WORD_DOT.sub(" ", norm)
    if match := _AGO.fullmatch(relative):
        ago = _scan_duration(match.group("body"))
        if ago is None:
            return None
        return now + ago if match.group("sign") == "-" else now - ago
    if match := _IN.fullmatch(relative):
        ahead = _scan_duration(match.group("body"))
        return None if ahead is None else now + ahead
    return None


def parse_when(
    text: str,
    *,
    now: datetime,
    local_tz: tzinfo | None = None,
    date_means: DateMeans = "end",
) -> When:
    """Parse a WHEN expression into a UTC Moment (not after `now`) or a Revision to resolve."""
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if date_means not in ("end", "start"):
        raise ValueError(f"date_means must be 'end' or 'start', not {date_means!r}")
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"no time given: {FORMS}")
    revision = _revision(stripped)
    if revision is not None:
        return revision
    norm = _normalize(stripped)
    try:
        zone = _SystemLocalTime() if local_tz is None else local_tz
        at = _moment(norm, stripped, now, zone, date_means)
    except ValueError as exc:  # a field out of range: month 13, 25:00, Feb 30, offset +24:00
        raise UsageError(f"cannot understand time {stripped!r}: {exc}") from None
    except (OverflowError, OSError):  # OSError: the platform's fromtimestamp refuses the year
        raise UsageError(f"time {stripped!r} is out of range") from None
    if at is None:
        if _NO_FIXED_UNIT.search(norm):
            raise UsageError(
                f"cannot understand time {stripped!r}: {_NO_FIXED_LENGTH} ('90 days ago') or a date"
            )
        if _is_duration(norm):
            raise UsageError(f"cannot understand time {stripped!r}: did you mean '{stripped} ago'?")
        raise UsageError(f"cannot understand time {stripped!r}: {FORMS}")
    if at > now:
        raise _future(stripped, now)
    return Moment(at)


def format_utc(dt: datetime) -> str:
    """An aware datetime as '2026-11-21T10:15:00Z' (UTC, whole seconds)."""
    if dt.utcoffset() is None:
        raise ValueError("format_utc needs a timezone-aware datetime")
    u = dt.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"
