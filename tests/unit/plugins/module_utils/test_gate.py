import time

import pytest

from ansible_collections.keel.platform.plugins.module_utils import gate
from ansible_collections.keel.platform.plugins.module_utils.gate import Outcome


class FakeTime(object):
    """A clock that only moves when the gate sleeps (plus a fixed cost per check run)."""

    def __init__(self, check_cost=0.0):
        self.now = 0.0
        self.check_cost = check_cost
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(results, clock=None, latency=1.0):
    """A check that returns the scripted pass/fail sequence (the last one repeats)."""
    state = {"i": 0}

    def run():
        ok = results[min(state["i"], len(results) - 1)]
        state["i"] += 1
        if clock is not None:
            clock.now += clock.check_cost
        return Outcome(ok, value="v%d" % state["i"], error=None if ok else "bad #%d" % state["i"], latency_ms=latency * state["i"])

    return run


def run(checks, ft, **kw):
    return gate.run(checks, clock=ft.clock, sleep=ft.sleep, **kw)


def test_opens_after_success_threshold_consecutive_rounds():
    ft = FakeTime()
    healthy, report = run([("a", "tcp", scripted([True, False, True, True, True]))], ft, success_threshold=3, interval=1, timeout=60)
    assert healthy and report["rounds"] == 5 and report["reason"] == "3 consecutive passing round(s)"
    assert ft.sleeps == [1, 1, 1, 1]


def test_all_checks_must_pass_in_the_same_round():
    ft = FakeTime()
    a = scripted([True, False] * 5)
    b = scripted([False, True] * 5)
    healthy, report = run([("a", "tcp", a), ("b", "tcp", b)], ft, success_threshold=1, interval=1, timeout=5)
    # Each check passes every other round but never together: the gate never opens.
    assert not healthy and report["reason"] == "timeout of 5s reached"
    assert [c["passes"] for c in report["checks"]] == [report["rounds"] // 2 + report["rounds"] % 2, report["rounds"] // 2]


def test_failure_threshold_gives_up_early():
    ft = FakeTime()
    healthy, report = run([("a", "http", scripted([True, False, False, False, True]))], ft, success_threshold=2, failure_threshold=3, interval=2, timeout=600)
    assert not healthy and report["rounds"] == 4 and "failure_threshold" in report["reason"]
    assert ft.now == 6


def test_timeout_never_starts_a_round_it_cannot_finish():
    ft = FakeTime()
    healthy, report = run([("a", "tcp", scripted([False]))], ft, interval=4, timeout=10)
    # Rounds at t=0, 4, 8; a fourth at 12 would pass the timeout.
    assert not healthy and report["rounds"] == 3 and ft.now == 8


def test_slow_checks_count_against_the_timeout():
    ft = FakeTime(check_cost=3)
    healthy, report = run([("a", "tcp", scripted([False], clock=ft))], ft, interval=1, timeout=10)
    assert not healthy and report["rounds"] == 3


def test_report_has_latency_percentiles_and_last_values():
    ft = FakeTime()
    healthy, report = run([("a", "tcp", scripted([False, True, True], latency=10.0))], ft, success_threshold=2, interval=1, timeout=60)
    check = report["checks"][0]
    assert healthy and check["attempts"] == 3 and check["passes"] == 2 and check["status"] == "passing"
    assert check["latency_p50_ms"] == 20.0 and check["latency_p95_ms"] == 30.0
    assert check["last_error"] == "bad #1" and check["last_value"] == "v3"


def test_a_check_that_raises_fails_with_the_exception():
    def boom():
        raise OSError("no route")

    healthy, report = run([("x", "command", boom)], FakeTime(), interval=1, timeout=1.5)
    assert not healthy and report["checks"][0]["last_error"] == "OSError: no route"
    assert report["checks"][0]["latency_p50_ms"] is None


def test_failure_message_names_the_check_how_and_last_value():
    healthy, report = run([("ok", "tcp", scripted([True])), ("api", "http", scripted([False]))], FakeTime(), interval=1, timeout=2)
    message = gate.failure_message(report)
    assert "api (http): bad #" in message and "[last value: v" in message and "ok (tcp)" not in message


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"success_threshold": 0}, "success_threshold must be at least 1"),
        ({"failure_threshold": -1}, "failure_threshold must be 0"),
        ({"interval": 0}, "interval must be more than 0"),
        ({"interval": -2}, "interval must be more than 0"),
        ({"timeout": 0}, "timeout must be more than 0"),
    ],
)
def test_invalid_gate_settings(kw, message):
    with pytest.raises(gate.GateConfigError, match=message):
        gate.run([("a", "tcp", scripted([True]))], **kw)


