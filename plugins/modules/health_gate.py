#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: health_gate
short_description: Wait until a target is healthy enough to proceed, or fail with the evidence
version_added: 0.1.0
description:
  - Runs a set of health checks in rounds until they all pass together in
    O(success_threshold) consecutive rounds, or gives up after O(failure_threshold)
    consecutive failing rounds or at O(timeout).
  - Check kinds are HTTP(S), TCP connect, a Docker container's health status, PostgreSQL
    (ready, primary or replica, replication lag), Redis (PING with auth, role, master link)
    and a command's exit code.
  - The checks of a round run at the same time, each bounded by the time left, so O(timeout)
    bounds the wall clock however many checks are slow.
  - On failure the message names each failing check, how it failed and the last value seen.
  - Values and errors in the results are cut to 4 KiB; passwords, header values and URL
    credentials are masked.
  - It never changes anything. PostgreSQL sessions are read-only with a statement timeout;
    command checks run in check mode only when marked O(checks[].read_only).
author:
  - Keel maintainers (@keel-platform)
extends_documentation_fragment:
  - keel.platform.attributes
  - keel.platform.health_gate
attributes:
  check_mode:
    support: full
    details: Checks only read, so they run in check mode too, except command checks not marked O(checks[].read_only), which are skipped.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Wait for the app to answer, with its database reachable
  keel.platform.health_gate:
    checks:
      - name: api
        type: http
        url: https://app1.internal:8443/health
        ca_file: /etc/keel/ca.pem
        json_field: status
        json_value: ok
        max_latency_ms: 500
      - name: database
        type: tcp
        host: pg1.internal
        port: 5432
    success_threshold: 3
    interval: 2
    timeout: 120

- name: The new replica has replayed everything the primary has written, and is streaming
  keel.platform.health_gate:
    checks:
      - type: postgresql
        host: pg2.internal
        primary_host: pg1.internal
        user: keel_monitor  # member of pg_monitor
        password: "{{ vault_keel_monitor_password }}"
        sslmode: verify-full
        ca_file: /etc/keel/ca.pem
        role: replica
        max_lag_bytes: 0
        max_lag_seconds: 5
    timeout: 600

- name: One virtual host over HTTPS by address (TLS server name shop.example.com)
  keel.platform.health_gate:
    checks:
      - type: http
        url: https://10.0.0.21/health
        host_header: shop.example.com
        headers:
          Authorization: "Bearer {{ vault_health_token }}"
      - name: local probe, safe in check mode
        type: command
        argv: [/usr/local/bin/app-ready]
        read_only: true

- name: Redis replica linked to its master
  keel.platform.health_gate:
    checks:
      - type: redis
        host: redis2.internal
        password: "{{ vault_redis_password }}"
        role: replica
        require_master_link: true
"""

RETURN = r"""
healthy:
  description: Whether the gate opened.
  returned: always
  type: bool
rounds:
  description: Rounds run.
  returned: always
  type: int
elapsed:
  description: Seconds waited in all.
  returned: always
  type: float
reason:
  description: Why the gate stopped.
  returned: always
  type: str
  sample: 3 consecutive passing round(s)
checks:
  description: Per check, its result over the whole wait.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
    kind:
      description: The check's type.
      type: str
    status:
      description: C(passing) or C(failing) in the last round; C(skipped) for a command check not run in check mode.
      type: str
    attempts:
      description: Times the check ran.
      type: int
    passes:
      description: Times it passed.
      type: int
    last_error:
      description: The last failure's explanation, if any (at most 4 KiB, secrets masked).
      type: str
    last_value:
      description: The last value seen (status code, role, lag and WAL receiver state, exit code, part of a body); at most 4 KiB, secrets masked.
      type: str
    latency_p50_ms:
      description: Median latency of its attempts.
      type: float
    latency_p95_ms:
      description: 95th percentile latency of its attempts.
      type: float
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.keel.platform.plugins.module_utils import gate
from ansible_collections.keel.platform.plugins.module_utils.health_checks import (
    GATE_OPTIONS, CheckConfigError, MissingLibraryError, build, secret_values)


def run_gate(module, params):
    """Validate, run the gate; return (healthy, report) or fail the module with a clear message."""
    if not params["checks"]:
        module.fail_json(msg="checks: give at least one check")
    # URL credentials and header values are secrets too: masked wherever the output shows them.
    for check in params["checks"]:
        module.no_log_values.update(secret_values(check))
    try:
        checks = build(params["checks"], check_mode=module.check_mode)
        gate.validate(params["success_threshold"], params["failure_threshold"], params["interval"], params["timeout"])
    except MissingLibraryError as exc:
        module.fail_json(msg="%s. %s" % (exc, missing_required_lib(exc.library)), exception=exc.exception)
    except (CheckConfigError, gate.GateConfigError) as exc:
        module.fail_json(msg=str(exc))
    return gate.run(checks, params["success_threshold"], params["failure_threshold"], params["interval"], params["timeout"])


def main():
    module = AnsibleModule(argument_spec=GATE_OPTIONS, supports_check_mode=True)
    healthy, report = run_gate(module, module.params)
    for check in report["checks"]:
        if check["status"] == "skipped":
            module.warn("check %s was not run in check mode: a command may change things; set read_only: true"
                        " on a command that only reads" % check["name"])
    result = dict(changed=False, healthy=healthy, **report)
    if not healthy:
        module.fail_json(msg=gate.failure_message(report), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
