# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the postgresql role: who may connect, resolved the way firewall rules are.

A client entry names databases, users and sources (``from_groups``, ``from_hosts``,
``from_cidrs``); the sources are resolved against the inventory by the firewall's own code, so
pg_hba.conf and the firewall opening can never disagree about what a group means.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.firewall import HOST_ADDRESSES_VAR, SOURCE_KEYS, _rule, host_address
from ansible_collections.keel.platform.plugins.module_utils.addresses import AddressError, host_addresses

CLIENT_KEYS = {"databases", "users", "comment"} | set(SOURCE_KEYS)
# PostgreSQL identifiers as pg_hba.conf takes them unquoted; "all" is the keyword.
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _names(entry, key, where):
    value = entry.get(key)
    if not isinstance(value, (list, tuple)) or not value:
        raise AddressError("%s.%s: expected a non-empty list of names, got %r" % (where, key, value))
    for i, name in enumerate(value):
        if not isinstance(name, str) or not IDENTIFIER_RE.fullmatch(name) or name in ("replication", "sameuser", "samerole"):
            raise AddressError("%s.%s[%d]: %r is not a plain lower-case name (or all)" % (where, key, i, name))
    return list(value)


def postgresql_clients(clients, groups, hostvars, var_name="postgresql_clients"):
    """``[{databases, users, v4, v6}]`` for ``postgresql_clients``; errors name ``var_name[i]``."""
    if clients is None:
        return []
    if not isinstance(clients, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of clients, got %r" % (var_name, clients))
    out = []
    try:
        for index, entry in enumerate(clients):
            where = "%s[%d]" % (var_name, index)
            if not isinstance(entry, dict):
                raise AddressError("%s: expected a mapping with databases, users and sources, got %r" % (where, entry))
            unknown = sorted(str(k) for k in set(entry) - CLIENT_KEYS)
            if unknown:
                raise AddressError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(unknown), ", ".join(sorted(CLIENT_KEYS))))
            databases, users = _names(entry, "databases", where), _names(entry, "users", where)
            sources = dict((k, entry[k]) for k in SOURCE_KEYS if k in entry)
            # from_any is not offered: a database is never open to everyone.
            rule = _rule(dict(sources, name="client%d" % index, ports=[1]), where, groups, hostvars)
            out.append({"databases": databases, "users": users, "v4": rule["v4"], "v6": rule["v6"]})
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))
    return out


def postgresql_value(value):
    """A postgresql.conf value: booleans as on/off, numbers bare, lists joined, text quoted.

    ``None`` and mappings are refused: written as text they would pass ``postgres -C`` and
    break later (``archive_command = 'None'`` archives nothing; a Python list in
    ``shared_preload_libraries`` stops the server at its restart).
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None or isinstance(value, dict):
        raise AnsibleFilterError("postgresql_settings: %r is not a setting value (text, number, boolean or a list of names)" % (value,))
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) and v and "," not in v for v in value):
            raise AnsibleFilterError("postgresql_settings: %r must be a list of names" % (value,))
        value = ", ".join(value)
    text = str(value)
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text):
        return text
    if "\n" in text or "\r" in text:
        raise AnsibleFilterError("postgresql_settings: %r holds a line break" % (text,))
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "''")


def postgresql_pgpass_field(value):
    """One field of a .pgpass line: ``\\`` and ``:`` escaped as libpq reads them."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise AnsibleFilterError("a .pgpass field cannot hold a line break")
    return text.replace("\\", "\\\\").replace(":", "\\:")


def postgresql_host_address(host, hostvars):
    """The address other members connect to (the shared ``host_address``), kept for the role."""
    try:
        return host_address(host, hostvars)
    except AnsibleFilterError as exc:
        raise AnsibleFilterError("postgresql: %s" % exc)


def postgresql_cidr(address):
    """An address as pg_hba.conf wants it: with a prefix length, always."""
    if "/" in address:
        return address
    return address + ("/128" if ":" in address else "/32")


def postgresql_openings(clients, port, group):
    """Firewall rules (keel.platform.firewall's schema) for the port: peers and every client."""
    rules = [{"name": "postgresql-peers", "ports": [port], "from_groups": [group]}]
    for index, entry in enumerate(clients or []):
        sources = dict((k, entry[k]) for k in SOURCE_KEYS if isinstance(entry, dict) and k in entry)
        rules.append(dict(sources, name="postgresql-client%d" % index, ports=[port]))
    return rules


def postgresql_dsn(hosts, hostvars, port=5432, database="postgres", session="read-write", sslrootcert=None, user=None):
    """A libpq multi-host URI over the group's hosts, for the app tier.

    libpq tries the hosts in turn and keeps the first that matches ``target_session_attrs``
    (``read-write`` finds the primary, ``prefer-standby`` a replica), so clients follow a
    switchover without a proxy. TLS with the server's name checked (``verify-full``).
    """
    if session not in ("read-write", "prefer-standby", "any", "primary", "standby", "read-only"):
        raise AnsibleFilterError("postgresql_dsn: %r is not a target_session_attrs value" % (session,))
    if isinstance(port, bool) or not isinstance(port, (int, str)) or not str(port).isdigit() or not 0 < int(port) < 65536:
        raise AnsibleFilterError("postgresql_dsn: port %r is not a port number (1-65535)" % (port,))
    if not database or not isinstance(database, str):
        raise AnsibleFilterError("postgresql_dsn: database %r is not a database name" % (database,))
    parts = []
    for host in hosts:
        try:
            address = str(host_addresses(host, hostvars[host], HOST_ADDRESSES_VAR)[0].network_address)
        except (AddressError, KeyError) as exc:
            raise AnsibleFilterError("postgresql_dsn: %s" % exc)
        parts.append("%s:%d" % ("[%s]" % address if ":" in address else address, int(port)))
    query = "target_session_attrs=%s&sslmode=verify-full" % session
    if sslrootcert:
        query += "&sslrootcert=%s" % quote(str(sslrootcert), safe="/")
    if user:
        query += "&user=%s" % quote(str(user), safe="")
    return "postgresql://%s/%s?%s" % (",".join(parts), quote(database, safe=""), query)


class FilterModule(object):
    def filters(self):
        return {
            "postgresql_clients": postgresql_clients,
            "postgresql_value": postgresql_value,
            "postgresql_cidr": postgresql_cidr,
            "postgresql_openings": postgresql_openings,
            "postgresql_dsn": postgresql_dsn,
            "postgresql_pgpass_field": postgresql_pgpass_field,
            "postgresql_host_address": postgresql_host_address,
        }
