# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the app role and of the load balancers' upstreams.

``app_services`` is checked here, strictly and before anything is touched: every message names
the entry and the field (``app_services[1].port``). The host ports a service publishes follow
``container_rollout``'s two slots, so the firewall opening and the clash check use the same
arithmetic as the module. ``app_upstream_servers`` turns what the app hosts published (the
gated endpoints of each service) into the load balancer's server lines.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.firewall import host_address

SERVICE_KEYS = {
    "name", "image", "tag", "digest", "replicas", "port", "port_base", "health", "healthcheck", "env", "secrets",
    "volumes", "tmpfs", "memory", "cpus", "pids_limit", "user", "read_only", "cap_add", "command", "log_options",
    "backup_volumes",
}
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# repository[:port]/path, without tag or digest (those are separate fields).
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+$|^[a-z0-9]+([._-][a-z0-9]+)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9/_.~-]*$")
MEMORY_RE = re.compile(r"^[0-9]+[bkmg]$")
USER_RE = re.compile(r"^[0-9]+(:[0-9]+)?$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
LOG_SIZE_RE = re.compile(r"^[0-9]+[kmg]$")
# Host paths no app container gets: the engine's socket is root on the host, / and /etc are the host.
FORBIDDEN_SOURCES = ("/", "/etc", "/proc", "/sys", "/dev", "/root", "/boot", "/var/run/docker.sock", "/run/docker.sock")


def _fail(where, text):
    raise AnsibleFilterError("%s: %s" % (where, text))


def _int(entry, key, where, low, high, default=None):
    value = entry.get(key, default)
    # A boolean is an int to Python; "3" is a string: both are refused, not guessed.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail("%s.%s" % (where, key), "expected a whole number from %d to %d, got %r" % (low, high, value))
    return value


def _bool(entry, key, where, default):
    value = entry.get(key, default)
    # A quoted "false" is a non-empty string, true to Jinja: refuse it instead.
    if not isinstance(value, bool):
        _fail("%s.%s" % (where, key), "expected true or false (unquoted), got %r" % (value,))
    return value


def _strings(entry, key, where):
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        _fail("%s.%s" % (where, key), "expected a list of non-empty strings, got %r" % (value,))
    return value


def _mapping(entry, key, where, secret=False):
    value = entry.get(key, {})
    if not isinstance(value, dict):
        _fail("%s.%s" % (where, key), "expected a mapping")
    for name, item in value.items():
        if not isinstance(name, str) or not ENV_RE.match(name):
            _fail("%s.%s" % (where, key), "%r is not a valid name (letters, digits, _)" % (name,))
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            # Never print a secret's value.
            _fail("%s.%s.%s" % (where, key, name), "expected a string" + ("" if secret else ", got %r" % (item,)))
    return value


def _volume(volume, where):
    """SOURCE:TARGET[:ro|rw]: a named volume or an absolute host path, an absolute target."""
    parts = volume.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        _fail(where, "expected SOURCE:TARGET or SOURCE:TARGET:ro, got %r" % volume)
    source, target = parts[0], parts[1]
    if not (VOLUME_NAME_RE.match(source) or PATH_RE.match(source)):
        _fail(where, "the source must be a volume name or an absolute host path, got %r" % source)
    if source.startswith("/") and (source.rstrip("/") or "/") in FORBIDDEN_SOURCES:
        _fail(where, "%s is the host's own (the engine's socket or a system directory); no app container gets it" % source)
    if not PATH_RE.match(target) or target == "/":
        _fail(where, "the target must be an absolute path other than /, got %r" % target)


def host_port_range(service):
    """First and last host port of a checked service, both slots (container_rollout's arithmetic:
    replica i of slot s publishes on port_base + s * replicas + i)."""
    return service["port_base"], service["port_base"] + 2 * service["replicas"] - 1


def _service(entry, where):
    if not isinstance(entry, dict):
        _fail(where, "expected a mapping with name, image and tag (or digest)")
    unknown = sorted(set(entry) - SERVICE_KEYS)
    if unknown:
        _fail(where, "unknown key(s) %s (allowed: %s)" % (", ".join(unknown), ", ".join(sorted(SERVICE_KEYS))))
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        _fail(where + ".name", "expected a lower-case name (letters, digits, -), got %r" % (name,))
    where = "%s (service %s)" % (where, name)
    image = entry.get("image")
    if not isinstance(image, str) or not IMAGE_RE.match(image):
        _fail(where + ".image", "expected a repository without tag or digest (registry:5000/team/app), got %r" % (image,))
    tag, digest = entry.get("tag"), entry.get("digest")
    if (tag is None) == (digest is None):
        _fail(where, "give exactly one of tag and digest")
    if tag is not None and (not isinstance(tag, str) or not TAG_RE.match(tag)):
        _fail(where + ".tag", "expected a tag as a string (quote 1.10, or YAML reads 1.1), got %r" % (tag,))
    if digest is not None and (not isinstance(digest, str) or not DIGEST_RE.match(digest)):
        _fail(where + ".digest", "expected sha256:<64 hex digits>, got %r" % (digest,))
    out = dict(name=name, image=image + (":" + tag if tag is not None else "@" + digest))
    out["replicas"] = _int(entry, "replicas", where, 1, 32, 1)
    out["env"] = _mapping(entry, "env", where)
    out["secrets"] = _mapping(entry, "secrets", where, secret=True)
    out["volumes"] = _strings(entry, "volumes", where)
    for index, volume in enumerate(out["volumes"]):
        _volume(volume, "%s.volumes[%d]" % (where, index))
    out["tmpfs"] = _strings(entry, "tmpfs", where) if "tmpfs" in entry else ["/tmp"]
    for index, mount in enumerate(out["tmpfs"]):
        if not PATH_RE.match(mount.split(":", 1)[0]) or mount.split(":", 1)[0] == "/":
            _fail("%s.tmpfs[%d]" % (where, index), "expected an absolute path other than / (PATH or PATH:OPTIONS), got %r" % mount)
    out["cap_add"] = _strings(entry, "cap_add", where)
    out["command"] = _strings(entry, "command", where) or None
    out["read_only"] = _bool(entry, "read_only", where, True)
    out["pids_limit"] = _int(entry, "pids_limit", where, 16, 1048576, 512)
    user = entry.get("user", "10001:10001")
    if not isinstance(user, str) or not USER_RE.match(user) or int(user.split(":")[0]) == 0:
        _fail(where + ".user", "expected a numeric user other than root, as UID or UID:GID, got %r" % (user,))
    out["user"] = user
    memory = entry.get("memory", "512m")
    if not isinstance(memory, str) or not MEMORY_RE.match(memory) or int(memory[:-1]) == 0:
        _fail(where + ".memory", "expected a size such as 512m or 2g, got %r" % (memory,))
    out["memory"] = memory
    cpus = entry.get("cpus", 1.0)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0.01 <= cpus <= 256:
        _fail(where + ".cpus", "expected a number of cores such as 0.5, got %r" % (cpus,))
    out["cpus"] = float(cpus)
    log_options = entry.get("log_options", {"max-size": "10m", "max-file": "3"})
    if not isinstance(log_options, dict) or not all(isinstance(v, str) for v in log_options.values()):
        _fail(where + ".log_options", "expected a mapping of strings (quote numbers), got %r" % (log_options,))
    if "max-size" in log_options and not LOG_SIZE_RE.match(log_options["max-size"]):
        _fail(where + ".log_options.max-size", "expected a size such as 10m, got %r" % (log_options["max-size"],))
    if "max-file" in log_options and not log_options["max-file"].isdigit():
        _fail(where + ".log_options.max-file", "expected a count as a string such as \"3\", got %r" % (log_options["max-file"],))
    out["log_options"] = log_options
    backups = _strings(entry, "backup_volumes", where)
    named = {v.split(":")[0] for v in out["volumes"] if VOLUME_NAME_RE.match(v.split(":")[0])}
    for vol in backups:
        if vol not in named:
            _fail(where + ".backup_volumes", "%r is not one of the service's named volumes (%s)" % (vol, ", ".join(sorted(named)) or "none"))
    out["backup_volumes"] = backups

    healthcheck = entry.get("healthcheck")
    if healthcheck is not None:
        if not isinstance(healthcheck, list) or not healthcheck or not all(isinstance(x, str) and x for x in healthcheck):
            _fail(where + ".healthcheck", "expected a command as a list of strings, got %r" % (healthcheck,))
    out["healthcheck"] = healthcheck
    if "port" in entry:
        out["port"] = _int(entry, "port", where, 1, 65535)
        out["port_base"] = _int(entry, "port_base", where, 1024, 65535)
        if host_port_range(out)[1] > 65535:
            _fail(where + ".port_base", "%d + 2 x %d replicas runs past port 65535" % (out["port_base"], out["replicas"]))
        health = entry.get("health")
        if not isinstance(health, dict) or not {"live", "ready"} <= set(health):
            _fail(where + ".health", "a service with a port needs health.live and health.ready endpoints (paths such as /health/ready)")
        unknown = sorted(set(health) - {"live", "ready"})
        if unknown:
            _fail(where + ".health", "unknown key(s) %s (allowed: live, ready)" % ", ".join(unknown))
        for key in ("live", "ready"):
            if not isinstance(health[key], str) or not PATH_RE.match(health[key]):
                _fail("%s.health.%s" % (where, key), "expected a path starting with /, got %r" % (health[key],))
        out["health"] = dict(health)
    else:
        for key in ("port_base", "health"):
            if key in entry:
                _fail("%s.%s" % (where, key), "only for a service with a port")
        if healthcheck is None:
            _fail(where, "a service without a port (a worker) needs a healthcheck command: its container health is its gate")
    return out


def app_services_check(services, var_name="app_services"):
    """The checked, completed list of services; fails naming the entry and the field."""
    if not isinstance(services, list):
        _fail(var_name, "expected a list of services")
    out, names = [], set()
    for index, entry in enumerate(services):
        service = _service(entry, "%s[%d]" % (var_name, index))
        if service["name"] in names:
            _fail("%s[%d].name" % (var_name, index), "%r is used twice" % service["name"])
        names.add(service["name"])
        out.append(service)
    ported = [s for s in out if "port" in s]
    for i, first in enumerate(ported):
        for second in ported[i + 1:]:
            a, b = host_port_range(first), host_port_range(second)
            if a[0] <= b[1] and b[0] <= a[1]:
                _fail(var_name, "port clash: %s publishes on host ports %d-%d and %s on %d-%d (each service takes port_base "
                      "to port_base + 2 x replicas - 1)" % (first["name"], a[0], a[1], second["name"], b[0], b[1]))
    return out


def app_removed_check(removed, services, var_name="app_removed_services"):
    """The names of the services to take off the app hosts (app_removed_services), checked
    against the checked app_services: distinct names, none still declared."""
    if not isinstance(removed, list):
        _fail(var_name, "expected a list of service names, got %r" % (removed,))
    declared = set(s["name"] for s in services)
    seen = set()
    for index, name in enumerate(removed):
        where = "%s[%d]" % (var_name, index)
        if not isinstance(name, str) or not NAME_RE.match(name):
            _fail(where, "expected a service name (lower-case letters, digits, -), got %r" % (name,))
        if name in seen:
            _fail(where, "%r is listed twice" % name)
        if name in declared:
            _fail(where, "%r is still in app_services: a service is either declared or removed" % name)
        seen.add(name)
    return list(removed)


def app_firewall_rules(services, from_groups):
    """One opening per service with a port: its host port range, to containers, from the given groups."""
    return [
        {"name": "app-" + s["name"], "ports": ["%d-%d" % host_port_range(s)], "to": "containers", "from_groups": list(from_groups)}
        for s in services if "port" in s
    ]


def _published(hostvars, host):
    """What a host published: this run's fact, else the one saved on the host (gathered as
    ansible_local). A host whose facts were never gathered fails: taken as "runs nothing", it
    would vanish from every upstream (an edge run with --limit would empty them all)."""
    values = hostvars.get(host, {})
    published = values.get("app_published")
    if isinstance(published, dict):
        return published
    if "ansible_local" not in values:
        raise AnsibleFilterError("app upstreams: the facts of %s were not gathered, so what it runs is unknown; "
                                 "gather them (setup, filter ansible_local) before building upstreams" % host)
    saved = (values.get("ansible_local") or {}).get("keel_app")
    return saved.get("services", {}) if isinstance(saved, dict) else {}


def app_upstream_servers(service, hosts, hostvars, drain=None):
    """Server lines' parts for one app service: ``[{address, port, down}]`` over the hosts, from
    the gated endpoints each host published. A drained host's servers are marked down."""
    drain = drain or []
    out = []
    for host in hosts:
        entry = _published(hostvars, host).get(service)
        if not isinstance(entry, dict):
            continue
        address = entry.get("address") or host_address(host, hostvars)
        if ":" in address:  # IPv6 in a server line
            address = "[%s]" % address
        for port in entry.get("ports", []):
            out.append({"address": address, "port": int(port), "down": host in drain})
    return out


def app_lb_checks(services, nginx_services, https_port=443, server_name=None):
    """health_gate checks, run on a load balancer, of each app service it routes (entries of its
    nginx_services with app_service): the entry's path, then the service's readiness path,
    over HTTPS on loopback."""
    by_name = dict((s["name"], s) for s in services if "port" in s)
    out = []
    for entry in nginx_services or []:
        service = by_name.get(entry.get("app_service"))
        if service is None:
            continue
        check = {
            "name": "%s through the load balancer" % service["name"],
            "type": "http",
            "url": "https://127.0.0.1:%d%s%s" % (int(https_port), (entry.get("path") or "/").rstrip("/"), service["health"]["ready"]),
            # Loopback does not match the certificate's names; TLS itself is verified from other hosts.
            "validate_certs": False,
        }
        if server_name:
            check["host_header"] = server_name
        out.append(check)
    return out


def app_routed_removed(removed, nginx_services):
    """``entry (service)`` for each nginx_services entry that routes a service in ``removed``."""
    return ["%s (%s)" % (entry.get("name"), entry.get("app_service")) for entry in nginx_services or []
            if entry.get("app_service") in removed]


def app_unrouted(services, nginx_services):
    """Names of the services with a port that no app_service entry of nginx_services routes."""
    routed = set(entry.get("app_service") for entry in nginx_services or [])
    return [s["name"] for s in services if "port" in s and s["name"] not in routed]


class FilterModule(object):
    def filters(self):
        return {
            "app_services_check": app_services_check,
            "app_firewall_rules": app_firewall_rules,
            "app_upstream_servers": app_upstream_servers,
            "app_lb_checks": app_lb_checks,
            "app_unrouted": app_unrouted,
            "app_removed_check": app_removed_check,
            "app_routed_removed": app_routed_removed,
        }
