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
  - On failure the message names each failing check, how it failed and the last value seen.
  - It never changes anything.
author:
  - Keel maintainers (@keel-platform)
extends_documentation_fragment:
  - keel.platform.attributes
  - keel.platform.health_gate
attributes:
  check_mode:
    support: full
    details: Checks only read, so they run in check mode too.
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

- name: The new replica has caught up
  keel.platform.health_gate:
    checks:
      - type: postgresql
        host: pg2.internal
        user: keel_monitor
        password: "{{ vault_keel_monitor_password }}"
        role: replica
        max_lag_bytes: 16777216
    timeout: 600

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
      description: C(passing) or C(failing) in the last round.
      type: str
    attempts:
      description: Times the check ran.
      type: int
    passes:
      description: Times it passed.
      type: int
    last_error:
      description: The last failure's explanation, if any.
      type: str
    last_value:
      description: The last value seen (status code, role, lag, exit code).
      type: str
    latency_p50_ms:
      description: Median latency of its attempts.
      type: float
    latency_p95_ms:
      description: 95th percentile latency of its attempts.
      type: float
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.keel.platform.plugins.module_utils import gate
from ansible_collections.keel.platform.plugins.module_utils.health_checks import GATE_OPTIONS, CheckConfigError, build

LIBRARIES = {}
for _kind, _lib in (("postgresql", "psycopg2"), ("docker", "docker")):
    try:
        __import__(_lib)
    except ImportError:
        LIBRARIES[_kind] = (_lib, traceback.format_exc())


def run_gate(module, params):
    """Validate, run the gate; return (healthy, report) or fail the module with a clear message."""
    if not params["checks"]:
        module.fail_json(msg="checks: give at least one check")
    for check in params["checks"]:
        if check["type"] in LIBRARIES:
            lib, trace = LIBRARIES[check["type"]]
            module.fail_json(msg=missing_required_lib(lib) + " (needed by %s checks)" % check["type"], exception=trace)
    try:
        checks = build(params["checks"])
        gate.validate(params["success_threshold"], params["failure_threshold"], params["interval"], params["timeout"])
    except (CheckConfigError, gate.GateConfigError) as exc:
        module.fail_json(msg=str(exc))
    return gate.run(checks, params["success_threshold"], params["failure_threshold"], params["interval"], params["timeout"])


def main():
    module = AnsibleModule(argument_spec=GATE_OPTIONS, supports_check_mode=True)
    healthy, report = run_gate(module, module.params)
    result = dict(changed=False, healthy=healthy, **report)
    if not healthy:
        module.fail_json(msg=gate.failure_message(report), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
