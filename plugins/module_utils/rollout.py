# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions for a rolling container update, separate from the Docker calls that carry them out.

A service's containers carry labels: the service, a generation number, a replica index, a
hash of the desired configuration and the host ports they publish. A rollout starts the next
generation beside the current one on the other "slot" of host ports (blue/green), so both can
serve while the load balancer switches.

**The gate record is the container's name.** A new container is created as
``SERVICE-gN-I-pending`` and renamed to ``SERVICE-gN-I`` only after its generation passed the
health gate. A rename is atomic and lives in the engine with the container, so a run killed at
any point leaves a state the next run reads without a side file: a generation none of whose
containers has its final name never passed its gate (it is gated again or removed before
anything depends on it); a generation with at least one final name passed (the other renames
are finished). Containers without the replica-index label predate the record and count as
gated.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlsplit

LABEL_SERVICE = "keel.rollout.service"
LABEL_GENERATION = "keel.rollout.generation"
LABEL_INDEX = "keel.rollout.index"
LABEL_HASH = "keel.rollout.config-hash"
LABEL_SLOT = "keel.rollout.slot"
LABEL_PORTS = "keel.rollout.ports"
LABEL_IMAGE = "keel.rollout.image"
# Image IDs the service has run, newest first: what "previous images" means for pruning.
LABEL_HISTORY = "keel.rollout.image-history"
HISTORY_LIMIT = 20
# How many images of its history the service keeps (keep_images when its containers were made;
# the module's default for containers made before the label).
LABEL_KEEP = "keel.rollout.keep-images"
DEFAULT_KEEP = 3
PENDING_SUFFIX = "-pending"

PLACEHOLDER = re.compile(r"\{(host|port)\}")
PORT_FIELD = "port"
URL_FIELD = "url"


class PlanError(Exception):
    """The desired state cannot be reached from the one found; nothing was changed."""


class TemplateError(ValueError):
    pass


# --- names and labels ------------------------------------------------------------------------

def container_name(service, generation, index):
    return "%s-g%d-%d" % (service, generation, index)


def pending_name(service, generation, index):
    return container_name(service, generation, index) + PENDING_SUFFIX


def format_ports(ports):
    return ",".join("%d=%d" % (cport, hport) for cport, hport in sorted(ports.items()))


def parse_ports(value):
    """``{container port: host port}`` from the ports label (``8000=18000,9000=18001``)."""
    out = {}
    for item in (value or "").split(","):
        if "=" in item:
            cport, hport = item.split("=", 1)
            if cport.isdigit() and hport.isdigit():
                out[int(cport)] = int(hport)
    return out


def generation_of(container):
    try:
        return int(container["labels"].get(LABEL_GENERATION, "0") or 0)
    except ValueError:
        return 0


def slot_of(containers, default):
    for container in containers:
        value = container["labels"].get(LABEL_SLOT)
        if value in ("0", "1"):
            return int(value)
    return default


def is_recorded(container, service):
    """True when this container carries its final name (its generation passed the gate)."""
    labels = container["labels"]
    if LABEL_INDEX not in labels:
        return True  # created before the gate record existed
    try:
        index = int(labels[LABEL_INDEX])
    except ValueError:
        return False
    return container["name"] == container_name(service, generation_of(container), index)


# --- configuration -----------------------------------------------------------------------------

def config_hash(image_id, config, secrets):
    """Hash of everything that defines the containers. Secrets count by their own hash only,
    so changing a secret rolls the service without the secret appearing anywhere."""
    secret_digest = dict((k, hashlib.sha256(str(v).encode("utf-8")).hexdigest()) for k, v in sorted((secrets or {}).items()))
    document = json.dumps({"image": image_id, "config": config, "secrets": secret_digest}, sort_keys=True, default=str)
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]


def host_ports(port_base, replicas, slot, container_ports):
    """Host ports of each replica in a slot: slot 0 and slot 1 never overlap.

    Replica ``i`` of slot ``s`` publishes container port number ``j`` (in ``container_ports``
    order) on ``port_base + (s * replicas + i) * len(container_ports) + j``.
    """
    out = []
    width = len(container_ports)
    for index in range(replicas):
        first = port_base + (slot * replicas + index) * width
        out.append(dict((cport, first + j) for j, cport in enumerate(container_ports)))
    return out


