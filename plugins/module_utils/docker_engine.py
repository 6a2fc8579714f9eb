# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker engine as container_rollout uses it: a few operations on the SDK's low-level
``APIClient``, each of which either returns plain data or raises :class:`EngineError`.

Nothing else in the rollout touches the SDK, so a fake client with the same methods (see the
unit tests) exercises every error path: whatever the SDK, ``requests`` or the socket raise
becomes an ``EngineError`` that names the operation and its target.
"""

from __future__ import annotations

import traceback

DOCKER_IMPORT_ERROR = None
try:
    import docker
except ImportError:
    DOCKER_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.keel.platform.plugins.module_utils import rollout

NANO = 1000000000
API_TIMEOUT = 60


def names_of(image):
    """An image's names (tags, then digest references), without the ``<none>`` placeholders."""
    return [n for n in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []) if not n.startswith("<none>")]


def single_reference(image):
    """Whether the engine removes this image (inspect data) by ID without force: at most one
    tag, and every name in one repository (moby's rule for an image delete by ID)."""
    names = names_of(image)
    tags = [n for n in names if "@" not in n]
    return len(tags) <= 1 and len(set(rollout.parse_image(n)[0] for n in names)) <= 1


class EngineError(Exception):
    """A Docker API call failed. ``status`` is the HTTP status when the engine answered."""

    def __init__(self, operation, cause):
        self.operation = operation
        self.status = getattr(getattr(cause, "response", None), "status_code", None)
        detail = getattr(cause, "explanation", None) or str(cause) or type(cause).__name__
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        self.detail = str(detail).strip()
        super(EngineError, self).__init__("%s: %s" % (operation, self.detail))

    @property
    def not_found(self):
        return self.status == 404


def connect(base_url, timeout=API_TIMEOUT):
    """An :class:`Engine` on the SDK's client (the SDK must be importable)."""
    try:
        return Engine(docker.APIClient(base_url=base_url, timeout=timeout, version="auto"))
    except Exception as exc:  # the SDK raises DockerException, requests' or socket errors here
        raise EngineError("connect to the Docker engine at %s" % base_url, exc)


