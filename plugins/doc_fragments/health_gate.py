# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The health gate: checks and how long and how strictly to wait for them.
    DOCUMENTATION = r"""
options:
  checks:
    description:
      - The checks; every one must pass in the same round for the round to pass.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name used in results and messages. Defaults to the type and index.
        type: str
      type:
        description: What to check.
        type: str
        required: true
        choices: [http, tcp, docker, postgresql, redis, command]
      timeout:
        description: Seconds one attempt of this check may take.
        type: float
        default: 5.0
      url:
        description: (http) URL to request.
        type: str
      method:
        description: (http) HTTP method.
        type: str
        default: GET
      status_codes:
        description: (http) Statuses that pass. Redirects are not followed.
        type: list
        elements: int
        default: [200]
      body_contains:
        description: (http) Text the body must contain.
        type: str
      json_field:
        description: (http) Dotted path to a field of a JSON body that must exist (for example C(status.db)).
        type: str
      json_value:
        description: (http) Value O(checks[].json_field) must have.
        type: raw
      max_latency_ms:
        description: (http) Slower answers fail the check.
        type: float
      ca_file:
        description: (http) CA bundle to verify the server with.
        type: path
      validate_certs:
        description: (http) Verify the server's TLS certificate.
        type: bool
        default: true
      host_header:
        description: (http) Host header to send (to reach one virtual host through an address).
        type: str
      headers:
        description: (http) More request headers.
        type: dict
      host:
        description: (tcp, postgresql, redis) Host to connect to. postgresql and redis default to localhost.
        type: str
      port:
        description: (tcp, postgresql, redis) Port. postgresql defaults to 5432, redis to 6379.
        type: int
      container:
        description: (docker) Container name or ID; it passes when its HEALTHCHECK says healthy.
        type: str
      docker_host:
        description: (docker) Docker API endpoint.
        type: str
        default: unix:///var/run/docker.sock
      user:
        description: (postgresql) User to connect as.
        type: str
      username:
        description: (redis) ACL user name, with O(checks[].password).
        type: str
      password:
        description: (postgresql, redis) Password. Never logged.
        type: str
      database:
        description: (postgresql) Database to connect to.
        type: str
        default: postgres
      role:
        description:
          - (postgresql) C(primary) or C(replica); (redis) C(master) or C(replica); C(any) accepts either.
        type: str
        choices: [any, primary, replica, master]
        default: any
      max_lag_bytes:
        description: (postgresql) A replica fails when more WAL than this is received but not replayed.
        type: int
      max_lag_seconds:
        description: (postgresql) A replica fails when its last replayed transaction is older than this.
        type: float
      require_master_link:
        description: (redis) A replica fails unless its link to the master is up.
        type: bool
        default: false
      argv:
        description: (command) Command and arguments, run without a shell.
        type: list
        elements: str
      expected_rc:
        description: (command) Exit code that passes.
        type: int
        default: 0
      stdout_contains:
        description: (command) Text the output must contain.
        type: str
  success_threshold:
    description: Consecutive passing rounds needed to open the gate.
    type: int
    default: 1
  failure_threshold:
    description: Consecutive failing rounds after which the gate gives up before O(timeout); 0 waits until the timeout.
    type: int
    default: 0
  interval:
    description: Seconds between rounds.
    type: float
    default: 2.0
  timeout:
    description: Seconds the gate may wait in all; no round starts that could not finish by then.
    type: float
    default: 60.0
requirements:
  - psycopg2 (for postgresql checks)
  - docker (the Docker SDK for Python, for docker checks)
"""