def parse_image(ref):
    """``(repository, tag, digest)`` of an image reference; tag or digest may be None.

    ``registry:5000/shop:1.2`` -> (``registry:5000/shop``, ``1.2``, None);
    ``shop@sha256:ab..`` -> (``shop``, None, ``sha256:ab..``). A colon in the registry part is
    a port, not a tag.
    """
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest


def registry_of(repository):
    """The registry host of a repository, or None for Docker Hub."""
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


# --- check templates ---------------------------------------------------------------------------

def fill(value, host, port):
    """``value`` with ``{host}`` and ``{port}`` replaced in every string (lists and dict values
    included). Nothing else is a placeholder: every other brace stays as it is."""
    if isinstance(value, str):
        def replace(match):
            if match.group(1) == "host":
                return host
            if port is None:
                raise TemplateError("{port}")
            return str(port)
        return PLACEHOLDER.sub(replace, value)
    if isinstance(value, list):
        return [fill(item, host, port) for item in value]
    if isinstance(value, dict):
        return dict((key, fill(item, host, port)) for key, item in value.items())
    return value


def fill_check(index, spec, host, port):
    """One check template made concrete for a container. Errors name the field, never its value
    (it may be a password)."""
    out = {}
    name = spec.get("name") or spec.get("type")
    for key, value in spec.items():
        try:
            if key == URL_FIELD and isinstance(value, str) and ":" in host:
                # An IPv6 address in a URL is written in brackets; a template that has them already keeps them.
                out[key] = fill(value.replace("[{host}]", "{host}"), "[%s]" % host.strip("[]"), port)
            else:
                out[key] = fill(value, host, port)
        except TemplateError:
            raise TemplateError("checks[%d] (%s): %s uses {port}, but the service publishes no container_ports"
                                % (index, spec.get("name") or spec.get("type"), key))
    if isinstance(out.get(URL_FIELD), str):
        try:
            urlsplit(out[URL_FIELD]).port  # pylint: disable=expression-not-assigned
        except ValueError:  # the message never repeats the URL: it may carry a password
            raise TemplateError("checks[%d] (%s): url is not a valid URL once {host} and {port} are filled in" % (index, name))
    value = out.get(PORT_FIELD)
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise TemplateError("checks[%d] (%s): port must be a number or {port}, got %r"
                                % (index, spec.get("name") or spec.get("type"), spec.get(PORT_FIELD)))
        out[PORT_FIELD] = int(value)
    if out.get(PORT_FIELD) is not None and not 0 < out[PORT_FIELD] < 65536:
        raise TemplateError("checks[%d] (%s): port %s is not in 1-65535" % (index, spec.get("name") or spec.get("type"), out[PORT_FIELD]))
    return out


def gate_host(host_ip):
    """Where the gate reaches published ports: the publishing address, loopback for a wildcard."""
    if host_ip in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host_ip == "::":
        return "::1"
    return host_ip


# --- the plan ----------------------------------------------------------------------------------

def _generations(containers):
    out = {}
    for container in containers:
        out.setdefault(generation_of(container), []).append(container)
    return out


def _names(containers):
    return sorted(c["name"] for c in containers)


def describe(containers, service):
    """The service's generations as found: ``[{generation, gated, slot, containers, running}]``."""
    out = []
    for gen, members in sorted(_generations(containers).items()):
        out.append(dict(generation=gen, gated=any(is_recorded(c, service) for c in members), slot=slot_of(members, None),
                        containers=_names(members), running=sum(1 for c in members if c["running"])))
    return out