class Engine(object):
    def __init__(self, api):
        self.api = api
        self.untagged = []  # names remove_image took off images, in order

    def _call(self, operation, method, *args, **kwargs):
        try:
            return getattr(self.api, method)(*args, **kwargs)
        except Exception as exc:  # any failure of one API call: the caller decides what it means
            raise EngineError(operation, exc)

    def ping(self):
        self._call("ping the engine", "ping")

    # --- images ----------------------------------------------------------------------------------
    def _inspect_image(self, ref):
        """The engine's inspect data of a local image, or None when it is not present."""
        try:
            return self._call("inspect image %s" % ref, "inspect_image", ref)
        except EngineError as exc:
            if exc.not_found:
                return None
            raise

    def image(self, ref):
        """``{id, repo_digests, user}`` of a local image, or None when it is not present."""
        data = self._inspect_image(ref)
        if data is None:
            return None
        return dict(id=data["Id"], repo_digests=list(data.get("RepoDigests") or []), user=(data.get("Config") or {}).get("User") or "")

    def login(self, registry, username, password):
        self._call("log in to registry %s as %s" % (registry or "docker.io", username), "login",
                   username, password=password, registry=registry, reauth=True)

    def pull(self, ref, auth=None):
        """Pull ``ref`` (tag or digest); errors the engine reports inside the stream raise."""
        repository, tag, digest = rollout.parse_image(ref)
        operation = "pull %s" % ref
        try:
            for event in self.api.pull(repository, tag=digest or tag, stream=True, decode=True, auth_config=auth):
                if isinstance(event, dict) and event.get("error"):
                    raise EngineError(operation, Exception(event.get("error")))
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(operation, exc)

    def remote_digest(self, ref, auth=None):
        """The manifest digest the registry has for ``ref`` now (nothing is pulled)."""
        data = self._call("ask the registry for %s" % ref, "inspect_distribution", ref, auth_config=auth)
        return (data.get("Descriptor") or {}).get("digest")

    def remove_image(self, image_id):
        """Remove an image; False when it was already gone.

        The engine removes an image by ID, names and all, only when it has at most one tag and
        all its names are in one repository; otherwise it refuses unless forced (409), and force
        would also take an image a stopped container was just created from. So such an image
        (``registry/shop:2`` also tagged ``registry/shop:stable``) loses its names one by one,
        each checked to still name this image just before (a pull may have moved it), and the
        last one removes it."""
        data = self._inspect_image(image_id)
        if data is None:
            return False
        if not single_reference(data):
            for name in names_of(data):
                current = self._inspect_image(name)
                if current is not None and current.get("Id") == data.get("Id") and self._remove_image_ref(name):
                    self.untagged.append(name)
            if self._inspect_image(image_id) is None:
                return True
        return self._remove_image_ref(image_id)

    def _remove_image_ref(self, ref):
        try:
            self._call("remove image %s" % ref, "remove_image", ref)
        except EngineError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def images_kept_by_other_services(self, service):
        """Image IDs that the containers of every rollout service but ``service`` run or keep
        for a rollback (the newest ``keep_images`` of their history, as their labels say)."""
        kept = set()
        for c in self._call("list the rollout's containers", "containers", all=True, filters={"label": rollout.LABEL_SERVICE}):
            labels = c.get("Labels") or {}
            if labels.get(rollout.LABEL_SERVICE) != service:
                kept.add(c.get("ImageID"))
                kept.update(rollout.kept_history(labels))
        return kept

    def images_in_use(self, ignore=()):
        """Image IDs of the host's containers, leaving out the containers whose IDs are in ``ignore``."""
        return set(c.get("ImageID") for c in self._call("list containers", "containers", all=True) if c.get("Id") not in ignore)

    # --- containers --------------------------------------------------------------------------------
    def service_containers(self, service):
        """The service's containers: ``{id, name, labels, running, image_id, ports}``."""
        found = self._call("list the containers of %s" % service, "containers", all=True,
                           filters={"label": "%s=%s" % (rollout.LABEL_SERVICE, service)})
        out = []
        for c in found:
            labels = c.get("Labels") or {}
            ports = rollout.parse_ports(labels.get(rollout.LABEL_PORTS))
            if not ports:  # created before the ports label: what the engine reports as published
                for p in c.get("Ports") or []:
                    if p.get("PublicPort"):
                        ports.setdefault(int(p["PrivatePort"]), int(p["PublicPort"]))
            out.append(dict(id=c["Id"], name=(c.get("Names") or ["/" + c["Id"][:12]])[0].lstrip("/"), labels=labels,
                            running=c.get("State") == "running", state=c.get("State") or "", image_id=c.get("ImageID"), ports=ports))
        return out

    def create(self, spec):
        """Create (not start) a container from a rollout spec; returns its ID.

        ``spec``: name, image, labels, env, ports ``{container port: (host ip, host port)}``,
        binds, tmpfs, read_only, cap_add, pids_limit, restart_policy, log_driver, log_options,
        ulimits, and optional command, entrypoint, user, memory, cpus, healthcheck, networks
        (``[{name, aliases}]``: the first at creation, the others connected before start).
        """
        name = spec["name"]
        host = dict(
            port_bindings=dict((cport, binding) for cport, binding in spec["ports"].items()),
            binds=list(spec["binds"]) or None, tmpfs=dict(spec["tmpfs"]) or None, read_only=spec["read_only"],
            cap_drop=["ALL"], cap_add=list(spec["cap_add"]) or None, security_opt=["no-new-privileges"],
            pids_limit=spec["pids_limit"], restart_policy={"Name": spec["restart_policy"]} if spec["restart_policy"] != "no" else None,
            log_config={"Type": spec["log_driver"], "Config": dict((k, str(v)) for k, v in spec["log_options"].items())},
            ulimits=[dict(Name=u["name"], Soft=u["soft"], Hard=u["hard"]) for u in spec.get("ulimits") or []] or None,
        )
        if spec.get("memory"):
            host["mem_limit"] = spec["memory"]
        if spec.get("cpus"):
            host["nano_cpus"] = int(spec["cpus"] * NANO)
        networks = spec.get("networks") or []
        networking = None
        if networks:
            host["network_mode"] = networks[0]["name"]
        kwargs = dict(name=name, labels=spec["labels"], environment=spec["env"], ports=list(spec["ports"]) or None)
        for key in ("command", "entrypoint", "user"):
            if spec.get(key):
                kwargs[key] = spec[key]
        if spec.get("healthcheck"):
            h = spec["healthcheck"]
            kwargs["healthcheck"] = dict(test=["CMD"] + list(h["test"]), interval=int(h["interval"] * NANO), timeout=int(h["timeout"] * NANO),
                                         retries=h["retries"], start_period=int(h["start_period"] * NANO))
        operation = "create container %s" % name
        try:
            kwargs["host_config"] = self.api.create_host_config(**host)
            if networks:
                networking = self.api.create_networking_config(
                    {networks[0]["name"]: self.api.create_endpoint_config(aliases=networks[0]["aliases"] or None)})
            kwargs["networking_config"] = networking
        except Exception as exc:  # the SDK validates the host config locally (version, values)
            raise EngineError(operation, exc)
        created = self._call(operation, "create_container", spec["image"], **kwargs)
        container_id = created["Id"]
        for network in networks[1:]:
            self._call("connect %s to network %s" % (name, network["name"]), "connect_container_to_network",
                       container_id, network["name"], aliases=network["aliases"] or None)
        return container_id

    def state(self, container_id, name):
        """``{status, running, restarting, restarts, exit_code}`` of a container now."""
        state = self._call("inspect container %s" % name, "inspect_container", container_id).get("State") or {}
        return dict(status=state.get("Status") or "unknown", running=bool(state.get("Running")), restarting=bool(state.get("Restarting")),
                    restarts=int(state.get("RestartCount") or 0), exit_code=state.get("ExitCode"))

    def set_aliases(self, container_id, name, network, aliases):
        """Join ``network`` again with exactly ``aliases`` (an endpoint's aliases cannot be changed
        in place: disconnect, then connect)."""
        self._call("disconnect %s from network %s" % (name, network), "disconnect_container_from_network", container_id, network)
        self._call("connect %s to network %s" % (name, network), "connect_container_to_network", container_id, network,
                   aliases=list(aliases) or None)

    def start(self, container_id, name):
        self._call("start container %s" % name, "start", container_id)

    def stop(self, container_id, name, timeout):
        self._call("stop container %s" % name, "stop", container_id, timeout=timeout)

    def remove(self, container_id, name, force=False):
        """Remove a container; False when it was already gone."""
        try:
            self._call("remove container %s" % name, "remove_container", container_id, force=force)
        except EngineError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def rename(self, container_id, old, new):
        self._call("rename container %s to %s" % (old, new), "rename", container_id, new)
