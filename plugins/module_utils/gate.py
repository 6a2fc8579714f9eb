# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate loop: run every check each round until the gate opens or gives up.

* A round passes when every check passes in it (checks must pass together).
* The checks of one round run at the same time, each in its own thread, and each is given the
  time left before ``timeout`` as its budget. A check that has not answered when the time is up
  has failed ("no answer within ..."); the gate does not wait for it. So ``timeout`` bounds the
  wall clock however many checks are slow.
* The gate opens after ``success_threshold`` consecutive passing rounds.
* It gives up after ``failure_threshold`` consecutive failing rounds (0: never early), or when
  another round would start with less than ``min_round(timeout)`` seconds left (a round
  squeezed into the last instant would only report "no answer" instead of what is wrong).

The clock and sleep are injectable so the semantics are unit-tested without waiting.
"""

from __future__ import annotations

import inspect
import threading
import time

# Longest value or error string a check reports (bodies, command output, exceptions).
RESULT_LIMIT = 4096

# Called (without arguments) whenever run() returns: checks that start things which could
# outlive the gate (command checks' process groups) register how to stop them.
_ON_RETURN = []


def on_return(hook):
    """Have ``hook()`` called each time :func:`run` returns (once per hook)."""
    if hook not in _ON_RETURN:
        _ON_RETURN.append(hook)


def _returning():
    for hook in list(_ON_RETURN):
        try:
            hook()
        except Exception:  # cleaning up must not hide the gate's answer
            pass


class Outcome(object):
    """One run of one check. ``skipped``: the check was not run (a command in check mode)."""

    __slots__ = ("ok", "value", "error", "latency_ms", "skipped")

    def __init__(self, ok, value=None, error=None, latency_ms=None, skipped=False):
        self.ok = ok
        self.value = value
        self.error = error
        self.latency_ms = latency_ms
        self.skipped = skipped


class GateConfigError(ValueError):
    pass


def clip(text, limit=RESULT_LIMIT):
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    note = "... [%d more characters]" % (len(text) - limit)
    return text[:max(0, limit - len(note))] + note


def percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))  # ceil without math import
    return ordered[min(rank, len(ordered)) - 1]


def min_round(timeout):
    """The least time a round starts with: a tenth of the timeout, at most one second."""
    return min(1.0, timeout * 0.1)


def validate(success_threshold, failure_threshold, interval, timeout):
    if success_threshold < 1:
        raise GateConfigError("success_threshold must be at least 1, got %r" % success_threshold)
    if failure_threshold < 0:
        raise GateConfigError("failure_threshold must be 0 (never give up early) or more, got %r" % failure_threshold)
    if interval <= 0:
        raise GateConfigError("interval must be more than 0 seconds, got %r" % interval)
    if timeout <= 0:
        raise GateConfigError("timeout must be more than 0 seconds, got %r" % timeout)


def _takes_budget(call):
    """Whether the check callable accepts the time it has left (the checks of health_checks do)."""
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        return False
    return "budget" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _invoke(call, budget, takes_budget):
    try:
        outcome = call(budget=budget) if takes_budget else call()
    except Exception as exc:  # a check that blows up has failed; say how
        outcome = Outcome(False, error="%s: %s" % (type(exc).__name__, exc))
    if not isinstance(outcome, Outcome):
        outcome = Outcome(False, error="the check returned %r, not an outcome" % (outcome,))
    return outcome


def _run_round(checks, takes_budget, budget, wait):
    """Run every check of one round at once; return their outcomes (None: no answer in time).

    ``budget``: seconds each check may take (the time left); ``wait(seconds)`` waits for the
    threads by the gate's clock. A single check runs in the caller's thread, still bounded.
    """
    results = [None] * len(checks)
    done = threading.Event()
    remaining = [len(checks)]
    lock = threading.Lock()

    def work(index, call):
        results[index] = _invoke(call, budget, takes_budget[index])
        with lock:
            remaining[0] -= 1
            if not remaining[0]:
                done.set()

    threads = []
    for index, (_name, _kind, call) in enumerate(checks):
        # Daemon threads: a check that ignores its budget cannot hold the module's exit.
        thread = threading.Thread(target=work, args=(index, call), name="health-check-%d" % index)
        thread.daemon = True
        thread.start()
        threads.append(thread)
    wait(done, budget)
    with lock:
        return list(results)


def _wait_real(done, seconds):
    done.wait(max(0.0, seconds))


def run(checks, success_threshold=1, failure_threshold=0, interval=2.0, timeout=60.0,
        clock=time.monotonic, sleep=time.sleep, wait=None):
    """Run the gate.

    ``checks``: list of ``(name, kind, callable)``; each callable returns an :class:`Outcome`
    (and may raise, which counts as a failure with the exception as the error). A callable
    that accepts ``budget`` is given the seconds it may take (the time left before
    ``timeout``); one that overruns it is reported as failed and not waited for.

    Returns ``(healthy, report)`` where ``report`` has ``rounds``, ``elapsed``, ``reason`` and
    ``checks``: per check its status, attempts, passes, last error and value, latency p50/p95.
    """
    validate(success_threshold, failure_threshold, interval, timeout)
    try:
        return _run(checks, success_threshold, failure_threshold, interval, timeout, clock, sleep, wait or _wait_real)
    finally:
        # Checks not answered in time may still be running (a command): stop what they started.
        _returning()


def _run(checks, success_threshold, failure_threshold, interval, timeout, clock, sleep, wait):
    start = clock()
    deadline = start + timeout
    takes_budget = [_takes_budget(call) for _name, _kind, call in checks]
    stats = [dict(name=name, kind=kind, attempts=0, passes=0, last_ok=None, last_error=None, last_value=None,
                  latencies=[], skipped=False)
             for name, kind, _call in checks]
    passing_rounds = failing_rounds = rounds = 0
    healthy, reason = False, None
    while True:
        rounds += 1
        round_ok = True
        budget = max(0.0, deadline - clock())
        outcomes = _run_round(checks, takes_budget, budget, wait)
        timed_out = False
        for outcome, stat in zip(outcomes, stats):
            if outcome is None:
                timed_out = True
                error = "no answer within the %.1fs left before the gate's timeout" % budget
                if stat["last_error"]:
                    error += "; the failure before: %s" % stat["last_error"]
                # What the check last saw stays its last value.
                outcome = Outcome(False, value=stat["last_value"], error=error, latency_ms=budget * 1000.0)
            if outcome.skipped:
                stat["skipped"] = True
                stat["last_ok"] = True
                stat["last_value"] = clip(outcome.value)
                continue
            stat["attempts"] += 1
            stat["last_ok"] = outcome.ok
            stat["last_value"] = clip(outcome.value)
            if outcome.latency_ms is not None:
                stat["latencies"].append(outcome.latency_ms)
            if outcome.ok:
                stat["passes"] += 1
            else:
                stat["last_error"] = clip(outcome.error)
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
        if timed_out or clock() + interval + min_round(timeout) > deadline:
            reason = "timeout of %ss reached" % timeout
            break
        sleep(interval)
    return healthy, _report(stats, rounds, clock() - start, reason)


def _report(stats, rounds, elapsed, reason):
    out = []
    for stat in stats:
        latencies = stat.pop("latencies")
        last_ok = stat.pop("last_ok")
        skipped = stat.pop("skipped")
        if skipped:
            stat["status"] = "skipped"
        else:
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
