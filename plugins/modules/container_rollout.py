#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_rollout
short_description: Replace an app service's containers with a new version without dropping traffic
version_added: 0.1.0
description:
  - Starts the new version's containers beside the running ones (on the other set of host
    ports), waits for them to pass a health gate, then retires the old containers and prunes
    old images. When the gate fails, the new containers are removed, the old ones keep serving
    and the module fails with the gate's evidence and RV(rolled_back=true).
  - With O(phase=deploy) the old containers are kept so that the playbook can switch the load
    balancer to RV(endpoints) first; O(phase=finalize) then retires them.
  - The same image and configuration again changes nothing.
  - Containers run the exact image ID that was resolved and gated (not a tag that may move),
    with every capability dropped (add back with O(cap_add)), no-new-privileges, a read-only
    root filesystem and a restart policy by default.
  - B(Gate record.) New containers are created as C(SERVICE-gN-I-pending) and renamed to
    C(SERVICE-gN-I) once their generation passed the gate. A run that dies between start and
    gate (lost connection, timeout, kill) leaves C(-pending) containers; the next run gates
    them if they are what it wants (same image and configuration), otherwise removes them,
    before anything else. Endpoints of containers that did not pass are never returned.
  - B(Running is part of the gate.) After the checks pass (or, with neither O(checks) nor
    O(healthcheck), after 3 seconds), every new container must be running, not restarting and
    not restarted since its start; otherwise the generation is removed as for a failed gate.
    Without O(checks) and O(healthcheck) that is the only gate, and the task warns.
  - B(One deploy at a time.) A deploy (O(phase=full) or V(deploy)) while an earlier
    O(phase=deploy) still waits for its O(phase=finalize) fails, naming both generations, and
    changes nothing; finish it with O(phase=finalize) or undo it with O(phase=abort). Runs for
    the same service on one host take a lock and wait for each other (O(lock_timeout)).
  - B(Failures.) Every failure (Docker API errors included) fails the task with a message that
    ends with what the host holds (also in RV(host_state)), and RV(rolled_back) says whether new
    containers were removed. Until the new generation is gated the host keeps exactly the
    generations it had; after that, the new one serves and a failure while retiring or pruning
    leaves the old containers for the next run.
author:
  - Keel maintainers (@keel-platform)
extends_documentation_fragment:
  - keel.platform.attributes
  - keel.platform.health_gate
