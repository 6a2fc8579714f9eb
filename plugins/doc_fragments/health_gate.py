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
        description:
          - Seconds one attempt of this check may take. An attempt is also never given more
            than the time the gate has left (see O(timeout)).
        type: float
        default: 5.0
      url:
        description:
          - (http) URL to request, C(http://) or C(https://). It is requested directly, not
            through a proxy (see O(checks[].use_proxy)), and redirects are not followed.
          - Credentials in it (C(https://user:password@host/)) are sent as basic
            authentication and masked in the results and the output.
          - In messages the URL is shown with every query value masked (C(?token=********)).
            Values of query parameters whose names look secret (containing C(token), C(secret),
            C(pass), C(pwd), C(key), C(auth), C(sig), C(cred), C(session) or C(code)) are also
            masked wherever they appear in the results and the output.
          - A malformed URL, one without a host name, or a port outside 1 to 65535 fails the
            module before any check runs.
          - At most 1 MiB of the body is read.
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
        description:
          - (http, redis) CA bundle to verify the server with.
          - (postgresql) CA bundle for O(checks[].sslmode=verify-ca) and O(checks[].sslmode=verify-full)
            (libpq's C(sslrootcert)).
        type: path
      validate_certs:
        description: (http, redis) Verify the server's TLS certificate.
        type: bool
        default: true
      host_header:
        description:
          - (http) Host header to send (to reach one virtual host through an address).
          - On an C(https) URL its name is also the TLS server name (SNI) sent and the name the
            certificate is verified against, so the virtual host's own certificate is checked.
        type: str
      headers:
        description:
          - (http) More request headers.
          - Their values are treated as secrets (C(Authorization), tokens, cookies) and never
            appear in results or output.
        type: dict
      use_proxy:
        description:
          - (http) Go through the proxy of the environment (C(https_proxy), C(http_proxy),
            C(no_proxy)). By default the URL is requested directly, whatever the environment says.
          - Cannot be combined with O(checks[].host_header) on an C(https) URL (the TLS server name
            cannot be chosen through a proxy).
        type: bool
        default: false
      use_netrc:
        description:
          - (http) Send credentials for the URL's host from C(.netrc) (C(NETRC) or C(~/.netrc))
            when the URL carries none. Off by default.
        type: bool
        default: false
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
      sslmode:
        description:
          - (postgresql) libpq's C(sslmode). C(verify-full) checks the server's certificate and name
            (with O(checks[].ca_file) as the CA).
        type: str
        choices: [disable, allow, prefer, require, verify-ca, verify-full]
        default: prefer
      role:
        description:
          - (postgresql) C(primary) or C(replica); (redis) C(master) or C(replica); C(any) accepts either.
        type: str
        choices: [any, primary, replica, master]
        default: any
      max_lag_bytes:
        description:
          - (postgresql) A replica fails when it has not yet replayed more WAL than this, counted
            against the primary's current position when O(checks[].primary_host) is given, otherwise
            against what the replica has received or the primary last reported to it
            (C(pg_stat_wal_receiver.latest_end_lsn)).
          - A lag check (this or O(checks[].max_lag_seconds)) always fails unless the replica's WAL
            receiver is C(streaming); a replica that is disconnected or never connected is not
            caught up, however little it has left to replay.
          - The user needs C(pg_monitor) (or C(pg_read_all_stats)) to see the WAL receiver's status.
          - Without O(checks[].primary_host), WAL the primary has written but not yet sent is not
            seen; give the primary for the strict comparison.
        type: int
      max_lag_seconds:
        description:
          - (postgresql) A replica fails when it is behind and its last replayed transaction is older
            than this. A replica with nothing left to replay (by the same comparison as
            O(checks[].max_lag_bytes)) has no lag, however long the primary has been idle.
          - The WAL receiver must be streaming, as for O(checks[].max_lag_bytes).
        type: float
      primary_host:
        description:
          - (postgresql) The replica's primary. With a lag option, the check first reads the
            primary's current WAL position (C(pg_current_wal_lsn())) and the replica passes only
            when it has replayed up to it. Same user, password, database, O(checks[].sslmode) as the
            replica.
        type: str
      primary_port:
        description: (postgresql) Port of O(checks[].primary_host); defaults to O(checks[].port), then 5432.
        type: int
      require_master_link:
        description: (redis) A replica fails unless its link to the master is up.
        type: bool
        default: false
      tls:
        description:
          - (redis) Connect with TLS (a server with C(tls-port)), verifying its certificate with O(checks[].ca_file)
            (the system's CAs without it) and its name or address against O(checks[].host).
        type: bool
        default: false
      argv:
        description:
          - (command) Command and arguments, run without a shell, in a process group of its own.
          - It is stopped (the whole group killed) at its O(checks[].timeout), or a little before
            the gate's O(timeout) (a tenth of the time left, 50 to 500 ms), and then fails with
            C(did not finish). Groups still running when the gate returns or the module exits are
            killed too, so no command outlives the gate.
        type: list
        elements: str
      expected_rc:
        description: (command) Exit code that passes.
        type: int
        default: 0
      stdout_contains:
        description: (command) Text the output must contain (searched in its first 1 MiB).
        type: str
      read_only:
        description:
          - (command) The command only reads, so it may run in check mode. Command checks not
            marked so are skipped in check mode (reported with status C(skipped) and a warning).
        type: bool
        default: false
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
    description:
      - Seconds the gate may take in all; a bound on the wall clock.
      - The checks of one round run at the same time, each given at most the time left; a check
        that has not answered by then fails and the gate returns. No round starts with less
        than a tenth of the timeout (at most 1 second) left.
    type: float
    default: 60.0
requirements:
  - psycopg2 (for postgresql checks; its absence fails the task before any check runs)
  - docker (the Docker SDK for Python, for docker checks; likewise)
"""
