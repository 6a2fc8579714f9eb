# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the redis role: ACL rules checked against Redis' grammar, sizes, replies parsed.

An ACL rule that does not parse would make the server refuse its whole configuration at the
next restart (or worse, in a handler after other changes): the role checks every rule here,
before any change, with a message that names the variable.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# Command categories of Redis 7/8 and Valkey 8 (ACL CAT).
CATEGORIES = frozenset((
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog",
    "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection",
    "transaction", "scripting", "all",
    # Redis 8 modules' categories.
    "search", "json", "timeseries", "bloom", "cuckoo", "topk", "cms", "tdigest",
))
KEYWORDS = frozenset((
    "on", "off", "resetkeys", "resetchannels", "allkeys", "allchannels",
    "allcommands", "nocommands", "skip-sanitize-payload", "sanitize-payload",
))
# They replace the password the role sets: nopass lets any password in, resetpass and reset
# leave the user without one (locked out).
PASSWORD_KEYWORDS = frozenset(("nopass", "resetpass", "reset"))
COMMAND_RE = re.compile(r"^[a-z][a-z0-9_.-]*(\|[a-z0-9_.-]+)?$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
PATTERN_RE = re.compile(r"^(~|%R~|%W~|%RW~|&)\S+$")
SIZE_RE = re.compile(r"^([0-9]+)(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}


def _check_token(token, where):
    lower = token.lower()
    if lower in KEYWORDS:
        return
    if lower in PASSWORD_KEYWORDS:
        raise AnsibleFilterError("%s: %r would replace the password the role sets (from its password variables)" % (where, token))
    if '"' in token or "'" in token:
        raise AnsibleFilterError("%s: %r: quotes end the server's configuration line (it would refuse to start)" % (where, token))
    if token[:1] in ("+", "-"):
        body = lower[1:]
        if body.startswith("@"):
            if body[1:] not in CATEGORIES:
                raise AnsibleFilterError("%s: %r names no command category (known: %s)" % (where, token, ", ".join(sorted(CATEGORIES))))
            if "|" in body:
                raise AnsibleFilterError("%s: %r: a category has no subcommands" % (where, token))
            return
        if COMMAND_RE.match(body):
            return
        raise AnsibleFilterError("%s: %r is not a command (+name, -name, +name|subcommand) or category (+@name)" % (where, token))
    if token[:1] in (">", "<", "#", "!"):
        raise AnsibleFilterError("%s: %r: passwords are not written in rules; the role sets them from its password variables" % (where, token[:1] + "..."))
    if PATTERN_RE.match(token):
        return
    if token.startswith("(") or token.endswith(")"):
        raise AnsibleFilterError("%s: %r: selectors are not supported by this role" % (where, token))
    raise AnsibleFilterError("%s: %r does not parse as an ACL rule (keywords, +/-command, +/-@category, ~pattern, &pattern)" % (where, token))


def redis_acl_rules(rules, var_name="redis_acl_rules"):
    """The rules as a list of tokens, each checked against the ACL grammar; errors name ``var_name``."""
    if isinstance(rules, str):
        tokens = rules.split()
    elif isinstance(rules, (list, tuple)):
        tokens = []
        for index, item in enumerate(rules):
            if not isinstance(item, str):
                raise AnsibleFilterError("%s[%d]: expected a string, got %r" % (var_name, index, item))
            tokens.extend(item.split())
    else:
        raise AnsibleFilterError("%s: expected a string or a list of rules, got %r" % (var_name, rules))
    if not tokens:
        raise AnsibleFilterError("%s: no rule at all (the user could do nothing)" % var_name)
    for token in tokens:
        _check_token(token, var_name)
    return tokens


def redis_bytes(value, var_name="redis_maxmemory"):
    """A Redis memory size (``512mb``, ``2gb``, ``1073741824``) in bytes; errors name ``var_name``."""
    match = SIZE_RE.match(str(value).strip())
    if isinstance(value, bool) or not match:
        raise AnsibleFilterError("%s: %r is not a Redis memory size (a number with an optional unit b, k, kb, m, mb, g, gb)" % (var_name, value))
    return int(match.group(1)) * UNITS[(match.group(2) or "").lower()]


def redis_info(text):
    """``INFO`` output (``key:value`` lines) as a dictionary."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            out[key] = value
    return out


def redis_pairs(lines):
    """A flat reply (``SENTINEL MASTER``: key, value, key, value...) as a dictionary."""
    lines = list(lines or [])
    return dict(zip(lines[0::2], lines[1::2]))


def redis_sentinels(hosts, hostvars, port=26379):
    """``["host:port", ...]``: every Sentinel of the group, as clients configure them.

    Each host as the inventory reaches it: ``ansible_host`` (an address or a DNS name, which is
    also what the role puts in the host's certificate), else its inventory name; IPv6
    addresses bracketed. Computed from the inventory, so an app layer run on its own gets the
    same list as a run that converged the Redis hosts.
    """
    if isinstance(port, bool) or not isinstance(port, (int, str)) or not str(port).isdigit() or not 0 < int(port) < 65536:
        raise AnsibleFilterError("redis_sentinels: port %r is not a port number (1-65535)" % (port,))
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("redis_sentinels: expected a list of inventory hosts (e.g. groups['redis']), got %r" % (hosts,))
    entries = []
    for host in hosts:
        if host not in hostvars:
            raise AnsibleFilterError("redis_sentinels: %r is not an inventory host" % (host,))
        address = str(hostvars[host].get("ansible_host") or host)
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", address):
            raise AnsibleFilterError("redis_sentinels: host %s: %r is not an address or a host name" % (host, address))
        entries.append("%s:%d" % ("[%s]" % address if ":" in address else address, int(port)))
    return entries


class FilterModule(object):
    def filters(self):
        return {
            "redis_acl_rules": redis_acl_rules,
            "redis_bytes": redis_bytes,
            "redis_info": redis_info,
            "redis_pairs": redis_pairs,
            "redis_sentinels": redis_sentinels,
        }
