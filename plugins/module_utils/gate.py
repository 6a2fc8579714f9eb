# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate loop: run every check each round until the gate opens or gives up.

* A round passes when every check passes in it (checks must pass together).
* The gate opens after ``success_threshold`` consecutive passing rounds.
* It gives up after ``failure_threshold`` consecutive failing rounds (0: never early), or when
  another round could not finish before ``timeout`` seconds.

The clock and sleep are injectable so the semantics are unit-tested without waiting.
"""

from __future__ import annotations

import time


class Outcome(object):
    """One run of one check."""

    __slots__ = ("ok", "value", "error", "latency_ms")

    def __init__(self, ok, value=None, error=None, latency_ms=None):
        self.ok = ok
        self.value = value
        self.error = error
        self.latency_ms = latency_ms


class GateConfigError(ValueError):
    pass


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))  # ceil without math import
    return ordered[min(rank, len(ordered)) - 1]


def validate(success_threshold, failure_threshold, interval, timeout):
    if success_threshold < 1:
        raise GateConfigError("success_threshold must be at least 1, got %r" % success_threshold)
    if failure_threshold < 0:
        raise GateConfigError("failure_threshold must be 0 (never give up early) or more, got %r" % failure_threshold)
    if interval <= 0:
        raise GateConfigError("interval must be more than 0 seconds, got %r" % interval)
    if timeout <= 0:
        raise GateConfigError("timeout must be more than 0 seconds, got %r" % timeout)


def run(checks, success_threshold=1, failure_threshold=0, interval=2.0, timeout=60.0,
        clock=time.monotonic, sleep=time.sleep):
    """Run the gate.

    ``checks``: list of ``(name, kind, callable)``; each callable returns an :class:`Outcome`
    (and may raise, which counts as a failure with the exception as the error).

    Returns ``(healthy, report)`` where ``report`` has ``rounds``, ``elapsed``, ``reason`` and
    ``checks``: per check its status, attempts, passes, last error and value, latency p50/p95.
    """
    validate(success_threshold, failure_threshold, interval, timeout)
    start = clock()
    stats = [dict(name=name, kind=kind, attempts=0, passes=0, last_ok=None, last_error=None, last_value=None, latencies=[])
             for name, kind, _call in checks]
    passing_rounds = failing_rounds = rounds = 0
    healthy, reason = False, None
    while True:
        rounds += 1
        round_ok = True
        for (_name, _kind, call), stat in zip(checks, stats):
            stat["attempts"] += 1
            try:
                outcome = call()
            except Exception as exc:  # a check that blows up has failed; say how
                outcome = Outcome(False, error="%s: %s" % (type(exc).__name__, exc))
            stat["last_ok"] = outcome.ok
            stat["last_value"] = outcome.value
            if outcome.latency_ms is not None:
                stat["latencies"].append(outcome.latency_ms)
            if outcome.ok:
                stat["passes"] += 1
            else:
                stat["last_error"] = outcome.error
                round_ok = False
        if round_ok:
            passing_rounds, failing_rounds = passing_rounds + 1, 0
            if passing_rounds >= success_threshold:
                healthy, reason = True, "%d consecutive passing round(s)" % passing_rounds
                break
        else:
            passing_rounds, failing_rounds = 0, failing_rounds + 1
            if failure_threshold and failing_rounds >= failure_threshold:
                reason = "%d consecutive failing round(s) (failure_threshold)" % failing_rounds
                break
        if clock() - start + interval > timeout:
            reason = "timeout of %ss reached" % timeout
            break
        sleep(interval)
    return healthy, _report(stats, rounds, clock() - start, reason)


def _report(stats, rounds, elapsed, reason):
    out = []
    for stat in stats:
        latencies = stat.pop("latencies")
        last_ok = stat.pop("last_ok")
        stat["status"] = "passing" if last_ok else "failing"
        stat["latency_p50_ms"] = round(percentile(latencies, 0.5), 1) if latencies else None
        stat["latency_p95_ms"] = round(percentile(latencies, 0.95), 1) if latencies else None
        out.append(stat)
    return dict(rounds=rounds, elapsed=round(elapsed, 3), reason=reason, checks=out)


def failure_message(report):
    """One sentence per failing check: which, how, and the last value seen."""
    parts = []
    for check in report["checks"]:
        if check["status"] == "failing":
            text = "%s (%s): %s" % (check["name"], check["kind"], check["last_error"])
            if check["last_value"] is not None:
                text += " [last value: %s]" % check["last_value"]
            parts.append(text)
    return "health gate failed after %.1fs, %d round(s), %s. Failing: %s" % (
        report["elapsed"], report["rounds"], report["reason"], "; ".join(parts) or "none in the last round")