def test_percentile_nearest_rank():
    assert gate.percentile([5], 0.95) == 5
    assert gate.percentile(list(range(1, 101)), 0.5) == 50
    assert gate.percentile(list(range(1, 101)), 0.95) == 95


def sleeper(seconds, seen=None):
    """A slow check that ignores its budget (the worst case for the gate's bound)."""
    def run(budget=None):
        if seen is not None:
            seen.append(budget)
        time.sleep(seconds)
        return Outcome(True, value="late")

    return run


def test_timeout_bounds_the_wall_clock_however_many_checks_are_slow():
    # Three checks of 5 s each, run one after the other, took 15 s; run together and bounded by
    # the time left they end at the timeout.
    started = time.monotonic()
    healthy, report = gate.run([("a", "http", sleeper(5)), ("b", "tcp", sleeper(5)), ("c", "command", sleeper(5))],
                               interval=0.1, timeout=1.0)
    took = time.monotonic() - started
    print("3 checks of 5 s each, timeout 1 s: the gate returned after %.2f s" % took)
    assert took < 1.5
    assert not healthy and report["rounds"] == 1 and report["reason"] == "timeout of 1.0s reached"
    assert all(c["status"] == "failing" and "no answer within the 1.0s left" in c["last_error"] for c in report["checks"])


def test_checks_of_a_round_run_at_once_each_given_the_time_left():
    seen = []
    started = time.monotonic()
    healthy, report = gate.run([(name, "tcp", sleeper(0.5, seen)) for name in "abcd"], success_threshold=2, interval=0.05, timeout=30)
    took = time.monotonic() - started
    assert healthy and report["rounds"] == 2
    assert took < 1.8  # four checks of 0.5 s, two rounds: 1 s together, 4 s one after the other
    assert len(seen) == 8 and all(0 < budget <= 30 for budget in seen)
    assert seen[4] < seen[0]  # the second round has less time left


def test_a_skipped_check_neither_passes_nor_fails_the_round():
    def skipped(budget=None):
        return Outcome(True, value="not run in check mode", skipped=True)

    healthy, report = run([("cmd", "command", skipped), ("a", "tcp", scripted([True]))], FakeTime(), interval=1, timeout=10)
    assert healthy
    assert report["checks"][0]["status"] == "skipped" and report["checks"][0]["attempts"] == 0
    assert report["checks"][0]["last_value"] == "not run in check mode"


def test_values_and_errors_are_bounded():
    def huge():
        return Outcome(False, value="v" * 100000, error="e" * 100000)

    healthy, report = run([("big", "http", huge)], FakeTime(), interval=1, timeout=1.5)
    check = report["checks"][0]
    assert not healthy and len(check["last_value"]) == gate.RESULT_LIMIT and len(check["last_error"]) == gate.RESULT_LIMIT
    assert check["last_error"].endswith("more characters]")
    assert len(gate.failure_message(report)) < 3 * gate.RESULT_LIMIT


def test_a_check_cut_off_by_the_timeout_keeps_what_it_saw_before():
    calls = {"n": 0}

    def flaky(budget=None):
        calls["n"] += 1
        if calls["n"] == 1:
            return Outcome(False, value="HTTP 503", error="status 503")
        time.sleep(5)
        return Outcome(True)

    healthy, report = gate.run([("api", "http", flaky)], interval=0.1, timeout=0.6)
    check = report["checks"][0]
    assert not healthy and report["rounds"] == 2
    assert check["last_error"].startswith("no answer within the 0.") and check["last_error"].endswith("; the failure before: status 503")
    assert check["last_value"] == "HTTP 503"


def test_no_round_starts_in_the_last_tenth_of_the_timeout():
    ft = FakeTime()
    healthy, report = run([("a", "tcp", scripted([False]))], ft, interval=0.95, timeout=10)
    # Rounds at 0, 0.95, ... 8.55; one at 9.5 would have half a second of ten: not started.
    assert not healthy and report["rounds"] == 10 and abs(ft.now - 8.55) < 1e-9
