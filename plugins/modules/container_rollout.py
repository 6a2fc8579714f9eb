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
  - Containers run with every capability dropped (add back with O(cap_add)), no-new-privileges,
    a read-only root filesystem and a restart policy by default.
author:
  - Keel maintainers (@keel-platform)
extends_documentation_fragment:
  - keel.platform.attributes
  - keel.platform.health_gate
notes:
  - The health gate options are those of M(keel.platform.health_gate) and apply to each new
    container. In check strings, C({host}), C({container}), C({port}) (the first published port)
    and C({port_N}) (the host port of container port N) are replaced for that container.
  - Each new container's own O(healthcheck), when set, is always part of the gate.
attributes:
  check_mode:
    support: full
    details: Reports what would be created and retired; nothing is pulled, started or removed.
  diff_mode:
    support: full
    details: Shows the image, configuration hash and containers before and after.
options:
  service:
    description: Name of the app service; containers are named C(SERVICE-gGENERATION-INDEX).
    type: str
    required: true
  image:
    description: Image reference with its tag, for example C(registry.internal:5000/shop:1.4.2).
    type: str
    required: true
  pull:
    description: C(missing) pulls only when the image is not present, C(always) every run, C(never) requires it present.
    type: str
    choices: [missing, always, never]
    default: missing
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
        here, so old and new can run side by side (see RV(endpoints)).
    type: int
  host_ip:
    description: Host address to publish on.
    type: str
    default: 127.0.0.1
  command:
    description: Command to run instead of the image's.
    type: list
    elements: str
  env:
    description: Environment variables.
    type: dict
    default: {}
  secrets:
    description: Environment variables holding secrets. Never logged; a change rolls the service.
    type: dict
    default: {}
  volumes:
    description: Binds or named volumes, as C(SOURCE:TARGET[:ro]).
    type: list
    elements: str
    default: []
  tmpfs:
    description: Writable tmpfs mounts (the root filesystem is read-only by default).
    type: list
    elements: str
    default: [/tmp]
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
    description: User (and group) to run as, for example C(1000:1000).
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
  network:
    description: Docker network to attach to.
    type: str
  stop_timeout:
    description: Seconds a retired container gets to stop gracefully.
    type: int
    default: 10
  keep_images:
    description:
      - How many of the images this service most recently ran to keep (the current one included).
        Images it ran before those are removed unless a container uses them. Images the service
        never ran are never removed.
    type: int
    default: 3
  phase:
    description:
      - C(full) deploys, gates and retires the old containers in one go.
      - C(deploy) deploys and gates, keeping the old containers for a load balancer switch.
      - C(finalize) retires the old containers and prunes images.
    type: str
    choices: [full, deploy, finalize]
    default: full
  docker_host:
    description: Docker API endpoint.
    type: str
    default: unix:///var/run/docker.sock
requirements:
  - docker (the Docker SDK for Python)
"""

EXAMPLES = r"""
- name: Roll out shop 1.4.2 on this app host, gated on its /health endpoint
  keel.platform.container_rollout:
    service: shop
    image: registry.internal:5000/shop:1.4.2
    replicas: 2
    container_ports: [8000]
    port_base: 18000
    env:
      SHOP_MODE: production
    secrets:
      SHOP_DATABASE_URL: "{{ vault_shop_database_url }}"
    memory: 512m
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
    phase: finalize
"""

RETURN = r"""
changed:
  description: Whether containers were started, retired, or images pruned.
  returned: always
  type: bool
rolled_back:
  description: True when the new containers failed the gate and were removed.
  returned: always
  type: bool
generation:
  description: Generation now serving.
  returned: always
  type: int
image_id:
  description: ID of the image the service runs.
  returned: when the image is present
  type: str
config_hash:
  description: Hash of the desired image and configuration (secrets included by their hash only).
  returned: always
  type: str
endpoints:
  description: The serving containers and their published ports (for the load balancer).
  returned: always
  type: list
  elements: dict
  sample: [{container: shop-g4-0, host_ip: 127.0.0.1, ports: {"8000": 18002}}]
retired:
  description: Containers stopped and removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
retire_pending:
  description: With O(phase=deploy), the old containers still running until O(phase=finalize).
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
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.keel.platform.plugins.module_utils import gate as gate_loop
from ansible_collections.keel.platform.plugins.module_utils import rollout
from ansible_collections.keel.platform.plugins.module_utils.health_checks import GATE_OPTIONS, CheckConfigError, build

DOCKER_IMPORT_ERROR = None
try:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.types import LogConfig
except ImportError:
    DOCKER_IMPORT_ERROR = traceback.format_exc()
    DockerException = APIError = ImageNotFound = NotFound = Exception

