import datetime

import pytest

try:
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover - Python < 3.9
    ZoneInfo = None

from ansible_collections.keel.platform.plugins.module_utils.retention import (
    PolicyError,
    parse_duration,
    period_key,
    plan,
    validate_policy,
)

UTC = datetime.timezone.utc


def at(*args, tz=UTC):
    return datetime.datetime(*args, tzinfo=tz)


def daily(start, days, hour=2):
    """One artifact a day at `hour`, named by date, newest last."""
    out = []
    for i in range(days):
        when = start + datetime.timedelta(days=i)
        when = when.replace(hour=hour)
        out.append(("db-%s" % when.strftime("%Y%m%d"), when, 100))
    return out


def test_keep_last_keeps_the_n_newest():
    arts = daily(at(2026, 1, 1), 10)
    result = plan(arts, {"keep_last": 3}, now=at(2026, 2, 1))
    assert list(result["keep"]) == ["db-20260110", "db-20260109", "db-20260108"]
    assert len(result["delete"]) == 7
    assert result["counts"]["last"] == 3


def test_daily_keeps_newest_of_each_day():
    arts = [("a", at(2026, 3, 1, 1), 1), ("b", at(2026, 3, 1, 23), 1), ("c", at(2026, 3, 2, 5), 1), ("d", at(2026, 2, 28, 5), 1)]
    result = plan(arts, {"keep_daily": 2}, now=at(2026, 3, 3))
    assert set(result["keep"]) == {"c", "b"}
    assert result["delete"] == ["a", "d"]


def test_monthly_across_month_ends_and_a_leap_february():
    arts = [
        ("jan31", at(2024, 1, 31, 23, 59), 1),
        ("feb29", at(2024, 2, 29, 12), 1),
        ("feb28", at(2024, 2, 28, 12), 1),
        ("mar01", at(2024, 3, 1, 0, 0, 1), 1),
        ("mar31", at(2024, 3, 31, 23), 1),
    ]
    result = plan(arts, {"keep_monthly": 3}, now=at(2024, 4, 2))
    # Newest of March, of February (the 29th: 2024 is a leap year) and of January.
    assert set(result["keep"]) == {"mar31", "feb29", "jan31"}
    assert set(result["delete"]) == {"feb28", "mar01"}


def test_weekly_uses_iso_weeks_across_the_year_boundary():
    # 2024-12-30 (Mon) and 2025-01-05 (Sun) are both ISO week 2025-W01.
    arts = [("dec29", at(2024, 12, 29), 1), ("dec30", at(2024, 12, 30), 1), ("jan05", at(2025, 1, 5), 1), ("jan06", at(2025, 1, 6), 1)]
    assert period_key("weekly", at(2024, 12, 30)) == period_key("weekly", at(2025, 1, 5)) == (2025, 1)
    result = plan(arts, {"keep_weekly": 3}, now=at(2025, 1, 7))
    assert set(result["keep"]) == {"jan06", "jan05", "dec29"}
    assert result["delete"] == ["dec30"]


def test_yearly_and_hourly():
    arts = [("y%d" % y, at(y, 6, 1), 1) for y in range(2019, 2027)]
    result = plan(arts, {"keep_yearly": 5}, now=at(2026, 7, 1))
    assert list(result["keep"]) == ["y2026", "y2025", "y2024", "y2023", "y2022"]
    hourly = [("h%02d%02d" % (h, m), at(2026, 1, 1, h, m), 1) for h in range(3) for m in (0, 30)]
    result = plan(hourly, {"keep_hourly": 2}, now=at(2026, 1, 1, 3))
    assert list(result["keep"]) == ["h0230", "h0130"]


@pytest.mark.skipif(ZoneInfo is None, reason="zoneinfo needed")
def test_days_are_local_days_across_dst_changes():
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 in Berlin (a 23-hour day).
    # 23:30 UTC on the 28th is 00:30 local on the 29th; 22:30 UTC on the 29th is 00:30 on the 30th.
    arts = [
        ("sat-late", at(2026, 3, 28, 22, 30), 1),  # 23:30 CET, Saturday the 28th
        ("sun-early", at(2026, 3, 28, 23, 30), 1),  # 00:30 CET, Sunday the 29th
        ("sun-late", at(2026, 3, 29, 21, 30), 1),  # 23:30 CEST, Sunday the 29th
        ("mon-early", at(2026, 3, 29, 22, 30), 1),  # 00:30 CEST, Monday the 30th
    ]
    in_utc = plan(arts, {"keep_daily": 3}, now=at(2026, 3, 31))
    in_berlin = plan(arts, {"keep_daily": 3}, now=at(2026, 3, 31), tz=berlin)
    assert set(in_berlin["keep"]) == {"mon-early", "sun-late", "sat-late"}
    assert in_berlin["delete"] == ["sun-early"]
    # In UTC the same four fall on two days only (the 28th and the 29th): the zone matters.
    assert list(in_utc["keep"]) == ["mon-early", "sun-early"]
    assert in_utc["delete"] == ["sun-late", "sat-late"]


def test_ties_are_broken_by_name_not_listing_order():
    when = at(2026, 5, 5, 5)
    arts = [("b", when, 1), ("a", when, 1), ("c", when, 1)]
    for order in (arts, list(reversed(arts))):
        result = plan(order, {"keep_daily": 1}, now=at(2026, 6, 1))
        assert list(result["keep"]) == ["c"] and result["delete"] == ["b", "a"]


