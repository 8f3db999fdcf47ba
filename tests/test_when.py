"""Tests for vault.when: WHEN expressions, durations and UTC formatting."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from vault.errors import EXIT_USAGE, UsageError
from vault.when import Moment, Revision, When, format_utc, parse_duration, parse_when

UTC = timezone.utc
NOW = datetime(2026, 11, 21, 10, 15, tzinfo=UTC)  # 11:15 in Berlin (CET), 15:45 in FIXED
BERLIN = ZoneInfo("Europe/Berlin")
HAVANA = ZoneInfo("America/Havana")
SANTIAGO = ZoneInfo("America/Santiago")
FIXED = timezone(timedelta(hours=5, minutes=30))
FORMS = (
    "use an ISO time (2026-11-21T10:15), a date, HH:MM, '2h ago', 'yesterday' or a commit id"
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> Moment:
    """A Moment from UTC fields."""
    return Moment(datetime(year, month, day, hour, minute, second, us, tzinfo=UTC))


def parse(text: str, tz: tzinfo = BERLIN, **kwargs: object) -> When:
    """parse_when at the fixed NOW in `tz`."""
    return parse_when(text, now=NOW, local_tz=tz, **kwargs)  # type: ignore[arg-type]


def error(text: str, tz: tzinfo = BERLIN, **kwargs: object) -> UsageError:
    """The UsageError parse_when raises for `text`."""
    with pytest.raises(UsageError) as caught:
        parse(text, tz, **kwargs)
    return caught.value


# --- moments -----------------------------------------------------------------------------------

MOMENTS = [
    # ISO with a zone: the zone wins over local time
    ("2026-11-21T10:15:00Z", BERLIN, utc(2026, 11, 21, 10, 15)),
    ("2026-11-21T10:15:00+01:00", BERLIN, utc(2026, 11, 21, 9, 15)),
    ("2026-11-21T10:15+0100", FIXED, utc(2026, 11, 21, 9, 15)),
    ("2026-11-21T05:15-05", BERLIN, utc(2026, 11, 21, 10, 15)),
    ("2026-11-21 10:15 UTC", FIXED, utc(2026, 11, 21, 10, 15)),
    ("2026-11-21 10:15 +01:00", FIXED, utc(2026, 11, 21, 9, 15)),
    ("2026-11-21t10:14:59.5z", BERLIN, utc(2026, 11, 21, 10, 14, 59, 500000)),
    ("2026-11-21T10:14:59,25Z", BERLIN, utc(2026, 11, 21, 10, 14, 59, 250000)),
    # nanoseconds are truncated, never rounded up into the next second
    ("2026-11-21T10:14:59.999999999Z", BERLIN, utc(2026, 11, 21, 10, 14, 59, 999999)),
    # ISO without a zone: local wall time
    ("2026-11-21 10:15", BERLIN, utc(2026, 11, 21, 9, 15)),
    ("2026-11-21T10:15:30", BERLIN, utc(2026, 11, 21, 9, 15, 30)),
    ("2026-11-21 9:05", BERLIN, utc(2026, 11, 21, 8, 5)),
    ("2026-11-21 10:15", FIXED, utc(2026, 11, 21, 4, 45)),
    ("2026-07-01 12:00", BERLIN, utc(2026, 7, 1, 10)),  # summer: +02:00 though NOW is in winter
    ("2026-07-01 12:00", FIXED, utc(2026, 7, 1, 6, 30)),
    # DST-adjacent wall times that exist exactly once
    ("2026-03-29 01:59", BERLIN, utc(2026, 3, 29, 0, 59)),
    ("2026-03-29 03:00", BERLIN, utc(2026, 3, 29, 1)),
    ("2026-10-25 01:59", BERLIN, utc(2026, 10, 24, 23, 59)),
    ("2026-10-25 03:00", BERLIN, utc(2026, 10, 25, 2)),
    ("2026-10-25T02:30+02:00", BERLIN, utc(2026, 10, 25, 0, 30)),
    ("2026-10-25T02:30+01:00", BERLIN, utc(2026, 10, 25, 1, 30)),
    # time of day: today, local
    ("10:00", BERLIN, utc(2026, 11, 21, 9)),
    ("11:15", BERLIN, utc(2026, 11, 21, 10, 15)),  # exactly now is not the future
    ("0:00", BERLIN, utc(2026, 11, 20, 23)),
    ("08:30:15", BERLIN, utc(2026, 11, 21, 7, 30, 15)),
    ("15:00", FIXED, utc(2026, 11, 21, 9, 30)),
    ("10:00Z", BERLIN, utc(2026, 11, 21, 10)),
    ("today 9:05", BERLIN, utc(2026, 11, 21, 8, 5)),
    ("yesterday 17:30", BERLIN, utc(2026, 11, 20, 16, 30)),
    ("Yesterday at 23:30", BERLIN, utc(2026, 11, 20, 22, 30)),
    ("yesterday 23:30", FIXED, utc(2026, 11, 20, 18)),
    # relative
    ("now", BERLIN, utc(2026, 11, 21, 10, 15)),
    ("2h ago", BERLIN, utc(2026, 11, 21, 8, 15)),
    ("2 hours ago", FIXED, utc(2026, 11, 21, 8, 15)),
    ("3 days ago", BERLIN, utc(2026, 11, 18, 10, 15)),
    ("90 minutes ago", BERLIN, utc(2026, 11, 21, 8, 45)),
    ("1 week ago", BERLIN, utc(2026, 11, 14, 10, 15)),
    ("30s ago", BERLIN, utc(2026, 11, 21, 10, 14, 30)),
    ("1h30m ago", BERLIN, utc(2026, 11, 21, 8, 45)),
    ("1h 30m ago", BERLIN, utc(2026, 11, 21, 8, 45)),
    ("1 hour and 30 minutes ago", BERLIN, utc(2026, 11, 21, 8, 45)),
    ("an hour ago", BERLIN, utc(2026, 11, 21, 9, 15)),
    ("a day ago", BERLIN, utc(2026, 11, 20, 10, 15)),
    ("1.5h ago", BERLIN, utc(2026, 11, 21, 8, 45)),
    ("2.weeks.ago", BERLIN, utc(2026, 11, 7, 10, 15)),
    ("5 sec ago", BERLIN, utc(2026, 11, 21, 10, 14, 55)),
    ("2 hrs ago", BERLIN, utc(2026, 11, 21, 8, 15)),
    ("10 mins ago", BERLIN, utc(2026, 11, 21, 10, 5)),
    ("0s ago", BERLIN, utc(2026, 11, 21, 10, 15)),
    # unix seconds
    ("@1763720100", BERLIN, utc(2025, 11, 21, 10, 15)),
    ("@1763720100.25", BERLIN, utc(2025, 11, 21, 10, 15, 0, 250000)),
    ("@0", FIXED, utc(1970, 1, 1)),
    # case and surrounding whitespace do not matter
    ("  NOW\n", BERLIN, utc(2026, 11, 21, 10, 15)),
    ("2H AGO", BERLIN, utc(2026, 11, 21, 8, 15)),
    ("3   Days    Ago", BERLIN, utc(2026, 11, 18, 10, 15)),
]


@pytest.mark.parametrize(("text", "tz", "expected"), MOMENTS)
def test_moments(text: str, tz: tzinfo, expected: Moment) -> None:
    result = parse(text, tz)
    assert result == expected
    assert isinstance(result, Moment) and result.at.tzinfo is UTC


# --- whole days: a date means its end unless the caller asks for its start -----------------------

DAYS = [
    # text, tz, end (default), start
    ("2026-11-20", BERLIN, utc(2026, 11, 20, 22, 59, 59, 999999), utc(2026, 11, 19, 23)),
    ("2026-11-20", FIXED, utc(2026, 11, 20, 18, 29, 59, 999999), utc(2026, 11, 19, 18, 30)),
    ("yesterday", BERLIN, utc(2026, 11, 20, 22, 59, 59, 999999), utc(2026, 11, 19, 23)),
    ("YESTERDAY", FIXED, utc(2026, 11, 20, 18, 29, 59, 999999), utc(2026, 11, 19, 18, 30)),
    # today has begun but not ended: its end is now
    ("today", BERLIN, utc(2026, 11, 21, 10, 15), utc(2026, 11, 20, 23)),
    ("2026-11-21", BERLIN, utc(2026, 11, 21, 10, 15), utc(2026, 11, 20, 23)),
    ("today", FIXED, utc(2026, 11, 21, 10, 15), utc(2026, 11, 20, 18, 30)),
    ("2026-07-01", BERLIN, utc(2026, 7, 1, 21, 59, 59, 999999), utc(2026, 6, 30, 22)),
    # DST days in Berlin are 23 and 25 hours long
    ("2026-03-29", BERLIN, utc(2026, 3, 29, 21, 59, 59, 999999), utc(2026, 3, 28, 23)),
    ("2026-10-25", BERLIN, utc(2026, 10, 25, 22, 59, 59, 999999), utc(2026, 10, 24, 22)),
    # Havana: midnight is skipped on Mar 8 (00:00 -> 01:00) and passes twice on Nov 1
    ("2026-03-08", HAVANA, utc(2026, 3, 9, 3, 59, 59, 999999), utc(2026, 3, 8, 5)),
    ("2026-03-07", HAVANA, utc(2026, 3, 8, 4, 59, 59, 999999), utc(2026, 3, 7, 5)),
    ("2026-11-01", HAVANA, utc(2026, 11, 2, 4, 59, 59, 999999), utc(2026, 11, 1, 4)),
    ("2026-10-31", HAVANA, utc(2026, 11, 1, 3, 59, 59, 999999), utc(2026, 10, 31, 4)),
    # Santiago: 23:00-24:00 passes twice on Apr 4; midnight is skipped on Sep 6
    ("2026-04-04", SANTIAGO, utc(2026, 4, 5, 3, 59, 59, 999999), utc(2026, 4, 4, 3)),
    ("2026-09-06", SANTIAGO, utc(2026, 9, 7, 2, 59, 59, 999999), utc(2026, 9, 6, 4)),
]


@pytest.mark.parametrize(("text", "tz", "end", "start"), DAYS)
def test_days(text: str, tz: tzinfo, end: Moment, start: Moment) -> None:
    assert parse(text, tz) == end
    assert parse(text, tz, date_means="end") == end
    assert parse(text, tz, date_means="start") == start


def test_date_end_is_the_last_microsecond_of_the_local_day() -> None:
    result = parse("2026-11-20")
    assert isinstance(result, Moment)
    assert result.at.astimezone(BERLIN).isoformat() == "2026-11-20T23:59:59.999999+01:00"
    assert (result.at + timedelta(microseconds=1)).astimezone(BERLIN).isoformat() == (
        "2026-11-21T00:00:00+01:00"
    )


def test_date_means_is_checked() -> None:
    with pytest.raises(ValueError, match="date_means"):
        parse("today", date_means="middle")


# --- revisions ---------------------------------------------------------------------------------

REVISIONS = [
    ("abcd", "abcd"),
    ("abc1234", "abc1234"),
    ("ABC1234", "ABC1234"),  # git accepts either case; a branch could be named so, keep it
    ("dead", "dead"),
    ("0123abc", "0123abc"),
    ("1234567", "1234567"),  # 7+ plain digits: a commit id
    ("20261121", "20261121"),
    ("1763720100", "1763720100"),  # unix seconds need their @
    ("a" * 40, "a" * 40),
    ("1" * 40, "1" * 40),
    ("HEAD", "HEAD"),
    ("head", "HEAD"),
    ("HEAD~3", "HEAD~3"),
    ("head~", "HEAD~"),
    ("HEAD^", "HEAD^"),
    ("HEAD^2", "HEAD^2"),
    ("HEAD~2^2", "HEAD~2^2"),
    ("@", "HEAD"),
    ("@~1", "HEAD~1"),
    ("@^", "HEAD^"),
    ("main~2", "main~2"),
    ("origin/main^", "origin/main^"),
    ("feature/Foo-1.2~1", "feature/Foo-1.2~1"),
    ("abc1234~1", "abc1234~1"),
    ("2026~1", "2026~1"),  # a suffix makes even a short number a revision
    ("  HEAD~1 ", "HEAD~1"),
]


@pytest.mark.parametrize(("text", "spec"), REVISIONS)
def test_revisions(text: str, spec: str) -> None:
    assert parse(text) == Revision(spec)


NOT_REVISIONS = [
    "main",  # a bare branch name would turn every typo into a revision
    "abc",  # 3 hex digits: too short
    "a" * 41,
    "1" * 41,
    "abcg123",
    "HEAD~x",
    "HEAD@{1}",
    "main..dev~1",
    "-x~1",
    "HEAD ~1",
]


@pytest.mark.parametrize("text", NOT_REVISIONS)
def test_not_revisions(text: str) -> None:
    assert error(text).message == f"cannot understand time {text.strip()!r}: {FORMS}"


@pytest.mark.parametrize("text", ["2026", "1", "42", "123456", "000000"])
def test_short_numbers_are_ambiguous(text: str) -> None:
    assert error(text).message == (
        f"ambiguous time '{text}': a short number is neither a date nor a commit id; "
        f"use a full date (2026-11-21), @{text} for unix seconds, or 7+ digits of a commit id"
    )


# --- errors ------------------------------------------------------------------------------------


def test_unknown_word_names_the_input_and_the_forms() -> None:
    exc = error("tomorow")
    assert str(exc) == (
        "cannot understand time 'tomorow': use an ISO time (2026-11-21T10:15), a date, HH:MM, "
        "'2h ago', 'yesterday' or a commit id"
    )
    assert exc.exit_code == EXIT_USAGE


def test_future_time_of_day() -> None:
    exc = error("23:50")
    assert exc.message == "time '23:50' is in the future"
    assert exc.hint == "it is now 2026-11-21T10:15:00Z"


FUTURE = [
    ("11:16", BERLIN),
    ("15:46", FIXED),
    ("today 23:00", BERLIN),
    ("2026-11-21T10:15:01Z", BERLIN),
    ("2026-11-21T10:15:00.000001Z", BERLIN),
    ("2026-11-21 11:16", BERLIN),
    ("2026-11-22", BERLIN),
    ("2026-11-22", FIXED),
    ("2027-01-01", BERLIN),
    ("-2h ago", BERLIN),
    ("in 2 hours", BERLIN),
    ("@1900000000", BERLIN),
]


@pytest.mark.parametrize(("text", "tz"), FUTURE)
def test_future(text: str, tz: tzinfo) -> None:
    assert error(text, tz).message == f"time {text!r} is in the future"
    assert error(text, tz, date_means="start").message == f"time {text!r} is in the future"


def test_tomorrow_starts_in_the_future_even_as_a_start() -> None:
    # 2026-11-22 begins at 18:30Z in FIXED (+05:30): still after NOW.
    assert error("2026-11-22", FIXED, date_means="start").message.endswith("in the future")


def test_skipped_wall_time_is_an_error() -> None:
    assert error("2026-03-29 02:30").message == (
        "time '2026-03-29 02:30' does not exist in local time (clocks skip it going forward): "
        "add an offset, +01:00 or +02:00"
    )


def test_repeated_wall_time_is_an_error() -> None:
    assert error("2026-10-25T02:30").message == (
        "time '2026-10-25T02:30' is ambiguous in local time (it happens twice as clocks go back): "
        "add the offset you mean, +01:00 or +02:00"
    )


NO_FIXED_LENGTH = (
    "months and years have no fixed length; use days or weeks ('90 days ago') or a date"
)
ERRORS = [
    ("", "no time given: " + FORMS),
    ("   ", "no time given: " + FORMS),
    ("tomorrow", "cannot understand time 'tomorrow': " + FORMS),
    ("last week", "cannot understand time 'last week': " + FORMS),
    ("2 parsecs ago", "cannot understand time '2 parsecs ago': " + FORMS),
    ("2026-11", "cannot understand time '2026-11': " + FORMS),
    ("21.11.2026", "cannot understand time '21.11.2026': " + FORMS),
    ("2026-11-21T10", "cannot understand time '2026-11-21T10': " + FORMS),
    ("2h", "cannot understand time '2h': did you mean '2h ago'?"),
    ("3 days", "cannot understand time '3 days': did you mean '3 days ago'?"),
    ("2026-02-30", "cannot understand time '2026-02-30': day is out of range for month"),
    ("2026-13-01", "cannot understand time '2026-13-01': month must be in 1..12"),
    ("24:00", "cannot understand time '24:00': hour must be in 0..23"),
    ("10:60", "cannot understand time '10:60': minute must be in 0..59"),
    ("10:15+24:00", "cannot understand time '10:15+24:00': offset +24:00 is out of range"),
    ("3 months ago", "cannot understand time '3 months ago': " + NO_FIXED_LENGTH),
    ("1y ago", "cannot understand time '1y ago': " + NO_FIXED_LENGTH),
    ("99999999999 days ago", "time '99999999999 days ago' is out of range"),
    ("@99999999999999", "time '@99999999999999' is out of range"),
    ("9999-12-31", "time '9999-12-31' is in the future"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors(text: str, message: str) -> None:
    assert error(text).message == message


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_when("now", now=datetime(2026, 11, 21, 10, 15))


# --- the system's local zone -------------------------------------------------------------------


@pytest.fixture
def berlin_system_zone() -> Iterator[None]:
    """Make the process's local zone Europe/Berlin for the test."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


