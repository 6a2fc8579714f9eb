# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Grandfather-father-son retention: which backup artifacts to keep.

Pure functions over (name, timestamp, size) records, so the rules can be tested without any
storage. The rules, in the order they are applied:

* ``keep_last``: the N newest artifacts.
* ``keep_hourly`` ... ``keep_yearly``: walking from the newest artifact to the oldest, the
  newest artifact of each of the N most recent hours (days, ISO weeks, months, years) that
  have an artifact. Periods are calendar periods in the policy's timezone, so a day is a
  local day even across a DST change (23 or 25 hours), a month ends on its own last day and
  ISO weeks may straddle a year boundary.
* ``min_age``: nothing younger than this is deleted, whatever the buckets say.
* The newest artifact is always kept.

Ties (equal timestamps) are broken by name, newest-first meaning the greater name first, so
the result never depends on listing order.
"""

from __future__ import annotations

import datetime
import re

BUCKETS = ("hourly", "daily", "weekly", "monthly", "yearly")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")


class PolicyError(ValueError):
    """The retention policy itself is invalid; nothing may be deleted."""


def parse_duration(value, where="min_age"):
    """Seconds from an int or a string like ``90``, ``45m``, ``36h``, ``7d``, ``2w``."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise PolicyError("%s: %r is not a duration" % (where, value))
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise PolicyError("%s: %r is not a duration (examples: 3600, 90m, 36h, 7d, 2w)" % (where, value))
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise PolicyError("%s: must not be negative, got %r" % (where, value))
    return seconds


def period_key(bucket, when):
    """The calendar period of ``when`` (an aware datetime already in the policy's zone)."""
    if bucket == "hourly":
        return (when.year, when.month, when.day, when.hour)
    if bucket == "daily":
        return (when.year, when.month, when.day)
    if bucket == "weekly":
        iso = when.isocalendar()
        return (iso[0], iso[1])
    if bucket == "monthly":
        return (when.year, when.month)
    if bucket == "yearly":
        return (when.year,)
    raise PolicyError("unknown retention bucket %r" % bucket)


def validate_policy(policy):
    """Check a policy dict; return it with every count as an int (missing counts are 0)."""
    out = {}
    for name in ("keep_last",) + tuple("keep_" + b for b in BUCKETS):
        value = policy.get(name) or 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError("%s: expected a whole number, got %r" % (name, value))
        if value < 0:
            raise PolicyError("%s: must not be negative, got %d" % (name, value))
        out[name] = value
    if not any(out.values()):
        raise PolicyError(
            "the policy keeps nothing (every keep_* is 0): it would delete every backup; "
            "set at least one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly"
        )
    out["min_age"] = parse_duration(policy.get("min_age"))
    return out


def plan(artifacts, policy, now, tz=datetime.timezone.utc):
    """Decide what to keep.

    ``artifacts``: iterable of ``(name, timestamp, size)`` with aware ``datetime`` timestamps.
    ``policy``: as accepted by :func:`validate_policy`. ``now``: aware ``datetime``.
    ``tz``: the zone whose calendar defines hours, days, weeks, months and years.

    Returns ``{'keep': {name: [reasons]}, 'delete': [names], 'counts': {...}}`` where the
    lists are newest first and ``counts`` tells how many artifacts each rule kept.
    """
    policy = validate_policy(policy)
    ordered = sorted(artifacts, key=lambda a: (a[1], a[0]), reverse=True)
    keep = {}

    def mark(name, reason):
        keep.setdefault(name, []).append(reason)

    counts = dict((b, 0) for b in ("last",) + BUCKETS + ("min_age", "newest"))
    for name, _when, _size in ordered[: policy["keep_last"]]:
        mark(name, "last")
        counts["last"] += 1

    for bucket in BUCKETS:
        remaining = policy["keep_" + bucket]
        last_key = None
        for name, when, _size in ordered:
            if remaining <= 0:
                break
            key = period_key(bucket, when.astimezone(tz))
            if key != last_key:
                mark(name, bucket)
                counts[bucket] += 1
                remaining -= 1
                last_key = key

    if policy["min_age"]:
        cutoff = now - datetime.timedelta(seconds=policy["min_age"])
        for name, when, _size in ordered:
            if when <= cutoff:
                break
            mark(name, "min_age")
            counts["min_age"] += 1

    if ordered:
        mark(ordered[0][0], "newest")
        counts["newest"] += 1

    delete = [name for name, _when, _size in ordered if name not in keep]
    return {
        "keep": dict((name, keep[name]) for name, _w, _s in ordered if name in keep),
        "delete": delete,
        "counts": counts,
    }