def test_min_age_protects_young_artifacts():
    arts = daily(at(2026, 1, 1), 10)
    result = plan(arts, {"keep_last": 1, "min_age": "3d"}, now=at(2026, 1, 11, 1))
    # Younger than 3 days at 2026-01-11 01:00: the 8th (02:00) onwards.
    assert list(result["keep"]) == ["db-20260110", "db-20260109", "db-20260108"]
    assert result["keep"]["db-20260110"] == ["last", "min_age", "newest"]


def test_newest_is_always_kept():
    arts = [("old", at(2020, 1, 1), 1), ("new", at(2026, 1, 1), 1)]
    result = plan(arts, {"keep_yearly": 1}, now=at(2026, 1, 2))
    assert "new" in result["keep"]
    result = plan(arts, {"keep_daily": 1}, now=at(2026, 1, 2))
    assert result["delete"] == ["old"] and result["counts"]["newest"] == 1


def test_buckets_combine_and_count():
    arts = daily(at(2025, 1, 1), 400)  # Jan 2025 to early Feb 2026
    result = plan(arts, {"keep_last": 2, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2}, now=at(2026, 2, 10))
    counts = result["counts"]
    assert counts["last"] == 2 and counts["daily"] == 7 and counts["weekly"] == 4 and counts["monthly"] == 12 and counts["yearly"] == 2
    assert len(result["keep"]) + len(result["delete"]) == 400
    # Overlaps: a kept artifact can satisfy several rules; each is listed as a reason.
    newest = next(iter(result["keep"]))
    assert set(result["keep"][newest]) >= {"last", "daily", "weekly", "monthly", "yearly", "newest"}


def test_empty_input():
    assert plan([], {"keep_last": 1}, now=at(2026, 1, 1)) == {"keep": {}, "delete": [], "counts": dict.fromkeys(
        ["last", "hourly", "daily", "weekly", "monthly", "yearly", "min_age", "newest"], 0)}


@pytest.mark.parametrize(
    "policy,message",
    [
        ({}, "keeps nothing"),
        ({"keep_last": 0, "keep_daily": 0}, "keeps nothing"),
        ({"keep_last": -1}, "keep_last: must not be negative"),
        ({"keep_daily": "7"}, "keep_daily: expected a whole number"),
        ({"keep_daily": True}, "keep_daily: expected a whole number"),
        ({"keep_last": 1, "min_age": "3 fortnights"}, "min_age: '3 fortnights' is not a duration"),
        ({"keep_last": 1, "min_age": -5}, "min_age: must not be negative"),
    ],
)
def test_invalid_policies(policy, message):
    with pytest.raises(PolicyError, match=message):
        validate_policy(policy)


@pytest.mark.parametrize("value,seconds", [(None, 0), ("", 0), (90, 90), ("90", 90), ("45m", 2700), ("36h", 129600), ("7d", 604800), ("2w", 1209600)])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


# --- Zones and DST ---

def berlin():
    if ZoneInfo is None:  # pragma: no cover
        pytest.skip("zoneinfo needs Python 3.9")
    return ZoneInfo("Europe/Berlin")


def test_autumn_dst_hour_is_two_hourly_buckets():
    # Failed before: 02:30 CEST and 02:30 CET (2026-10-25, Europe/Berlin) fell into one hourly bucket,
    # so keep_hourly kept one artifact fewer than it promised and deleted the first 02:30.
    arts = [
        ("a-0030", at(2026, 10, 24, 22, 30), 1),  # 00:30 CEST
        ("b-0130", at(2026, 10, 24, 23, 30), 1),  # 01:30 CEST
        ("c-0230-cest", at(2026, 10, 25, 0, 30), 1),  # 02:30 CEST
        ("d-0230-cet", at(2026, 10, 25, 1, 30), 1),  # 02:30 CET, one hour later
        ("e-0330", at(2026, 10, 25, 2, 30), 1),  # 03:30 CET
    ]
    result = plan(arts, {"keep_hourly": 4}, now=at(2026, 11, 1), tz=berlin())
    assert list(result["keep"]) == ["e-0330", "d-0230-cet", "c-0230-cest", "b-0130"]
    assert result["delete"] == ["a-0030"]


def test_dst_day_is_still_one_day_and_spring_gap_is_no_bucket():
    tz = berlin()
    # The 25-hour autumn day is one daily bucket.
    arts = [("x%02d" % h, at(2026, 10, 24, 22) + datetime.timedelta(hours=h), 1) for h in range(25)]
    result = plan(arts, {"keep_daily": 1}, now=at(2026, 11, 1), tz=tz)
    assert result["counts"]["daily"] == 1 and list(result["keep"]) == ["x24"]
    # Spring: 01:30 CET and 03:30 CEST are one real hour apart but two different hours (02:00 does not exist).
    spring = [("p", at(2026, 3, 29, 0, 30), 1), ("q", at(2026, 3, 29, 1, 30), 1)]
    assert set(plan(spring, {"keep_hourly": 2}, now=at(2026, 4, 1), tz=tz)["keep"]) == {"p", "q"}


def test_period_key_hour_includes_the_offset():
    tz = berlin()
    first = at(2026, 10, 25, 0, 30).astimezone(tz)
    second = at(2026, 10, 25, 1, 30).astimezone(tz)
    assert first.hour == second.hour == 2
    assert period_key("hourly", first) != period_key("hourly", second)
    assert period_key("daily", first) == period_key("daily", second)


def test_plan_arrays_handles_unsorted_input_and_ties_like_plan():
    from ansible_collections.keel.platform.plugins.module_utils.retention import newest_first

    names = ["c", "a", "b", "d"]
    times = [5.0, 7.0, 7.0, 1.0]
    assert list(newest_first(names, times)) == [2, 1, 0, 3]  # b and a tie: greater name first
    assert list(newest_first(["a", "b", "c"], [1.0, 1.0, 2.0])) == [2, 1, 0]