notes:
  - The health gate options are those of M(keel.platform.health_gate) and apply to each new
    container. In every string of a check (lists and dictionaries such as O(checks[].argv)
    and O(checks[].headers) included), C({host}) becomes the address the ports are published
    on (loopback for C(0.0.0.0)) and C({port}) the host port of the first of
    O(container_ports). These two are the only placeholders; every other brace is literal.
    O(checks[].port) may be given as the string C({port}). A check that uses C({port}) when no
    port is published fails before any container starts. In O(checks[].url) an IPv6 address
    is put in brackets (C(http://{host}:{port}/health) becomes C(http://[::1]:18000/health));
    elsewhere it is put in as it is. Each check is filled in with a sample port and built
    before anything starts, so a URL that does not parse fails first.
  - C({host}) and C({port}) are always substituted, in every string of a check, passwords and
    header values included; there is no escape for a literal C({host}) or C({port}).
  - Each new container's own O(healthcheck), when set, is always part of the gate.
  - The module must run on the Docker host (the default O(docker_host)), because the lock, the
    secret files and the check that the new host ports are free are local to it.
attributes:
  check_mode:
    support: full
    details:
      - Reports what would be created, gated, removed and retired; nothing is pulled, started or
        removed. With O(pull=always) the registry is asked (without pulling) whether the tag
        still points at the local image, so a moved tag is reported as a change.
  diff_mode:
    support: full
    details: Shows the image, configuration hash and containers before and after.
options:
  service:
    description: Name of the app service; containers are named C(SERVICE-gGENERATION-INDEX).
    type: str
    required: true
  image:
    description:
      - Image reference with a tag or a digest, for example C(registry.internal:5000/shop:1.4.2)
        or C(registry.internal:5000/shop@sha256:...).
      - Required unless O(phase=abort), which does not use it.
    type: str
  pull:
    description:
      - V(missing) pulls only when the image is not present, V(always) every run (a failed pull
        fails the task), V(never) requires it present.
    type: str
    choices: [missing, always, never]
    default: missing
  registry_auth:
    description: Credentials for a private registry, used for the pull (and check mode's registry query).
    type: dict
    suboptions:
      username:
        description: Registry user.
        type: str
        required: true
      password:
        description: Password or token. Never logged.
        type: str
        required: true
      registry:
        description: Registry address. Defaults to the registry part of O(image).
        type: str
  replicas:
    description: Containers of the service on this host.
    type: int
    default: 1
  container_ports:
    description: Container ports (TCP) to publish.
    type: list
    elements: int
    default: []
  port_base:
    description:
      - First host port. The two generations alternate between two non-overlapping ranges from
        here, so old and new can run side by side (see RV(endpoints)). Before a start, the new
        range is checked to be free on O(host_ip).
    type: int
  host_ip:
    description: Host address to publish on.
    type: str
    default: 127.0.0.1
  entrypoint:
    description: Entrypoint to run instead of the image's.
    type: list
    elements: str
  command:
    description: Command to run instead of the image's.
    type: list
    elements: str
  env:
    description: Environment variables (visible in C(docker inspect); see O(secrets)).
    type: dict
    default: {}
  secrets:
    description:
      - Secrets delivered as read-only files, C(SECRETS_MOUNT/NAME) in the container. Never
        logged, never in the environment; a change rolls the service.
      - Each generation gets its own directory C(SECRETS_DIR/SERVICE/gN), mode 0500, with one
        file per secret, mode 0400, both owned by the container's numeric user (O(user), else the
        image's user, else root), bind-mounted read-only. It is removed with the generation.
      - Values are strings; a number is written as its text, anything else (a list, a
        dictionary, a boolean, null) fails the task before anything starts.
    type: dict
    default: {}
  secrets_mount:
    description: Where the O(secrets) files appear in the container.
    type: str
    default: /run/secrets
  secrets_dir:
    description: Host directory for the O(secrets) files (kept root's alone, 0700).
    type: path
    default: /var/lib/keel/container-rollout/secrets
  secret_env:
    description:
      - Secrets as environment variables, for apps that cannot read files. Never logged, but
        anyone who may run C(docker inspect) sees them; prefer O(secrets). Values as for O(secrets).
    type: dict
    default: {}
  volumes:
    description: Binds or named volumes, as C(SOURCE:TARGET[:ro]).
    type: list
    elements: str
    default: []
  tmpfs:
    description:
      - Writable tmpfs mounts (the root filesystem is read-only by default), as C(PATH) or
        C(PATH:OPTIONS), for example C(/run/app:size=16m,mode=0700).
    type: list
    elements: str
    default: [/tmp]
  ulimits:
    description: Resource limits (C(ulimit)) of the containers.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Limit name, for example C(nofile) or C(nproc).
        type: str
        required: true
      soft:
        description: Soft limit.
        type: int
        required: true
      hard:
        description: Hard limit.
        type: int
        required: true
  memory:
    description: Memory limit, for example C(512m).
    type: str
  cpus:
    description: CPU limit in cores.
    type: float
  pids_limit:
    description: Process limit.
    type: int
    default: 512
  user:
    description: User (and group) to run as, for example C(1000:1000). Numeric when O(secrets) are set.
    type: str
  read_only:
    description: Read-only root filesystem.
    type: bool
    default: true
  cap_add:
    description: Capabilities to add back; all others are dropped.
    type: list
    elements: str
    default: []
  restart_policy:
    description: Docker restart policy.
    type: str
    choices: ["no", on-failure, always, unless-stopped]
    default: unless-stopped
  healthcheck:
    description: The container's own health check (Docker HEALTHCHECK).
    type: dict
    suboptions:
      test:
        description: Command, run with C(CMD) semantics (no shell).
        type: list
        elements: str
        required: true
      interval:
        description: Seconds between checks.
        type: float
        default: 5
      timeout:
        description: Seconds one check may take.
        type: float
        default: 3
      retries:
        description: Consecutive failures before unhealthy.
        type: int
        default: 3
      start_period:
        description: Seconds after start in which failures do not count.
        type: float
        default: 0
  labels:
    description: More labels.
    type: dict
    default: {}
  log_driver:
    description: Docker log driver.
    type: str
    default: json-file
  log_options:
    description: Log driver options.
    type: dict
    default: {max-size: 10m, max-file: "3"}
  networks:
    description:
      - Docker networks to attach to (the first at creation, the others before the start).
      - Every generation gets the same aliases, so other containers reach the service by a
        stable name, but only once it passed its gate. New containers join with the alias
        C(SERVICE-gN) alone (their generation, for checks that need to reach them on the
        network); the stable aliases are added (the container leaves the network and joins again)
        as part of the gate record, just before the rename.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Network name.
        type: str
        required: true
      aliases:
        description: DNS aliases on this network. Defaults to O(service).
        type: list
        elements: str
  stop_timeout:
    description: Seconds a retired container gets to stop gracefully.
    type: int
    default: 10
  drain_delay:
    description:
      - Seconds to wait between the switch and retiring the old containers (with O(phase=full)
        after the gate passed, with O(phase=finalize) before stopping), so connections they
        still serve can finish.
    type: float
    default: 0
  keep_images:
    description:
      - How many of the images this service most recently ran to keep (the current one included).
        Images it ran before those are removed unless a container uses them or another service
        keeps them for its rollback (the O(keep_images) newest of its history, recorded in its
        containers' labels). Images the service never ran are never removed. An image with
        several names loses each of them that still names it, then goes.
    type: int
    default: 3
  phase:
    description:
      - V(full) deploys, gates and retires the old containers in one go.
      - V(deploy) deploys and gates, keeping the old containers for a load balancer switch.
      - V(finalize) retires the old containers and prunes images.
      - V(abort) undoes a deploy. Under the lock, it removes the generations that never passed
        their gate and, when an older gated generation still runs (a O(phase=deploy) waiting for
        its O(phase=finalize)), the newest one (after O(drain_delay), stopping gracefully), so
        the host is back to what it ran before; RV(endpoints) are the remaining generation's.
        Point the load balancer back at those first. A single gated generation is never
        removed, so aborting again changes nothing. Only O(service) and the options of the lock,
        the engine, O(stop_timeout) and O(drain_delay) are used.
      - V(remove) takes the service off the host. Under the lock, every container of it (every
        generation, gated or not) is stopped gracefully after O(drain_delay) and removed, with
        its secret files and the images of its deployment history that no other container
        uses (RV(pruned_images)). The load balancers must no longer route to it. Removing again
        changes nothing. The same options as V(abort) are used.
    type: str
    choices: [full, deploy, finalize, abort, remove]
    default: full
  protect_images:
    description:
      - With O(phase=remove), images (references or IDs) that are kept even when only the
        removed service used them, for example the images of the services that stay, which a
        run may be about to start. Ignored by the other phases.
    type: list
    elements: str
    default: []
  docker_host:
    description:
      - Docker API endpoint.
      - With O(secrets) it must be a C(unix://) socket (the secret files are on this host);
        any other endpoint fails the task before anything is changed. Without, it warns, as the
        lock and the port check are local.
    type: str
    default: unix:///var/run/docker.sock
  lock_dir:
    description:
      - Directory of the per-service lock file C(keel-container-rollout-SERVICE.lock).
      - Created with mode 0700 when missing. It must be a directory (not a symlink) owned by
        the user the module runs as that neither group nor others may write, or the task fails
        before anything is changed; the lock file is opened without following symlinks.
    type: path
    default: /run/keel
  lock_timeout:
    description: Seconds to wait for another run on the same service to finish before failing.
    type: float
    default: 300
requirements:
  - docker (the Docker SDK for Python)
"""

EXAMPLES = r"""
- name: Roll out shop 1.4.2 on this app host, gated on its /health endpoint
  keel.platform.container_rollout:
    service: shop
    image: registry.internal:5000/shop:1.4.2
    registry_auth:
      username: deploy
      password: "{{ vault_registry_password }}"
    replicas: 2
    container_ports: [8000]
    port_base: 18000
    networks:
      - name: app
        aliases: [shop]
    env:
      SHOP_MODE: production
      SHOP_DATABASE_PASSWORD_FILE: /run/secrets/db_password
    secrets:
      db_password: "{{ vault_shop_db_password }}"
    user: "10001:10001"
    memory: 512m
    ulimits:
      - {name: nofile, soft: 65536, hard: 65536}
    healthcheck:
      test: [curl, -fsS, "http://127.0.0.1:8000/health"]
      interval: 2
    checks:
      - type: http
        url: "http://{host}:{port}/health"
        json_field: status
        json_value: ok
    success_threshold: 3
    timeout: 90
    phase: deploy
  register: shop_rollout

- name: Point the load balancer at the new endpoints (role task, not shown), then retire the old
  keel.platform.container_rollout:
    service: shop
    image: registry.internal:5000/shop:1.4.2
    replicas: 2
    container_ports: [8000]
    port_base: 18000
    networks:
      - name: app
        aliases: [shop]
    env:
      SHOP_MODE: production
      SHOP_DATABASE_PASSWORD_FILE: /run/secrets/db_password
    secrets:
      db_password: "{{ vault_shop_db_password }}"
    user: "10001:10001"
    memory: 512m
    ulimits:
      - {name: nofile, soft: 65536, hard: 65536}
    healthcheck:
      test: [curl, -fsS, "http://127.0.0.1:8000/health"]
      interval: 2
    drain_delay: 5
    phase: finalize
"""

RETURN = r"""
changed:
  description: Whether containers were started, gated, removed, retired, or images pruned.
  returned: always
  type: bool
rolled_back:
  description: True when new containers were started and then removed (failed gate, failed start, interruption).
  returned: always
  type: bool
generation:
  description: Generation now serving.
  returned: always
  type: int
image_id:
  description: ID of the image the service runs (none in check mode when it would be pulled).
  returned: when the image is present
  type: str
config_hash:
  description: Hash of the desired image and configuration (secrets included by their hash only).
  returned: always
  type: str
endpoints:
  description: The serving, gated containers and their published ports (for the load balancer).
  returned: always
  type: list
  elements: dict
  sample: [{container: shop-g4-0, host_ip: 127.0.0.1, ports: {"8000": 18002}}]
retired:
  description:
    - Containers stopped and removed (in check mode, that would be).
    - With O(phase=abort), those of the aborted generation.
  returned: always
  type: list
  elements: str
retire_pending:
  description: With O(phase=deploy), the old containers still running until O(phase=finalize).
  returned: always
  type: list
  elements: str
discarded:
  description: Containers of a generation that never passed its gate (an interrupted run), removed.
  returned: always
  type: list
  elements: str
pruned_images:
  description: Image IDs removed.
  returned: always
  type: list
  elements: str
gate:
  description: The health gate's report (as M(keel.platform.health_gate) returns it).
  returned: when a new generation was gated
  type: dict
host_state:
  description: On failure, the service's generations on the host, each with C(gated), C(slot), C(containers) and C(running).
  returned: on failure, when the engine answered
  type: list
  elements: dict
left_behind:
  description: Containers that could not be removed after a failure (the next run removes them).
  returned: when a removal failed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.keel.platform.plugins.module_utils import docker_engine
from ansible_collections.keel.platform.plugins.module_utils import rollout_runner
from ansible_collections.keel.platform.plugins.module_utils.health_checks import GATE_OPTIONS


def argument_spec():
    spec = dict(GATE_OPTIONS)
    # Check templates are validated by the rollout itself (rollout_runner.check_templates): a
    # check's ``port`` may be the placeholder "{port}", which only becomes a number per container.
    spec["checks"] = dict(type="list", elements="dict", default=[])
    spec.update(
        service=dict(type="str", required=True),
        image=dict(type="str"),
        pull=dict(type="str", choices=["missing", "always", "never"], default="missing"),
        registry_auth=dict(type="dict", options=dict(
            username=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            registry=dict(type="str"),
        )),
        replicas=dict(type="int", default=1),
        container_ports=dict(type="list", elements="int", default=[]),
        port_base=dict(type="int"),
        host_ip=dict(type="str", default="127.0.0.1"),
        entrypoint=dict(type="list", elements="str"),
        command=dict(type="list", elements="str"),
        env=dict(type="dict", default={}),
        secrets=dict(type="dict", default={}, no_log=True),
        secrets_mount=dict(type="str", default="/run/secrets", no_log=False),
        secrets_dir=dict(type="path", default="/var/lib/keel/container-rollout/secrets"),
        secret_env=dict(type="dict", default={}, no_log=True),
        volumes=dict(type="list", elements="str", default=[]),
        tmpfs=dict(type="list", elements="str", default=["/tmp"]),
        ulimits=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            soft=dict(type="int", required=True),
            hard=dict(type="int", required=True),
        )),
        memory=dict(type="str"),
        cpus=dict(type="float"),
        pids_limit=dict(type="int", default=512),
        user=dict(type="str"),
        read_only=dict(type="bool", default=True),
        cap_add=dict(type="list", elements="str", default=[]),
        restart_policy=dict(type="str", choices=["no", "on-failure", "always", "unless-stopped"], default="unless-stopped"),
        healthcheck=dict(type="dict", options=dict(
            test=dict(type="list", elements="str", required=True),
            interval=dict(type="float", default=5),
            timeout=dict(type="float", default=3),
            retries=dict(type="int", default=3),
            start_period=dict(type="float", default=0),
        )),
        labels=dict(type="dict", default={}),
        log_driver=dict(type="str", default="json-file"),
        log_options=dict(type="dict", default={"max-size": "10m", "max-file": "3"}),
        networks=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            aliases=dict(type="list", elements="str"),
        )),
        stop_timeout=dict(type="int", default=10),
        drain_delay=dict(type="float", default=0),
        keep_images=dict(type="int", default=3),
        phase=dict(type="str", choices=["full", "deploy", "finalize", "abort", "remove"], default="full"),
        docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
        lock_dir=dict(type="path", default="/run/keel"),
        lock_timeout=dict(type="float", default=300),
        protect_images=dict(type="list", elements="str", default=[]),
    )
    return spec


class RolloutModule(AnsibleModule):
    """AnsibleModule that also hides the check templates' passwords: ``checks`` has no
    sub-spec here (see argument_spec), so they are registered as soon as the input is read,
    before anything could be reported."""

    def _load_params(self):
        super(RolloutModule, self)._load_params()
        checks = self.params.get("checks") if isinstance(self.params, dict) else None
        self.no_log_values.update(rollout_runner.check_secret_values(checks if isinstance(checks, list) else []))


def main():
    module = RolloutModule(argument_spec=argument_spec(), supports_check_mode=True)
    if docker_engine.DOCKER_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("docker"), exception=docker_engine.DOCKER_IMPORT_ERROR)
    runner = rollout_runner.Runner(module.params, check_mode=module.check_mode, diff=module._diff, warn=module.warn)
    failure = None
    try:
        with rollout_runner.raise_on_signals():
            result = runner.execute()
    except rollout_runner.RolloutFailed as exc:
        failure = (exc.msg, exc.result)
    except BaseException as exc:  # never a traceback (it could carry a secret): say what broke and where the host stands
        failure = ("container_rollout stopped on an unexpected %s: %s. %s" % (type(exc).__name__, exc, runner.host_state()), dict(runner.result))
    if failure:  # outside the except blocks: no traceback is attached to the result
        module.fail_json(msg=failure[0], **failure[1])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