NANO = 1000000000


def argument_spec():
    spec = dict(GATE_OPTIONS)
    spec.update(
        service=dict(type="str", required=True),
        image=dict(type="str", required=True),
        pull=dict(type="str", choices=["missing", "always", "never"], default="missing"),
        replicas=dict(type="int", default=1),
        container_ports=dict(type="list", elements="int", default=[]),
        port_base=dict(type="int"),
        host_ip=dict(type="str", default="127.0.0.1"),
        command=dict(type="list", elements="str"),
        env=dict(type="dict", default={}),
        secrets=dict(type="dict", default={}, no_log=True),
        volumes=dict(type="list", elements="str", default=[]),
        tmpfs=dict(type="list", elements="str", default=["/tmp"]),
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
        network=dict(type="str"),
        stop_timeout=dict(type="int", default=10),
        keep_images=dict(type="int", default=3),
        phase=dict(type="str", choices=["full", "deploy", "finalize"], default="full"),
        docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
    )
    return spec


class Rollout(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.result = dict(changed=False, rolled_back=False, retired=[], retire_pending=[], pruned_images=[], endpoints=[])

    # --- checks before touching anything --------------------------------------------------
    def validate(self):
        p = self.p
        if p["replicas"] < 1:
            self.fail("replicas must be at least 1, got %d" % p["replicas"])
        if p["keep_images"] < 1:
            self.fail("keep_images must be at least 1 (the image in use), got %d" % p["keep_images"])
        if p["container_ports"] and p["port_base"] is None:
            self.fail("port_base is required with container_ports")
        if p["port_base"] is not None:
            last = p["port_base"] + 2 * p["replicas"] * max(1, len(p["container_ports"])) - 1
            if p["port_base"] < 1 or last > 65535:
                self.fail("port_base %d with %d replica(s) needs host ports up to %d; they must lie in 1-65535" % (p["port_base"], p["replicas"], last))
        if ":" not in p["image"].rsplit("/", 1)[-1] and "@" not in p["image"]:
            self.fail("image %r has no tag; name the version to roll out (for example %s:1.2.3)" % (p["image"], p["image"]))
        if not p["service"].replace("-", "").replace("_", "").isalnum():
            self.fail("service %r: letters, digits, '-' and '_' only" % p["service"])
        try:
            gate_loop.validate(p["success_threshold"], p["failure_threshold"], p["interval"], p["timeout"])
            build(p["checks"])
        except (gate_loop.GateConfigError, CheckConfigError) as exc:
            self.fail("health gate: %s" % exc)

    def fail(self, msg, **extra):
        result = dict(self.result)
        result.update(extra)
        self.module.fail_json(msg=msg, **result)

    # --- the engine -------------------------------------------------------------------------
    def connect(self):
        if DOCKER_IMPORT_ERROR:
            self.module.fail_json(msg=missing_required_lib("docker"), exception=DOCKER_IMPORT_ERROR)
        try:
            self.client = docker.DockerClient(base_url=self.p["docker_host"], timeout=60)
            self.client.ping()
        except DockerException as exc:
            self.fail("cannot reach the Docker engine at %s: %s" % (self.p["docker_host"], exc))

    def image_id(self, pull_allowed):
        """ID of the image, pulling it as O(pull) says; None in check mode when it would be pulled."""
        image, mode = self.p["image"], self.p["pull"]
        try:
            present = self.client.images.get(image)
        except ImageNotFound:
            present = None
        if present is not None and mode != "always":
            return present.id
        if mode == "never":
            self.fail("image %s is not present and pull is never" % image)
        if not pull_allowed:
            return present.id if present is not None else None
        repository, tag = image.rsplit(":", 1)
        try:
            pulled = self.client.images.pull(repository, tag=tag)
        except DockerException as exc:
            if present is not None:
                self.module.warn("pull of %s failed (%s); using the image already present" % (image, exc))
                return present.id
            self.fail("cannot pull %s: %s" % (image, exc))
        return pulled.id

    def current(self):
        containers = []
        for c in self.client.containers.list(all=True, filters={"label": "%s=%s" % (rollout.LABEL_SERVICE, self.p["service"])}):
            containers.append(dict(name=c.name, labels=c.labels, running=c.status == "running", image_id=c.image.id if c.image else None, obj=c))
        return rollout.Current(containers)

    # --- desired state ------------------------------------------------------------------------
    def desired_config(self):
        keys = ("replicas", "container_ports", "port_base", "host_ip", "command", "env", "volumes", "tmpfs", "memory", "cpus",
                "pids_limit", "user", "read_only", "cap_add", "restart_policy", "healthcheck", "labels", "log_driver",
                "log_options", "network")
        return dict((k, self.p[k]) for k in keys)

    def run_kwargs(self, name, generation, slot, ports, config_hash, history):
        p = self.p
        labels = dict(p["labels"])
        labels.update({rollout.LABEL_SERVICE: p["service"], rollout.LABEL_GENERATION: str(generation),
                       rollout.LABEL_SLOT: str(slot), rollout.LABEL_HASH: config_hash,
                       rollout.LABEL_HISTORY: ",".join(history)})
        env = dict((k, str(v)) for k, v in p["env"].items())
        env.update((k, str(v)) for k, v in p["secrets"].items())
        kwargs = dict(
            image=p["image"], name=name, detach=True, labels=labels, environment=env,
            ports=dict(("%d/tcp" % cport, (p["host_ip"], hport)) for cport, hport in ports.items()),
            volumes=list(p["volumes"]), tmpfs=dict((t, "") for t in p["tmpfs"]), read_only=p["read_only"],
            cap_drop=["ALL"], cap_add=list(p["cap_add"]) or None, security_opt=["no-new-privileges"],
            pids_limit=p["pids_limit"], restart_policy={"Name": p["restart_policy"]} if p["restart_policy"] != "no" else None,
            log_config=LogConfig(type=p["log_driver"], config=dict((k, str(v)) for k, v in p["log_options"].items())),
        )
        if p["command"]:
            kwargs["command"] = p["command"]
        if p["user"]:
            kwargs["user"] = p["user"]
        if p["memory"]:
            kwargs["mem_limit"] = p["memory"]
        if p["cpus"]:
            kwargs["nano_cpus"] = int(p["cpus"] * NANO)
        if p["network"]:
            kwargs["network"] = p["network"]
        if p["healthcheck"]:
            h = p["healthcheck"]
            kwargs["healthcheck"] = dict(test=["CMD"] + h["test"], interval=int(h["interval"] * NANO), timeout=int(h["timeout"] * NANO),
                                         retries=h["retries"], start_period=int(h["start_period"] * NANO))
        return kwargs

    def endpoints(self, containers):
        out = []
        for c in sorted(containers, key=lambda c: c["name"]):
            ports = {}
            for key, bindings in ((c["obj"].attrs.get("HostConfig") or {}).get("PortBindings") or {}).items():
                if bindings:
                    ports[key.split("/")[0]] = int(bindings[0]["HostPort"])
            out.append(dict(container=c["name"], host_ip=self.p["host_ip"], ports=ports))
        return out

    # --- the steps ----------------------------------------------------------------------------
    def start_generation(self, plan, config_hash, history):
        ports = rollout.host_ports(self.p["port_base"] or 0, self.p["replicas"], plan["slot"], self.p["container_ports"])
        started = []
        for index in range(self.p["replicas"]):
            name = "%s-g%d-%d" % (self.p["service"], plan["generation"], index)
            try:
                stale = self.client.containers.get(name)
                stale.remove(force=True)  # a leftover of an interrupted run, never a serving one
            except NotFound:
                pass
            try:
                container = self.client.containers.run(**self.run_kwargs(name, plan["generation"], plan["slot"], ports[index], config_hash, history))
            except DockerException as exc:
                self.remove(started)
                self.fail("cannot start %s: %s; the running containers were not touched" % (name, exc), rolled_back=bool(started))
            started.append(dict(name=name, obj=container, ports=ports[index]))
        return started

    def gate_checks(self, started):
        checks = []
        for c in started:
            first = next(iter(c["ports"].values()), None)
            values = dict(host=self.p["host_ip"], container=c["name"], port=first)
            values.update(("port_%d" % cport, hport) for cport, hport in c["ports"].items())
            for index, spec in enumerate(self.p["checks"]):
                spec = dict((k, v.format(**values) if isinstance(v, str) else v) for k, v in spec.items())
                spec["name"] = "%s %s" % (c["name"], spec.get("name") or "%s[%d]" % (spec["type"], index))
                checks.append(spec)
            if self.p["healthcheck"]:
                checks.append(dict(name="%s healthcheck" % c["name"], type="docker", container=c["name"],
                                   docker_host=self.p["docker_host"], timeout=10.0))
        return build(checks)

    def run_gate(self, started):
        checks = self.gate_checks(started)
        if not checks:
            return True, dict(rounds=0, elapsed=0, reason="no checks: neither checks nor healthcheck is set", checks=[])
        p = self.p
        return gate_loop.run(checks, p["success_threshold"], p["failure_threshold"], p["interval"], p["timeout"])

    def remove(self, containers):
        for c in containers:
            try:
                c["obj"].remove(force=True)
            except NotFound:
                pass

    def retire(self, names, current):
        for c in current.containers:
            if c["name"] in names:
                try:
                    if c["running"]:
                        c["obj"].stop(timeout=self.p["stop_timeout"])
                    c["obj"].remove()
                except NotFound:
                    pass
        self.result["retired"] = sorted(names)

    def prune(self, check_mode):
        """Remove images the service ran before its keep_images most recent ones."""
        newest = self.current().newest()
        history = rollout.read_history(newest[0]["labels"]) if newest else []
        in_use = set(c.image.id for c in self.client.containers.list(all=True) if c.image)
        present = set()
        for image_id in history[self.p["keep_images"]:]:
            try:
                self.client.images.get(image_id)
                present.add(image_id)
            except ImageNotFound:
                pass
        prune = [i for i in rollout.images_to_prune(history, in_use, self.p["keep_images"]) if i in present]
        if not check_mode:
            for image_id in prune:
                try:
                    self.client.images.remove(image_id)
                except (APIError, NotFound) as exc:
                    self.module.warn("could not remove image %s: %s" % (image_id, exc))
        self.result["pruned_images"] = prune

    # --- the whole run --------------------------------------------------------------------------
    def execute(self):
        self.validate()
        self.connect()
        check_mode = self.module.check_mode
        phase = self.p["phase"]
        image_id = self.image_id(pull_allowed=not check_mode and phase != "finalize")
        config = self.desired_config()
        desired = rollout.config_hash(image_id or "(to be pulled) " + self.p["image"], config, self.p["secrets"])
        current = self.current()
        plan = rollout.plan(current, desired, self.p["replicas"])
        self.result.update(image_id=image_id, config_hash=desired, generation=current.newest_generation)
        before = dict(image=sorted(set(c["image_id"] or "" for c in current.newest())), config_hash=sorted(
            set(c["labels"].get(rollout.LABEL_HASH, "") for c in current.newest())), containers=sorted(c["name"] for c in current.containers))

        if phase == "finalize" and plan["action"] == "rollout":
            self.fail("nothing to finalize: the service does not run %s with this configuration yet (run phase deploy first)" % self.p["image"])

        if plan["action"] == "rollout":
            after_names = ["%s-g%d-%d" % (self.p["service"], plan["generation"], i) for i in range(self.p["replicas"])]
            keep_old = phase == "deploy"
            self.result.update(changed=True, generation=plan["generation"])
            if check_mode:
                self.result["retired" if not keep_old else "retire_pending"] = plan["retire"]
                self.finish(before, after_names + (plan["retire"] if keep_old else []), desired)
            history = rollout.next_history(rollout.read_history(current.newest()[0]["labels"]) if current.newest() else [], image_id)
            started = self.start_generation(plan, desired, history)
            healthy, report = self.run_gate(started)
            self.result["gate"] = report
            if not healthy:
                self.remove(started)
                self.result.update(rolled_back=True, changed=True, generation=current.newest_generation)
                self.result["endpoints"] = self.endpoints(current.newest())
                self.fail("rolled back %s to the running version: the new containers failed the health gate. %s"
                          % (self.p["service"], gate_loop.failure_message(report)), rolled_back=True)
            current = self.current()
            self.result["endpoints"] = self.endpoints(current.newest())
            if keep_old:
                self.result["retire_pending"] = plan["retire"]
            else:
                self.retire(plan["retire"], current)
                self.prune(check_mode=False)
            self.finish(before, sorted(c["name"] for c in self.current().containers), desired)

        # Up to date: finish a deploy's retirement if asked (or in full), prune, report.
        self.result["endpoints"] = self.endpoints(current.newest())
        if plan["retire"]:
            if phase == "deploy":
                self.result["retire_pending"] = plan["retire"]
            else:
                self.result["changed"] = True
                if not check_mode:
                    self.retire(plan["retire"], current)
                else:
                    self.result["retired"] = plan["retire"]
        if phase != "deploy":
            self.prune(check_mode)
            if self.result["pruned_images"]:
                self.result["changed"] = True
        remaining = sorted(c["name"] for c in current.containers if c["name"] not in self.result["retired"])
        self.finish(before, remaining, desired)

    def finish(self, before, after_names, desired):
        if self.module._diff:
            self.result["diff"] = dict(before=before, after=dict(image=[self.result.get("image_id") or self.p["image"]],
                                                                 config_hash=[desired], containers=sorted(after_names)))
        self.module.exit_json(**self.result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    Rollout(module).execute()


if __name__ == "__main__":
    main()
