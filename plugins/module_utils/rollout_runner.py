# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One container_rollout run: the decisions of ``rollout`` carried out through the engine
adapter, with the host's state said in every failure.

The order of a run, and what a failure at each step leaves:

1. Check templates and options are checked (nothing contacted yet).
2. The engine is reached, the service's lock taken, the image resolved (pull, login).
   A failure here changes nothing.
3. The plan: leftovers of a run that died before its gate are removed (or, if they are what
   is wanted, gated now); a pending deploy stops the run.
4. The new generation is started under ``-pending`` names, on its networks with only the
   alias ``SERVICE-gN``, and gated; a failure removes it (``rolled_back``). Passing is recorded
   by joining the networks again with the stable aliases, then renaming to the final names.
5. Older generations are retired (after ``drain_delay``) or left for ``phase=finalize``; old
   images are pruned. A failure here leaves the new generation gated and serving.
"""

from __future__ import annotations

import signal
import time

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.keel.platform.plugins.module_utils import docker_engine
from ansible_collections.keel.platform.plugins.module_utils import gate as gate_loop
from ansible_collections.keel.platform.plugins.module_utils import rollout
from ansible_collections.keel.platform.plugins.module_utils import rollout_host
from ansible_collections.keel.platform.plugins.module_utils.docker_engine import EngineError
from ansible_collections.keel.platform.plugins.module_utils.health_checks import CHECK_OPTIONS, CheckConfigError, build, secret_values

NOTHING_CHANGED = "Nothing was changed."
# Seconds new containers must stay up before they count as gated when no check waited on them.
SETTLE_SECONDS = 3.0
# A check template's options: those of a health_gate check, except that ``port`` may also be
# the string "{port}" (it becomes a number per container).
TEMPLATE_OPTIONS = dict(CHECK_OPTIONS, port=dict(type="raw"))


class RolloutFailed(Exception):
    def __init__(self, msg, result):
        super(RolloutFailed, self).__init__(msg)
        self.msg = msg
        self.result = result


class Interrupted(BaseException):
    """A signal asked the run to stop (not an Exception: the gate must not swallow it)."""


class raise_on_signals(object):
    """Turn SIGTERM and SIGHUP into :class:`Interrupted` for the duration, so a run that is
    told to stop removes what it started before it goes."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        def handler(signum, _frame):
            raise Interrupted("signal %d" % signum)
        self.previous = []
        for sig in self.SIGNALS:
            try:
                self.previous.append((sig, signal.signal(sig, handler)))
            except ValueError:  # not the main thread: leave the signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self.previous:
            signal.signal(sig, previous)


def check_secret_values(checks):
    """Every secret the check templates carry, for the module to hide: the options marked
    ``no_log`` (passwords), header values and URL credentials (``user:password@``), as
    :func:`health_checks.secret_values` finds them."""
    secret_keys = [k for k, spec in TEMPLATE_OPTIONS.items() if spec.get("no_log")]
    values = set()
    for spec in checks or []:
        if isinstance(spec, dict):
            values.update(str(spec[k]) for k in secret_keys if spec.get(k) not in (None, ""))
            try:
                headers = spec.get("headers") if isinstance(spec.get("headers"), dict) else None
                url = spec.get("url") if isinstance(spec.get("url"), str) else None
                values.update(secret_values(dict(spec, headers=headers, url=url)))
            except (TypeError, ValueError, AttributeError):  # a malformed template: validate() refuses it
                pass
    return values


def check_templates(checks):
    """The ``checks`` option validated as templates (types, choices, defaults), before
    placeholders are filled in. Raises ``TemplateError`` naming the check."""
    validator = ArgumentSpecValidator(TEMPLATE_OPTIONS)
    out = []
    for index, spec in enumerate(checks or []):
        if not isinstance(spec, dict):
            raise rollout.TemplateError("checks[%d] must be a dictionary" % index)
        result = validator.validate(spec)
        if result.error_messages:
            raise rollout.TemplateError("checks[%d]: %s" % (index, "; ".join(result.error_messages)))
        out.append(result.validated_parameters)
    return out


def _tmpfs(entries):
    out = {}
    for entry in entries:
        path, _sep, options = entry.partition(":")
        out[path] = options
    return out


