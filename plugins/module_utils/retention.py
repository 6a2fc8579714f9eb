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

import array
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
    """The calendar period of ``when`` (an aware datetime already in the policy's zone).

    An hour is a local wall-clock hour *and* its UTC offset: in the autumn the hour that a DST
    change repeats (Europe/Berlin 2026-10-25 02:00-03:00, first CEST then CET) is two hours,
    not one. Days, weeks, months and years are calendar periods of the wall clock.
    """
    if bucket == "hourly":
        return (when.year, when.month, when.day, when.hour, when.utcoffset())
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
    names, times, sizes = [], array.array("d"), array.array("q")
    for name, when, size in artifacts:
        names.append(name)
        times.append(when.timestamp())
        sizes.append(size or 0)
    decision = plan_arrays(names, times, policy, now, tz)
    order = decision["order"]
    return {
        "keep": dict((names[i], reasons) for i, reasons in decision["keep"].items()),
        "delete": [names[i] for i in order if i not in decision["keep"]],
        "counts": decision["counts"],
    }


def newest_first(names, times):
    """Indexes of the artifacts newest first (ties: greater name first), as a sequence.

    Listings usually arrive oldest first already (S3 lists keys in order, and names carry
    their time): then the answer is ``reversed(range(n))``, which takes no memory at all.
    """
    count = len(names)
    for i in range(1, count):
        if times[i] < times[i - 1] or (times[i] == times[i - 1] and names[i] < names[i - 1]):
            break
    else:
        return range(count - 1, -1, -1)
    order = sorted(range(count), key=names.__getitem__, reverse=True)
    order.sort(key=times.__getitem__, reverse=True)  # stable: equal times stay greater name first
    return array.array("l", order)


def plan_arrays(names, times, policy, now, tz=datetime.timezone.utc):
    """:func:`plan` over parallel sequences: ``names`` and ``times`` (POSIX seconds).

    Made for millions of artifacts: no per-artifact objects are built besides what the caller
    holds. Returns ``{'order': indexes newest first, 'keep': {index: [reasons]}, 'counts': {...}}``;
    every index not in ``keep`` is to be deleted.
    """
    policy = validate_policy(policy)
    order = newest_first(names, times)
    keep = {}

    def mark(index, reason):
        keep.setdefault(index, []).append(reason)

    counts = dict((b, 0) for b in ("last",) + BUCKETS + ("min_age", "newest"))
    for index in order[: policy["keep_last"]]:
        mark(index, "last")
        counts["last"] += 1

    for bucket in BUCKETS:
        remaining = policy["keep_" + bucket]
        last_key = None
        for index in order:
            if remaining <= 0:
                break
            key = period_key(bucket, datetime.datetime.fromtimestamp(times[index], tz))
            if key != last_key:
                mark(index, bucket)
                counts[bucket] += 1
                remaining -= 1
                last_key = key

    if policy["min_age"]:
        cutoff = (now - datetime.timedelta(seconds=policy["min_age"])).timestamp()
        for index in order:
            if times[index] <= cutoff:
                break
            mark(index, "min_age")
            counts["min_age"] += 1

    if len(order):
        mark(order[0], "newest")
        counts["newest"] += 1

    # Kept artifacts newest first (walking ``order`` once: O(n), no sorting).
    ordered_keep = dict((i, keep[i]) for i in order if i in keep) if keep else {}
    return {"order": order, "keep": ordered_keep, "counts": counts}
