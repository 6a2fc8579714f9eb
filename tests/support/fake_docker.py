"""A fake of the Docker SDK's low-level ``APIClient``: the calls container_rollout's engine
adapter makes, with the engine's rules and failures.

It raises the SDK's own exceptions where dockerd answers with an error: 404 for a missing
image, container or network, 409 for a name in use or removing a running container or an
image in use, 500 for a host port already allocated at start (the container stays created,
as with the real engine). ``faults`` injects more: ``{method: callable(*args, **kwargs)}``
returning an exception to raise (or None to go on). Every call is logged in ``calls``.
"""

import hashlib
import itertools

import docker.errors
import docker.types

from ansible_collections.keel.platform.plugins.module_utils.rollout import parse_image

API_VERSION = "1.41"


class Response(object):
    def __init__(self, status, reason):
        self.status_code = status
        self.reason = reason
        self.url = "http+docker://localhost/v%s/fake" % API_VERSION


def api_error(status, explanation, cls=docker.errors.APIError):
    reasons = {401: "Unauthorized", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}
    return cls(explanation, response=Response(status, reasons.get(status, "Error")), explanation=explanation)


def image_id(name):
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class FakeAPI(object):
    def __init__(self):
        self.images = {}  # id -> inspect data
        self.refs = {}  # reference (tag or repo@digest) -> image id
        self.remote = {}  # registry: reference -> (image id, manifest digest)
        self.users = {}  # registry address -> (username, password)
        self.networks = {"bridge"}
        self.store = {}  # container id -> state (``containers`` is the API's list call)
        self.faults = {}
        self.calls = []
        self.ids = itertools.count(1)

    # --- test helpers ----------------------------------------------------------------------------
    def add_image(self, ref, user="", digest_of=None):
        iid = image_id(ref)
        self.images[iid] = {"Id": iid, "RepoTags": [ref], "RepoDigests": [], "Config": {"User": user}}
        self.refs[ref] = iid
        return iid

    def publish(self, ref, content):
        """Put an image in the fake registry under ``ref``; returns (image id, digest)."""
        iid = image_id(content)
        digest = "sha256:" + hashlib.sha256(("manifest " + content).encode()).hexdigest()
        self.remote[ref] = (iid, digest)
        repository = ref.rsplit(":", 1)[0] if "@" not in ref else ref.split("@")[0]
        self.remote["%s@%s" % (repository, digest)] = (iid, digest)
        return iid, digest

    def named(self, name):
        return next(c for c in self.store.values() if c["Name"] == name)

    def names(self):
        return sorted(c["Name"] for c in self.store.values())

    def _fault(self, method, *args, **kwargs):
        self.calls.append((method,) + args)
        inject = self.faults.get(method)
        exc = inject(*args, **kwargs) if inject else None
        if exc is not None:
            raise exc

    def _container(self, ref):
        for c in self.store.values():
            if ref in (c["Id"], c["Name"]):
                return c
        raise api_error(404, "No such container: %s" % ref, docker.errors.NotFound)

    # --- the API -------------------------------------------------------------------------------
    def ping(self):
        self._fault("ping")
        return True

    def inspect_image(self, ref):
        self._fault("inspect_image", ref)
        iid = self.refs.get(ref) or (ref if ref in self.images else None)
        if iid is None:
            raise api_error(404, "No such image: %s" % ref, docker.errors.ImageNotFound)
        return self.images[iid]

    def login(self, username, password=None, registry=None, reauth=False, **_kw):
        self._fault("login", username, registry)
        if self.users.get(registry) != (username, password):
            raise api_error(500, 'Get "https://%s/v2/": unauthorized: authentication required' % registry)
        return {"Status": "Login Succeeded"}

    def pull(self, repository, tag=None, stream=False, decode=False, auth_config=None, **_kw):
        ref = "%s@%s" % (repository, tag) if tag and tag.startswith("sha256:") else "%s:%s" % (repository, tag)
        self._fault("pull", ref, auth_config)
        if ref not in self.remote:
            return iter([{"status": "Pulling from %s" % repository}, {"error": "manifest for %s not found: manifest unknown" % ref}])
        iid, digest = self.remote[ref]
        data = self.images.setdefault(iid, {"Id": iid, "RepoTags": [], "RepoDigests": [], "Config": {"User": ""}})
        if "@" not in ref:
            for other in self.images.values():  # a tag moves to the pulled image
                if ref in other["RepoTags"]:
                    other["RepoTags"].remove(ref)
            data["RepoTags"].append(ref)
        data["RepoDigests"].append("%s@%s" % (repository, digest))
        self.refs[ref] = iid
        self.refs["%s@%s" % (repository, digest)] = iid
        return iter([{"status": "Digest: %s" % digest}, {"status": "Downloaded newer image for %s" % ref}])

    def inspect_distribution(self, ref, auth_config=None):
        self._fault("inspect_distribution", ref)
        if ref not in self.remote:
            raise api_error(401, "errors: denied: requested access to the resource is denied")
        return {"Descriptor": {"digest": self.remote[ref][1]}}

    def containers(self, all=False, filters=None):
        self._fault("containers", filters)
        wanted = (filters or {}).get("label")
        out = []
        for c in self.store.values():
            if wanted:
                key, sep, value = wanted.partition("=")
                if key not in c["Labels"] or (sep and c["Labels"][key] != value):
                    continue
            if not all and c["State"] != "running":
                continue
            out.append({"Id": c["Id"], "Names": ["/" + c["Name"]], "Labels": dict(c["Labels"]), "State": c["State"],
                        "ImageID": c["ImageID"], "Ports": []})
        return out

    def create_host_config(self, **kwargs):
        return docker.types.HostConfig(API_VERSION, **kwargs)

    def create_networking_config(self, endpoints):
        return docker.types.NetworkingConfig(endpoints)

    def create_endpoint_config(self, **kwargs):
        return docker.types.EndpointConfig(API_VERSION, **kwargs)

    def create_container(self, image, name=None, host_config=None, networking_config=None, **kwargs):
        self._fault("create_container", image, name)
        if any(c["Name"] == name for c in self.store.values()):
            raise api_error(409, 'Conflict. The container name "/%s" is already in use' % name, docker.errors.APIError)
        iid = self.refs.get(image) or (image if image in self.images else None)
        if iid is None:
            raise api_error(404, "No such image: %s" % image, docker.errors.ImageNotFound)
        host_config = dict(host_config or {})
        networks = {}
        for net, endpoint in ((networking_config or {}).get("EndpointsConfig") or {}).items():
            if net not in self.networks:
                raise api_error(404, "network %s not found" % net, docker.errors.NotFound)
            networks[net] = dict(endpoint)
        cid = "%064x" % next(self.ids)
        self.store[cid] = {"Id": cid, "Name": name, "ImageID": iid, "Image": image, "State": "created", "HostConfig": host_config,
                           "Labels": dict(kwargs.get("labels") or {}), "Networks": networks, "Config": dict(kwargs)}
        return {"Id": cid, "Warnings": []}

    def connect_container_to_network(self, container, net_id, aliases=None, **_kw):
        self._fault("connect_container_to_network", container, net_id)
        c = self._container(container)
        if net_id not in self.networks:
            raise api_error(404, "network %s not found" % net_id, docker.errors.NotFound)
        c["Networks"][net_id] = {"Aliases": aliases}

    def inspect_container(self, container):
        self._fault("inspect_container", container)
        c = self._container(container)
        return {"Id": c["Id"], "Name": "/" + c["Name"], "RestartCount": c.get("RestartCount", 0),
                "State": {"Status": c["State"], "Running": c["State"] in ("running", "restarting"), "Restarting": c["State"] == "restarting",
                          "RestartCount": c.get("RestartCount", 0), "ExitCode": c.get("ExitCode", 0)},
                "NetworkSettings": {"Networks": dict((n, dict(e)) for n, e in c["Networks"].items())}}

    def disconnect_container_from_network(self, container, net_id, force=False):
        self._fault("disconnect_container_from_network", container, net_id)
        c = self._container(container)
        if net_id not in c["Networks"]:
            raise api_error(500, "container %s is not connected to network %s" % (c["Id"], net_id))
        del c["Networks"][net_id]

    def _bindings(self, c):
        out = set()
        for bindings in (c["HostConfig"].get("PortBindings") or {}).values():
            for b in bindings:
                out.add((b.get("HostIp"), b.get("HostPort")))
        return out

    def start(self, container):
        self._fault("start", container)
        c = self._container(container)
        for other in self.store.values():
            if other is not c and other["State"] == "running" and self._bindings(c) & self._bindings(other):
                ip, port = sorted(self._bindings(c) & self._bindings(other))[0]
                raise api_error(500, "driver failed programming external connectivity on endpoint %s: Bind for %s:%s failed: "
                                     "port is already allocated" % (c["Name"], ip, port))
        c["State"] = "running"

    def stop(self, container, timeout=None):
        self._fault("stop", container)
        self._container(container)["State"] = "exited"

    def remove_container(self, container, force=False, **_kw):
        self._fault("remove_container", container)
        c = self._container(container)
        if c["State"] == "running" and not force:
            raise api_error(409, "You cannot remove a running container %s. Stop the container before attempting removal or force remove"
                            % c["Id"])
        # As the engine: a container in its restart back-off, or paused, is not removed without force.
        if c["State"] in ("restarting", "paused") and not force:
            raise api_error(409, "You cannot remove a %s container %s. Stop the container before attempting removal or force remove"
                            % (c["State"], c["Id"]))
        del self.store[c["Id"]]

    def rename(self, container, name):
        self._fault("rename", container, name)
        c = self._container(container)
        if any(o["Name"] == name for o in self.store.values() if o is not c):
            raise api_error(409, 'Conflict. The container name "/%s" is already in use' % name)
        c["Name"] = name

    def remove_image(self, image, **_kw):
        """The engine's rules: a name is untagged (refused first when a container uses the image
        and it is a single reference; a repository's last tag takes that repository's digest
        names with it) and the last name removes the image; by ID, an image with more than one
        tag or names in several repositories is refused without force."""
        self._fault("remove_image", image)
        if image in self.refs and image not in self.images:
            iid = self.refs[image]
            data = self.images[iid]
            # moby refuses to untag a name of an image a container uses when the image is a single
            # reference (at most one tag, every name in one repository).
            single = len(data["RepoTags"]) <= 1 and len(set(parse_image(n)[0] for n in data["RepoTags"] + data["RepoDigests"])) <= 1
            if single and any(c["ImageID"] == iid for c in self.store.values()):
                raise api_error(409, "conflict: unable to remove repository reference \"%s\" (must force) - container is using"
                                     " its referenced image %s" % (image, iid[7:19]))
            for key in ("RepoTags", "RepoDigests"):
                if image in data[key]:
                    data[key].remove(image)
            del self.refs[image]
            repository = parse_image(image)[0]
            if "@" not in image and not any(parse_image(t)[0] == repository for t in data["RepoTags"]):
                for digest in [d for d in data["RepoDigests"] if parse_image(d)[0] == repository]:
                    data["RepoDigests"].remove(digest)
                    self.refs.pop(digest, None)
            if data["RepoTags"] or data["RepoDigests"]:
                return [{"Untagged": image}]
            image = iid
        if image not in self.images:
            raise api_error(404, "No such image: %s" % image, docker.errors.ImageNotFound)
        data = self.images[image]
        # moby's isSingleReference, written out here apart from the adapter's copy of the rule.
        if len(data["RepoTags"]) > 1 or len(set(parse_image(n)[0] for n in data["RepoTags"] + data["RepoDigests"])) > 1:
            raise api_error(409, "conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories" % image[7:19])
        if any(c["ImageID"] == image for c in self.store.values()):
            raise api_error(409, "conflict: unable to delete %s (cannot be forced) - image is being used by running container" % image[7:19])
        del self.images[image]
        for ref in [r for r, i in self.refs.items() if i == image]:
            del self.refs[ref]