SYSTEM_ZONE_CASES = [
    "2026-11-21 10:15",
    "2026-07-01 12:00",  # DST rules apply, not NOW's offset
    "2026-03-29",
    "2026-10-25",
    "2026-10-25 01:59",
    "2026-10-25 03:00",
    "2026-03-29 03:00",
    "yesterday",
    "10:00",
    "2h ago",
]


@pytest.mark.parametrize("text", SYSTEM_ZONE_CASES)
@pytest.mark.parametrize("date_means", ["end", "start"])
@pytest.mark.usefixtures("berlin_system_zone")
def test_default_local_zone_is_the_system_zone(text: str, date_means: str) -> None:
    default = parse_when(text, now=NOW, date_means=date_means)  # type: ignore[arg-type]
    assert default == parse(text, BERLIN, date_means=date_means)


@pytest.mark.parametrize("text", ["2026-03-29 02:30", "2026-10-25 02:30", "11:16"])
@pytest.mark.usefixtures("berlin_system_zone")
def test_default_local_zone_errors_like_the_zone(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_when(text, now=NOW)
    assert caught.value.message == error(text, BERLIN).message


# --- Moment ------------------------------------------------------------------------------------


def test_moment_is_stored_in_utc() -> None:
    moment = Moment(datetime(2026, 11, 21, 11, 15, tzinfo=BERLIN))
    assert moment.at.tzinfo is UTC
    assert moment == utc(2026, 11, 21, 10, 15)


def test_moment_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        Moment(datetime(2026, 11, 21, 10, 15))


# --- format_utc --------------------------------------------------------------------------------

FORMATTED = [
    (datetime(2026, 11, 21, 10, 15, tzinfo=UTC), "2026-11-21T10:15:00Z"),
    (datetime(2026, 11, 21, 11, 15, 7, 999999, tzinfo=BERLIN), "2026-11-21T10:15:07Z"),
    (datetime(2026, 11, 21, 1, 0, tzinfo=FIXED), "2026-11-20T19:30:00Z"),
    (datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN), "2026-10-25T01:30:00Z"),
    (datetime(2026, 10, 25, 2, 30, fold=0, tzinfo=BERLIN), "2026-10-25T00:30:00Z"),
    (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05Z"),
]


@pytest.mark.parametrize(("dt", "text"), FORMATTED)
def test_format_utc(dt: datetime, text: str) -> None:
    assert format_utc(dt) == text


def test_format_utc_round_trips_through_parse_when() -> None:
    moment = parse("2026-11-20T08:09:10Z")
    assert isinstance(moment, Moment)
    assert format_utc(moment.at) == "2026-11-20T08:09:10Z"


def test_format_utc_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_utc(datetime(2026, 11, 21, 10, 15))


# --- parse_duration ----------------------------------------------------------------------------

DURATIONS = [
    ("15m", timedelta(minutes=15)),
    ("1h", timedelta(hours=1)),
    ("90s", timedelta(seconds=90)),
    ("2d", timedelta(days=2)),
    ("1w", timedelta(weeks=1)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1h 30m", timedelta(hours=1, minutes=30)),
    ("1d12h", timedelta(days=1, hours=12)),
    ("2 days", timedelta(days=2)),
    ("1 hour and 30 minutes", timedelta(hours=1, minutes=30)),
    ("1.5h", timedelta(hours=1, minutes=30)),
    ("10 mins", timedelta(minutes=10)),
    ("  15M ", timedelta(minutes=15)),
    ("1 wk", timedelta(weeks=1)),
    ("3 secs", timedelta(seconds=3)),
]


@pytest.mark.parametrize(("text", "expected"), DURATIONS)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


DURATION_FORMS = "use a number and a unit, e.g. 90s, 15m, 1h30m, 2d or 1w"
BAD_DURATIONS = [
    ("", "cannot understand duration '': " + DURATION_FORMS),
    ("15", "cannot understand duration '15': " + DURATION_FORMS),
    ("m", "cannot understand duration 'm': " + DURATION_FORMS),
    ("1h30", "cannot understand duration '1h30': " + DURATION_FORMS),
    ("-5m", "cannot understand duration '-5m': " + DURATION_FORMS),
    ("5 parsecs", "cannot understand duration '5 parsecs': " + DURATION_FORMS),
    ("2 months", "cannot understand duration '2 months': months and years have no fixed length; "
     "use days or weeks (e.g. 30d)"),
    ("0m", "duration '0m' must be longer than zero"),
    ("0h0m", "duration '0h0m' must be longer than zero"),
    ("99999999999d", "duration '99999999999d' is too long"),
]


@pytest.mark.parametrize(("text", "message"), BAD_DURATIONS)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text)
    assert caught.value.message == message
    assert caught.value.exit_code == EXIT_USAGE