def plan(containers, service, desired_hash, replicas, phase="full"):
    """What to do, as a dict:

    * ``discard``: containers of generations that never passed their gate (a run that died
      between start and gate) and are not reused: removed before anything else.
    * ``record``: ``[(container, final name)]`` of a gated generation whose renames a run did
      not finish.
    * ``action``: ``none`` (up to date), ``retire`` (up to date, older generations remain),
      ``gate`` (the newest generation matches but never passed its gate: gate it now) or
      ``rollout`` (start generation ``generation`` on ``slot``).
    * ``retire``: names of the older gated generations, retired (phase full/finalize) or left
      pending (phase deploy) once the serving generation is gated.

    Raises :class:`PlanError` when the run must not go on: a new deploy while an earlier one
    is still waiting for ``phase=finalize`` (documented rule: it fails, nothing is touched),
    or a finalize with nothing deployed to finalize.
    """
    gens = _generations(containers)
    gated = dict((g, cs) for g, cs in gens.items() if any(is_recorded(c, service) for c in cs))
    ungated = dict((g, cs) for g, cs in gens.items() if g not in gated)
    record = [(c, container_name(service, g, int(c["labels"][LABEL_INDEX])))
              for g, cs in sorted(gated.items()) for c in cs if not is_recorded(c, service)]

    def matches(members):
        return len(members) == replicas and all(c["running"] and c["labels"].get(LABEL_HASH) == desired_hash for c in members)

    newest_gated = max(gated) if gated else None
    newest_ungated = max(ungated) if ungated else None
    out = dict(record=record, generation=newest_gated or 0, slot=None, retire=[], discard=[])

    if newest_gated is not None and matches(gated[newest_gated]):
        out["discard"] = _names(c for cs in ungated.values() for c in cs)
        out["retire"] = _names(c for g, cs in gated.items() if g != newest_gated for c in cs)
        out.update(action="retire" if out["retire"] else "none", slot=slot_of(gated[newest_gated], 0))
        return out

    if newest_ungated is not None and newest_ungated > (newest_gated or 0) and matches(ungated[newest_ungated]):
        if phase == "finalize":
            raise PlanError("generation %s (%s) was started by a deploy that did not finish and never passed its gate; "
                            "run phase=deploy again to gate it (nothing to finalize)" % (newest_ungated, ", ".join(_names(ungated[newest_ungated]))))
        out["discard"] = _names(c for g, cs in ungated.items() if g != newest_ungated for c in cs)
        out["retire"] = _names(c for cs in gated.values() for c in cs)
        out.update(action="gate", generation=newest_ungated, slot=slot_of(ungated[newest_ungated], 0))
        return out

    if phase == "finalize":
        raise PlanError("nothing to finalize: the service does not run this image and configuration yet (run phase deploy first)")
    older = sorted(g for g in gated if g != newest_gated)
    if older:
        raise PlanError("a deploy is pending: generation %s (%s) was deployed beside generation(s) %s (%s), which still run. "
                        "Finish it with phase=finalize (once the load balancer points at generation %s), or undo it with phase=abort, "
                        "before deploying again"
                        % (newest_gated, ", ".join(_names(gated[newest_gated])), ", ".join(str(g) for g in older),
                           ", ".join(_names(c for g in older for c in gated[g])), newest_gated))
    out["discard"] = _names(c for cs in ungated.values() for c in cs)
    out["retire"] = _names(c for cs in gated.values() for c in cs)
    used = slot_of(gated[newest_gated], 1) if newest_gated is not None else 1
    out.update(action="rollout", generation=max(gens) + 1 if gens else 1, slot=1 - used)
    return out


# --- image history -----------------------------------------------------------------------------

def read_history(labels):
    value = (labels or {}).get(LABEL_HISTORY, "")
    return [i for i in value.split(",") if i]


def kept_history(labels):
    """The images of a container's history that its service keeps for a rollback."""
    try:
        keep = int((labels or {}).get(LABEL_KEEP) or DEFAULT_KEEP)
    except ValueError:
        keep = DEFAULT_KEEP
    return read_history(labels)[:max(keep, 1)]


def next_history(history, image_id, limit=HISTORY_LIMIT):
    """The deployment history after deploying ``image_id``: it first, no repeats, bounded."""
    out = [image_id] + [i for i in history if i != image_id]
    return out[:limit]


def images_to_prune(history, in_use, keep):
    """Image IDs the service deployed before its ``keep`` most recent ones, never one in use.

    Only images in the service's own deployment history are candidates: an image it never
    ran (a version pulled ahead of a rollout, another service's) is never removed.
    """
    return [i for i in history[keep:] if i not in in_use]
