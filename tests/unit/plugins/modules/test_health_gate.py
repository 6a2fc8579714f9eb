import json
import socket
import sys
import time

from ansible_collections.keel.platform.plugins.modules import health_gate


def test_passing_gate_changes_nothing(run_module):
    failed, result = run_module(health_gate.main, {"checks": [{"type": "command", "argv": ["true"]}], "interval": 0.01, "timeout": 5})
    assert not failed and result["healthy"] and result["changed"] is False
    assert result["checks"][0]["name"] == "command[0]" and result["checks"][0]["status"] == "passing"


def test_runs_in_check_mode(run_module):
    failed, result = run_module(health_gate.main, {"checks": [{"type": "command", "argv": ["true"]}], "_ansible_check_mode": True})
    assert not failed and result["healthy"]


def test_failing_gate_says_which_check_how_and_last_value(run_module):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        failed, result = run_module(health_gate.main, {
            "checks": [{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": port, "timeout": 1},
                       {"name": "probe", "type": "command", "argv": ["sh", "-c", "exit 2"]}],
            "interval": 0.01, "timeout": 0.5, "failure_threshold": 3,
        })
    assert failed and not result["healthy"] and result["changed"] is False
    assert result["msg"].startswith("health gate failed after")
    assert "db (tcp): cannot connect to 127.0.0.1:%d" % port in result["msg"]
    assert "probe (command): exit code 2, expected 0 [last value: rc=2]" in result["msg"]


def test_bad_input_is_a_clear_error(run_module):
    failed, result = run_module(health_gate.main, {"checks": [{"type": "smoke"}]})
    assert failed and "value of type must be one of" in result["msg"]
    failed, result = run_module(health_gate.main, {"checks": [{"type": "tcp", "host": "x", "port": 1}], "interval": -1})
    assert failed and result["msg"] == "interval must be more than 0 seconds, got -1.0"
    failed, result = run_module(health_gate.main, {"checks": [{"type": "http"}]})
    assert failed and result["msg"] == "checks[0] (http[0]): a http check needs url"


def test_secrets_stay_out_of_the_result(run_module):
    failed, result = run_module(health_gate.main, {
        "checks": [{"type": "redis", "host": "127.0.0.1", "port": 9, "password": "hunter2-redis", "timeout": 0.5}],
        "interval": 0.01, "timeout": 0.2,
    })
    assert failed and "hunter2-redis" not in str(result)


def test_a_missing_library_fails_at_once_not_at_the_timeout(run_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    started = time.monotonic()
    failed, result = run_module(health_gate.main, {"checks": [{"type": "postgresql", "host": "127.0.0.1", "port": 9}], "timeout": 30})
    assert time.monotonic() - started < 2
    assert failed and "Failed to import the required Python library (psycopg2)" in result["msg"]
    assert "a postgresql check needs the Python library psycopg2" in result["msg"] and "rounds" not in result


def test_command_checks_do_not_run_in_check_mode_unless_read_only(run_module, tmp_path):
    marker = tmp_path / "restarted"
    failed, result = run_module(health_gate.main, {
        "checks": [{"name": "restart", "type": "command", "argv": ["touch", str(marker)]}], "_ansible_check_mode": True})
    assert not failed and not marker.exists()
    assert result["checks"][0]["status"] == "skipped" and "restart was not run in check mode" in json.dumps(result["warnings"])
    failed, result = run_module(health_gate.main, {
        "checks": [{"name": "probe", "type": "command", "argv": ["touch", str(marker)], "read_only": True}], "_ansible_check_mode": True})
    assert not failed and marker.exists() and result["checks"][0]["status"] == "passing"


def test_url_credentials_and_headers_stay_out_of_the_result(run_module):
    failed, result = run_module(health_gate.main, {
        "checks": [{"type": "http", "url": "http://monitor:url-secret-pw@127.0.0.1:9/health",
                    "headers": {"Authorization": "Bearer header-secret-token"}, "timeout": 0.5}],
        "interval": 0.01, "timeout": 0.3,
    })
    text = json.dumps(result)
    assert failed and "url-secret-pw" not in text and "header-secret-token" not in text
    assert "monitor:********@127.0.0.1:9" in result["msg"]


def test_three_slow_checks_with_timeout_4_return_in_under_7_seconds(run_module):
    # Each check would take 30 s (its own timeout) and ignores nothing: the gate's timeout bounds them.
    checks = [{"name": "slow%d" % i, "type": "command", "argv": ["sleep", "30"], "timeout": 30} for i in range(3)]
    started = time.monotonic()
    failed, result = run_module(health_gate.main, {"checks": checks, "timeout": 4})
    took = time.monotonic() - started
    print("3 slow command checks, timeout: 4 -> module returned after %.2f s" % took)
    assert failed and took < 7 and result["rounds"] == 1