class Runner(object):
    def __init__(self, params, check_mode=False, diff=False, warn=None, sleep=None):
        self.p = params
        self.check_mode = check_mode
        self.diff = diff
        self.warn = warn or (lambda msg: None)
        self.sleep = sleep or time.sleep
        self.engine = None
        self.templates = []
        self.discarded_ports = set()
        self.removed_ids = set()  # check mode: containers a real run would have removed (discarded, retired)
        self.result = dict(changed=False, rolled_back=False, generation=0, endpoints=[], retired=[], retire_pending=[],
                           pruned_images=[], discarded=[])

    # --- failures ---------------------------------------------------------------------------------
    def host_state(self):
        """One sentence on what the host holds now (also put in ``host_state``)."""
        if self.engine is None:
            return "The engine was not reached."
        try:
            found = self.engine.service_containers(self.p["service"])
        except EngineError as exc:
            return "The host's state could not be read (%s)." % exc
        generations = rollout.describe(found, self.p["service"])
        self.result["host_state"] = generations
        if not generations:
            return "The host holds no container of %s." % self.p["service"]
        return "The host holds %s." % "; ".join(
            "generation %d, %s (%s)" % (g["generation"], "gated" if g["gated"] else "NOT gated", ", ".join(g["containers"])) for g in generations)

    def fail(self, msg, rolled_back=False, state=True):
        self.result["rolled_back"] = rolled_back
        if state:
            msg = "%s %s" % (msg, self.host_state())
        raise RolloutFailed(msg, dict(self.result))

    # --- checks before touching anything ----------------------------------------------------------
    def validate(self):
        p = self.p
        if p["replicas"] < 1:
            self.fail("replicas must be at least 1, got %d." % p["replicas"], state=False)
        if p["keep_images"] < 1:
            self.fail("keep_images must be at least 1 (the image in use), got %d." % p["keep_images"], state=False)
        if p["container_ports"] and p["port_base"] is None:
            self.fail("port_base is required with container_ports.", state=False)
        if p["port_base"] is not None:
            last = p["port_base"] + 2 * p["replicas"] * max(1, len(p["container_ports"])) - 1
            if p["port_base"] < 1 or last > 65535:
                self.fail("port_base %d with %d replica(s) needs host ports up to %d; they must lie in 1-65535."
                          % (p["port_base"], p["replicas"], last), state=False)
        if p["phase"] in ("abort", "remove"):
            if not p["service"].replace("-", "").replace("_", "").isalnum():
                self.fail("service %r: letters, digits, '-' and '_' only." % p["service"], state=False)
            return  # nothing but the service is used
        if not p["image"]:
            self.fail("image is required (unless phase is abort or remove).", state=False)
        _repository, tag, digest = rollout.parse_image(p["image"])
        if not tag and not digest:
            self.fail("image %r has no tag or digest; name the version to roll out (for example %s:1.2.3)." % (p["image"], p["image"]), state=False)
        if digest and not digest.startswith("sha256:"):
            self.fail("image %r: a digest is written @sha256:<64 hex digits>." % p["image"], state=False)
        if not p["service"].replace("-", "").replace("_", "").isalnum():
            self.fail("service %r: letters, digits, '-' and '_' only." % p["service"], state=False)
        for name in list(p["secrets"]) + list(p["secret_env"]):
            if not rollout_host.SECRET_NAME.match(name):
                self.fail("secret name %r: letters, digits, '_', '.' and '-' only (it is a file name)." % name, state=False)
        for option in ("secrets", "secret_env"):
            for name, value in list(p[option].items()):
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    self.fail("%s.%s must be a string (or a number), got a %s. %s" % (option, name, type(value).__name__, NOTHING_CHANGED),
                              state=False)
                if not isinstance(value, str):  # a number in YAML (a PIN): its text, as the environment would have it
                    p[option] = dict(p[option], **{name: str(value)})
        for network in p["networks"]:
            if not network.get("name"):
                self.fail("networks: every network needs a name.", state=False)
        if not p["checks"] and not p["healthcheck"]:
            self.warn("container_rollout %s: neither checks nor healthcheck is set, so the only gate is that the new containers "
                      "still run %g s after their start; set checks to gate on the service answering." % (p["service"], SETTLE_SECONDS))
        if not p["docker_host"].startswith("unix://"):
            if p["secrets"]:
                self.fail("secrets are files written on this host and bind-mounted by the engine, so docker_host must be this "
                          "host's unix:// socket, not %s. %s" % (p["docker_host"], NOTHING_CHANGED), state=False)
            self.warn("docker_host %s is not a local unix:// socket: the lock and the check that the new host ports are free "
                      "only hold if this host is the Docker host." % p["docker_host"])
        if p["drain_delay"] < 0 or p["lock_timeout"] < 0:
            self.fail("drain_delay and lock_timeout must not be negative.", state=False)
        try:
            gate_loop.validate(p["success_threshold"], p["failure_threshold"], p["interval"], p["timeout"])
            self.templates = check_templates(p["checks"])
            # Every template made concrete once, with a stand-in port, and built: a malformed
            # one fails here, before any container exists.
            sample_port = (p["port_base"] or 1) if p["container_ports"] else None
            build([rollout.fill_check(i, t, rollout.gate_host(p["host_ip"]), sample_port) for i, t in enumerate(self.templates)])
        except (gate_loop.GateConfigError, CheckConfigError, rollout.TemplateError) as exc:
            self.fail("health gate: %s. %s" % (exc, NOTHING_CHANGED), state=False)

    # --- desired state ----------------------------------------------------------------------------
    def networks(self):
        return [dict(name=n["name"], aliases=list(n.get("aliases") if n.get("aliases") is not None else [self.p["service"]]))
                for n in self.p["networks"]]

    def desired_config(self):
        keys = ("replicas", "container_ports", "port_base", "host_ip", "command", "entrypoint", "env", "volumes", "tmpfs", "ulimits",
                "memory", "cpus", "pids_limit", "user", "read_only", "cap_add", "restart_policy", "healthcheck", "labels",
                "log_driver", "log_options")
        config = dict((k, self.p[k]) for k in keys)
        config["networks"] = self.networks()
        if self.p["secrets"]:
            config["secrets_mount"] = self.p["secrets_mount"]
        return config

    def secret_digest_input(self):
        out = dict(("file:%s" % k, v) for k, v in self.p["secrets"].items())
        out.update(("env:%s" % k, v) for k, v in self.p["secret_env"].items())
        return out

    def auth(self):
        auth = self.p["registry_auth"]
        if not auth:
            return None
        repository = rollout.parse_image(self.p["image"])[0]
        return dict(username=auth["username"], password=auth["password"],
                    serveraddress=auth.get("registry") or rollout.registry_of(repository) or "https://index.docker.io/v1/")

    # --- the image ----------------------------------------------------------------------------------
    def resolve_image(self):
        """The local image to run (``{id, repo_digests, user}``), or None in check mode when a
        real run would pull a different one."""
        ref, mode = self.p["image"], self.p["pull"]
        try:
            local = self.engine.image(ref)
        except EngineError as exc:
            self.fail("cannot look up image %s: %s. %s" % (ref, exc.detail, NOTHING_CHANGED), state=False)
        if mode == "never":
            if local is None:
                self.fail("image %s is not present and pull is never. %s" % (ref, NOTHING_CHANGED), state=False)
            return local
        if mode == "missing" and local is not None:
            return local
        auth = self.auth()
        if self.check_mode:
            if mode == "always" and local is not None:
                try:
                    digest = self.engine.remote_digest(ref, auth)
                except EngineError as exc:
                    self.fail("check mode: cannot ask the registry which image %s is now (%s); a real run with pull: always "
                              "would fail to pull it. %s" % (ref, exc.detail, NOTHING_CHANGED), state=False)
                repository = rollout.parse_image(ref)[0]
                if digest and "%s@%s" % (repository, digest) in local["repo_digests"]:
                    return local
            return None
        if auth:
            try:
                self.engine.login(auth["serveraddress"], auth["username"], auth["password"])
            except EngineError as exc:
                self.fail("registry login failed: %s. Nothing was pulled or started. %s" % (exc, NOTHING_CHANGED), state=False)
        try:
            self.engine.pull(ref, auth)
            pulled = self.engine.image(ref)
        except EngineError as exc:
            self.fail("cannot pull %s: %s. %s" % (ref, exc.detail, NOTHING_CHANGED), state=False)
        if pulled is None:
            self.fail("image %s was pulled but the engine does not list it. %s" % (ref, NOTHING_CHANGED), state=False)
        return pulled

    # --- containers ---------------------------------------------------------------------------------
    def container_spec(self, member, generation, slot, config_hash, history, image_id):
        p = self.p
        labels = dict((k, str(v)) for k, v in p["labels"].items())
        labels.update({rollout.LABEL_SERVICE: p["service"], rollout.LABEL_GENERATION: str(generation),
                       rollout.LABEL_INDEX: str(member["index"]), rollout.LABEL_SLOT: str(slot), rollout.LABEL_HASH: config_hash,
                       rollout.LABEL_HISTORY: ",".join(history), rollout.LABEL_PORTS: rollout.format_ports(member["ports"]),
                       rollout.LABEL_IMAGE: p["image"], rollout.LABEL_KEEP: str(p["keep_images"])})
        env = dict((k, str(v)) for k, v in p["env"].items())
        env.update((k, str(v)) for k, v in p["secret_env"].items())
        binds = list(p["volumes"])
        if p["secrets"]:
            binds.append("%s:%s:ro" % (self.secret_files.directory(generation), p["secrets_mount"]))
        return dict(
            name=member["name"], image=image_id, labels=labels, env=env, binds=binds,
            ports=dict((cport, (p["host_ip"], hport)) for cport, hport in member["ports"].items()),
            tmpfs=_tmpfs(p["tmpfs"]), read_only=p["read_only"], cap_add=p["cap_add"], pids_limit=p["pids_limit"],
            restart_policy=p["restart_policy"], log_driver=p["log_driver"], log_options=p["log_options"], ulimits=p["ulimits"],
            command=p["command"], entrypoint=p["entrypoint"], user=p["user"], memory=p["memory"], cpus=p["cpus"],
            healthcheck=p["healthcheck"], networks=self.pending_networks(generation),
        )

    def generation_alias(self, generation):
        return "%s-g%d" % (self.p["service"], generation)

    def pending_networks(self, generation):
        """Networks as an ungated container joins them: with only its generation's alias, so
        nothing reaches it by the service's stable name before it passed the gate."""
        return [dict(name=n["name"], aliases=[self.generation_alias(generation)]) for n in self.networks()]

    def promote(self, container_id, name, final, generation):
        """The gate record of one container: the stable aliases join, then the final name."""
        for network in self.networks():
            aliases = list(network["aliases"])
            if self.generation_alias(generation) not in aliases:
                aliases.append(self.generation_alias(generation))
            self.engine.set_aliases(container_id, name, network["name"], aliases)
        self.engine.rename(container_id, name, final)

    def gate_checks(self, members):
        """The concrete checks for these containers (built, so errors surface before a start)."""
        specs = []
        host = rollout.gate_host(self.p["host_ip"])
        for m in members:
            first = m["ports"].get(self.p["container_ports"][0]) if self.p["container_ports"] else None
            for index, template in enumerate(self.templates):
                spec = rollout.fill_check(index, template, host, first)
                spec["name"] = "%s %s" % (m["final"], template.get("name") or "%s[%d]" % (template["type"], index))
                specs.append(spec)
            if self.p["healthcheck"]:
                specs.append(dict(name="%s healthcheck" % m["final"], type="docker", container=m["name"],
                                  docker_host=self.p["docker_host"], timeout=10.0))
        return build(specs)

    def run_gate(self, checks):
        if not checks:
            return True, dict(rounds=0, elapsed=0, reason="no checks: neither checks nor healthcheck is set", checks=[])
        p = self.p
        return gate_loop.run(checks, p["success_threshold"], p["failure_threshold"], p["interval"], p["timeout"])

    def abandon(self, generation, started):
        """Remove every container of ``generation`` (and its secret files). True when none is left."""
        try:
            members = [c for c in self.engine.service_containers(self.p["service"]) if rollout.generation_of(c) == generation]
        except EngineError:
            members = started
        left = []
        for c in members:
            try:
                self.engine.remove(c["id"], c["name"], force=True)
            except EngineError as exc:
                left.append("%s (%s)" % (c["name"], exc.detail))
        if left:
            self.result["left_behind"] = left
        else:
            self.remove_secrets(generation)
        return not left

    def record(self, generation, members):
        """Give the gated containers the service's stable aliases and their final names: the gate record."""
        done = 0
        for m in members:
            if m["name"] == m["final"]:
                done += 1
                continue
            try:
                self.promote(m["id"], m["name"], m["final"], generation)
            except EngineError as exc:
                if done == 0:
                    removed = self.abandon(generation, members)
                    self.fail("generation %d passed its gate, but recording that failed (%s); it was %s."
                              % (generation, exc, "removed" if removed else "NOT removed"), rolled_back=removed)
                self.fail("generation %d passed its gate and is recorded on %d container(s), but %s; the next run finishes the record."
                          % (generation, done, exc))
            m["name"] = m["final"]
            done += 1

    def not_running(self, members, settle):
        """The containers of ``members`` that are not up: not running, restarting, or restarted
        since their start (a crash the restart policy hid). ``settle``: wait SETTLE_SECONDS first
        (when no check waited on them)."""
        if settle:
            self.sleep(SETTLE_SECONDS)
        down = []
        for m in members:
            state = self.engine.state(m["id"], m["name"])
            if not state["running"] or state["restarting"] or state["restarts"]:
                restarts = ", %d restart(s)" % state["restarts"] if state["restarts"] else ""
                down.append("%s (%s%s, exit code %s)" % (m["final"], state["status"], restarts, state["exit_code"]))
        return down

    def gate_and_record(self, generation, members):
        """Gate a started generation; on any failure (or interruption) remove it and fail.
        Passing also needs every container to be running after the gate (see not_running)."""
        down = []
        try:
            checks = self.gate_checks(members)
            healthy, report = self.run_gate(checks)
            if healthy:
                down = self.not_running(members, settle=not checks)
        except BaseException as exc:  # an API error, a signal, a bug: never leave it ungated
            removed = self.abandon(generation, members)
            self.result["changed"] = True
            self.fail("gating generation %d stopped (%s: %s); its containers were %s."
                      % (generation, type(exc).__name__, exc, "removed" if removed else "NOT all removed: %s" % self.result.get("left_behind")),
                      rolled_back=removed)
        self.result["gate"] = report
        if down:
            removed = self.abandon(generation, members)
            self.result.update(changed=True, endpoints=self.endpoints(self.serving))
            self.result["gate"] = dict(report, reason="containers not running after the gate: %s" % ", ".join(down))
            self.fail("rolled back %s to the running version: new containers are not running after their start (crashed or "
                      "restarting): %s." % (self.p["service"], ", ".join(down)), rolled_back=removed)
        if not healthy:
            removed = self.abandon(generation, members)
            self.result.update(changed=True, endpoints=self.endpoints(self.serving))
            self.fail("rolled back %s to the running version: the new containers failed the health gate. %s"
                      % (self.p["service"], gate_loop.failure_message(report)), rolled_back=removed)
        self.record(generation, members)

    def start_generation(self, plan, image, desired, history):
        p = self.p
        generation, slot = plan["generation"], plan["slot"]
        ports = rollout.host_ports(p["port_base"] or 0, p["replicas"], slot, p["container_ports"])
        members = [dict(index=i, id=None, name=rollout.pending_name(p["service"], generation, i),
                        final=rollout.container_name(p["service"], generation, i), ports=ports[i]) for i in range(p["replicas"])]
        try:
            self.gate_checks(members)
        except (CheckConfigError, rollout.TemplateError) as exc:
            self.fail("health gate: %s. Nothing was started." % exc)
        busy = rollout_host.ports_in_use(p["host_ip"], [h for m in members for h in m["ports"].values()])
        if self.check_mode:  # a real run removes the leftovers it discards first, freeing their ports
            busy = [port for port in busy if port not in self.discarded_ports]
        if busy:
            self.fail("host port(s) %s on %s are in use by something other than %s's containers (slot %d, generation %d); "
                      "nothing was started." % (", ".join(map(str, busy)), p["host_ip"], p["service"], slot, generation))
        owner = None
        if p["secrets"] and (p["user"] or image is not None):  # in check mode the image may not be pulled yet
            owner = rollout_host.numeric_user(p["user"] or image["user"])
            if owner is None:
                self.fail("secrets are files owned by the container's user, and user %r is not numeric: set user: UID:GID. "
                          "Nothing was started." % (p["user"] or image["user"]))
        if self.check_mode:
            return members
        self.result["changed"] = True
        started = []
        try:
            if p["secrets"]:
                self.secret_files.write(generation, p["secrets"], owner[0], owner[1])
            for m in members:
                m["id"] = self.engine.create(self.container_spec(m, generation, slot, desired, history, image["id"]))
                started.append(m)
                self.engine.start(m["id"], m["name"])
        except BaseException as exc:  # EngineError, OSError (secret files), a signal: undo the start
            removed = self.abandon(generation, started)
            self.fail("cannot start generation %d: %s. The new containers were %s; the running ones were not touched."
                      % (generation, exc if isinstance(exc, EngineError) else "%s: %s" % (type(exc).__name__, exc),
                         "removed" if removed else "NOT all removed: %s" % self.result.get("left_behind")),
                      rolled_back=bool(started) and removed)
        self.gate_and_record(generation, members)
        return members

    def remove_secrets(self, generation):
        try:
            self.secret_files.remove(generation)
        except OSError as exc:
            self.warn("could not remove the secret files of generation %d: %s" % (generation, exc))

    def endpoints(self, members):
        return [dict(container=m["final"], host_ip=self.p["host_ip"], ports=dict((str(c), h) for c, h in sorted(m["ports"].items())))
                for m in sorted(members, key=lambda m: m["final"])]

    def members_of(self, containers):
        out = []
        for c in containers:
            index = c["labels"].get(rollout.LABEL_INDEX)
            final = rollout.container_name(self.p["service"], rollout.generation_of(c), int(index)) if (index or "").isdigit() else c["name"]
            out.append(dict(id=c["id"], name=c["name"], final=final, ports=c["ports"], running=c["running"]))
        return out

    # --- retiring and pruning --------------------------------------------------------------------
    def retire(self, containers, serving_generation, failure=None):
        if self.check_mode:
            self.result["retired"] = sorted(c["name"] for c in containers)
            self.removed_ids.update(c["id"] for c in containers)
            return
        if self.p["drain_delay"] and any(c["running"] for c in containers):
            self.sleep(self.p["drain_delay"])
        done = []
        for c in containers:
            # A container in its restart back-off (a crashing service: the restart policy) or
            # paused counts as running to the engine: stopped first, and removed with force,
            # as the engine refuses it otherwise.
            stuck = c.get("state") in ("restarting", "paused")
            try:
                if c["running"] or stuck:
                    self.engine.stop(c["id"], c["name"], self.p["stop_timeout"])
                self.engine.remove(c["id"], c["name"], force=stuck)
            except EngineError as exc:
                self.result["retired"] = sorted(done)
                what = failure or "generation %d is gated and serving, but retiring the old containers failed" % serving_generation
                self.fail("%s: %s. Retired: %s." % (what, exc, ", ".join(done) or "none"))
            done.append(c["name"])
        self.result["retired"] = sorted(done)
        for generation in sorted(set(rollout.generation_of(c) for c in containers)):
            self.remove_secrets(generation)

    def prune(self, history, keep, failure, protect=()):
        """Remove the images of ``history`` past its ``keep`` newest that no container uses (a
        removed one aside), that no other service keeps in its history, and that ``protect``
        (references or IDs) does not name."""
        candidates = history[keep:]
        if not candidates:
            return
        try:
            # In check mode the containers a real run would have removed by now do not hold their images.
            in_use = self.engine.images_in_use(ignore=self.removed_ids if self.check_mode else ())
            # Another service may have run the same image (under its own name): it stays while that
            # service keeps it for a rollback (its keep_images newest), and goes with whichever
            # service's prune comes after it dropped out of both.
            in_use |= self.engine.images_kept_by_other_services(self.p["service"])
            for ref in protect:
                image = self.engine.image(ref)
                if image is not None:
                    in_use.add(image["id"])
            present = set(i for i in candidates if self.engine.image(i) is not None)
            prune = [i for i in rollout.images_to_prune(history, in_use, keep) if i in present]
            for image_id in prune:
                if not self.check_mode:
                    self.engine.remove_image(image_id)
                self.result["pruned_images"].append(image_id)
        except EngineError as exc:
            untagged = self.engine.untagged
            if untagged:  # names went from an image that stays: a change, said as one
                self.result["changed"] = True
            self.fail("%s: %s. Removed: %s%s." % (failure, exc, ", ".join(self.result["pruned_images"]) or "none",
                                                  "; names removed: %s" % ", ".join(untagged) if untagged else ""))
        if self.result["pruned_images"]:
            self.result["changed"] = True

    # --- the whole run -----------------------------------------------------------------------------
    def execute(self):
        """The run; returns the result or raises :class:`RolloutFailed`."""
        p = self.p
        self.validate()
        self.secret_files = rollout_host.SecretFiles(p["secrets_dir"], p["service"])
        try:
            self.engine = docker_engine.connect(p["docker_host"])
            self.engine.ping()
        except EngineError as exc:
            self.engine = None
            self.fail("cannot reach the Docker engine at %s: %s. %s" % (p["docker_host"], exc.detail, NOTHING_CHANGED), state=False)
        lock = rollout_host.ServiceLock(p["lock_dir"], p["service"], p["lock_timeout"])
        try:
            lock.acquire()
        except (rollout_host.LockTimeout, rollout_host.UnsafeLockDir, OSError) as exc:
            self.fail("%s. %s" % (exc, NOTHING_CHANGED), state=False)
        try:
            if p["phase"] == "abort":
                return self.abort()
            return self.remove() if p["phase"] == "remove" else self.locked()
        finally:
            lock.release()

    def abort(self):
        """``phase=abort``: remove what a deploy added while an older generation still runs,
        so the host is back where it was before that deploy. Generations that never passed
        their gate go (as in every run); the newest gated one goes when an older gated one
        remains. A single gated generation is never touched."""
        service = self.p["service"]
        try:
            found = self.engine.service_containers(service)
        except EngineError as exc:
            self.fail("%s. %s" % (exc, NOTHING_CHANGED), state=False)
        gens = rollout.describe(found, service)
        gated = [g["generation"] for g in gens if g["gated"]]
        aborted = gated[-1] if len(gated) > 1 else None
        keep = [g for g in gated if g != aborted]
        serving_gen = keep[-1] if keep else 0
        names = dict((c["name"], c) for c in found)
        plan = dict(discard=sorted(c["name"] for c in found if rollout.generation_of(c) not in gated), retire=[],
                    record=[(c, rollout.container_name(service, rollout.generation_of(c), int(c["labels"][rollout.LABEL_INDEX])))
                            for c in found if rollout.generation_of(c) in keep and not rollout.is_recorded(c, service)])
        self.result["generation"] = serving_gen
        self.finish_record(plan, names)
        self.discard(plan, names)
        if aborted is not None:
            self.result["changed"] = True
            self.retire([c for c in names.values() if rollout.generation_of(c) == aborted], serving_gen,
                        "generation %d was aborted, but removing its containers failed" % aborted)
        serving = [c for c in names.values() if rollout.generation_of(c) == serving_gen]
        self.result["endpoints"] = self.endpoints(self.members_of(serving))
        if not self.check_mode:
            self.clean_secret_dirs()
        if self.diff:
            after = sorted(rollout.container_name(service, rollout.generation_of(c), int(c["labels"][rollout.LABEL_INDEX]))
                           if (c["labels"].get(rollout.LABEL_INDEX) or "").isdigit() else c["name"]
                           for c in names.values() if rollout.generation_of(c) != aborted)
            self.result["diff"] = dict(before=dict(containers=sorted(c["name"] for c in found)), after=dict(containers=after))
        return self.result

    def remove(self):
        """``phase=remove``: the service leaves this host. Every container of it, whatever its
        generation and gated or not, stops gracefully after the drain delay and is removed; so
        are its secret files and the images of its deployment history that no other container
        uses. The load balancers must no longer send it anything. Removing again changes nothing;
        a removal cut short is finished by the next one."""
        service = self.p["service"]
        try:
            found = self.engine.service_containers(service)
        except EngineError as exc:
            self.fail("%s. %s" % (exc, NOTHING_CHANGED), state=False)
        # Every image the service ran or keeps for a rollback: each container's own and its
        # history, and what a removal cut short wrote down before its containers went.
        history = []
        for c in sorted(found, key=rollout.generation_of, reverse=True):
            for image_id in [c["image_id"]] + rollout.read_history(c["labels"]):
                if image_id and image_id not in history:
                    history.append(image_id)
        history += [i for i in self.secret_files.removal_images() if i not in history]
        if found:
            self.result["changed"] = True
            if not self.check_mode and history:
                try:
                    self.secret_files.save_removal_images(history)
                except OSError as exc:
                    self.fail("could not write down the images of %s before removing it: %s. %s" % (service, exc, NOTHING_CHANGED))
            self.retire(found, 0, "removing the containers of %s failed" % service)
        # Not the images the services that stay run or are about to run (a new one may use the same).
        self.prune(history, 0, "the containers of %s are removed, but removing its images failed" % service, self.p["protect_images"])
        if not self.check_mode:
            self.clean_secret_dirs()
            try:
                self.secret_files.forget_removal()
            except OSError as exc:
                self.warn("could not remove the record of the removal of %s: %s" % (service, exc))
        if self.diff:
            self.result["diff"] = dict(before=dict(containers=sorted(c["name"] for c in found)), after=dict(containers=[]))
        return self.result

    def locked(self):
        p, service = self.p, self.p["service"]
        image = self.resolve_image()
        image_id = image["id"] if image else None
        desired = rollout.config_hash(image_id or "(to be pulled) " + p["image"], self.desired_config(), self.secret_digest_input())
        try:
            found = self.engine.service_containers(service)
        except EngineError as exc:
            self.fail("%s. %s" % (exc, NOTHING_CHANGED), state=False)
        try:
            plan = rollout.plan(found, service, desired, p["replicas"], p["phase"])
        except rollout.PlanError as exc:
            self.fail("%s. %s" % (exc, NOTHING_CHANGED))

        def generation(number):
            return [c for c in found if rollout.generation_of(c) == number]

        gated = [g["generation"] for g in rollout.describe(found, service) if g["gated"]]
        serving_gen = gated[-1] if gated else 0
        self.serving = self.members_of(generation(serving_gen))
        history = rollout.read_history(generation(serving_gen)[0]["labels"]) if serving_gen else []
        self.result.update(image_id=image_id, config_hash=desired, generation=serving_gen)
        before = dict(image=sorted(set(c["image_id"] or "" for c in generation(serving_gen))),
                      config_hash=sorted(set(c["labels"].get(rollout.LABEL_HASH, "") for c in generation(serving_gen))),
                      containers=sorted(c["name"] for c in found))
        names = dict((c["name"], c) for c in found)  # by the names they have once this run is done
        self.finish_record(plan, names)
        self.discard(plan, names)

        serving = self.serving
        if plan["action"] == "rollout":
            history = rollout.next_history(history, image_id)
            self.result.update(changed=True, generation=plan["generation"])
            serving = self.start_generation(plan, image, desired, history)
        elif plan["action"] == "gate":
            self.result.update(changed=True, generation=plan["generation"])
            serving = self.members_of(generation(plan["generation"]))
            history = rollout.read_history(generation(plan["generation"])[0]["labels"])
            if not self.check_mode:
                self.gate_and_record(plan["generation"], serving)
        self.result["endpoints"] = self.endpoints(serving)

        if plan["retire"]:
            if p["phase"] == "deploy":
                self.result["retire_pending"] = plan["retire"]
            else:
                self.result["changed"] = True
                self.retire([names[n] for n in plan["retire"]], self.result["generation"])
        if p["phase"] != "deploy" and image_id:
            self.prune(history, p["keep_images"], "generation %d is gated and serving, but pruning old images failed" % self.result["generation"])
        if not self.check_mode:
            self.clean_secret_dirs()
        if self.diff:
            after = set(n for n in names if not n.endswith(rollout.PENDING_SUFFIX)) - set(plan["discard"]) - set(self.result["retired"])
            after |= set(m["final"] for m in serving)
            self.result["diff"] = dict(before=before, after=dict(image=[image_id or p["image"]], config_hash=[desired], containers=sorted(after)))
        return self.result

    def finish_record(self, plan, names):
        """Finish the renames of a gated generation whose record a run cut short."""
        if not plan["record"]:
            return
        self.result["changed"] = True
        if self.check_mode:
            return
        renamed = {}
        for c, final in plan["record"]:
            try:
                self.promote(c["id"], c["name"], final, rollout.generation_of(c))
            except EngineError as exc:
                self.fail("finishing the gate record of %s failed: %s." % (c["name"], exc))
            renamed[c["name"]] = final
            names[final] = dict(names.pop(c["name"]), name=final)
        plan["retire"] = sorted(renamed.get(n, n) for n in plan["retire"])

    def discard(self, plan, names):
        """Remove the leftovers of a run that died before its gate: nothing depends on them."""
        if not plan["discard"]:
            return
        self.result.update(changed=True, discarded=plan["discard"])
        if self.check_mode:
            self.discarded_ports = set(port for n in plan["discard"] for port in names[n]["ports"].values())
            self.removed_ids.update(names[n]["id"] for n in plan["discard"])
            return
        leftovers = [names.pop(n) for n in plan["discard"]]
        for number in sorted(set(rollout.generation_of(c) for c in leftovers)):
            if not self.abandon(number, [c for c in leftovers if rollout.generation_of(c) == number]):
                self.fail("removing generation %d, which never passed its gate, failed: %s."
                          % (number, "; ".join(self.result.get("left_behind"))))

    def clean_secret_dirs(self):
        """Secret files of generations no container of the service uses any more."""
        try:
            present = set(rollout.generation_of(c) for c in self.engine.service_containers(self.p["service"]))
            stale = [g for g in self.secret_files.generations() if g not in present]
        except (EngineError, OSError) as exc:
            self.warn("could not check for stale secret files: %s" % exc)
            return
        for generation in stale:
            self.remove_secrets(generation)
