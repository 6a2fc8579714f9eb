# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn Keel's firewall variables into concrete nftables rules.

The firewall role's templates only print what these filters return; all the decisions
(which addresses a group means, which ports, what is invalid) are made here, where they are
unit-tested.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.module_utils.addresses import (
    AddressError,
    host_addresses,
    parse_network,
    parse_port,
    split_families,
)

# Host variable that lists a host's addresses when ansible_host is not one.
HOST_ADDRESSES_VAR = "firewall_host_addresses"

RULE_KEYS = {"name", "ports", "proto", "from_groups", "from_hosts", "from_cidrs", "from_any", "state", "comment"}


def networks(values, var_name="networks"):
    """Validate a list of addresses/CIDRs and split it: ``{'v4': [...], 'v6': [...]}``."""
    if values is None:
        values = []
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of IP addresses or CIDRs, got %r" % (var_name, values))
    try:
        parsed = [parse_network(v, "%s[%d]" % (var_name, i)) for i, v in enumerate(values)]
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))
    return split_families(parsed)


def _as_list(value, where):
    if value is None:
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise AddressError("%s: expected a list, got %r" % (where, value))


def _rule(rule, where, groups, hostvars):
    if not isinstance(rule, dict):
        raise AddressError("%s: expected a mapping with name, ports and sources, got %r" % (where, rule))
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        raise AddressError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(unknown), ", ".join(sorted(RULE_KEYS))))
    name = rule.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AddressError("%s.name: every rule needs a name" % where)
    proto = rule.get("proto", "tcp")
    if proto not in ("tcp", "udp"):
        raise AddressError("%s.proto: %r is not tcp or udp" % (where, proto))
    ports = [parse_port(p, "%s.ports[%d]" % (where, i)) for i, p in enumerate(_as_list(rule.get("ports"), where + ".ports"))]
    if not ports:
        raise AddressError("%s.ports: rule %r opens no port" % (where, name))

    sources = []
    for i, cidr in enumerate(_as_list(rule.get("from_cidrs"), where + ".from_cidrs")):
        sources.append(parse_network(cidr, "%s.from_cidrs[%d]" % (where, i)))
    hosts = []
    for i, group in enumerate(_as_list(rule.get("from_groups"), where + ".from_groups")):
        if group not in groups:
            raise AddressError("%s.from_groups[%d]: no inventory group %r" % (where, i, group))
        hosts.extend(groups[group])
    for i, host in enumerate(_as_list(rule.get("from_hosts"), where + ".from_hosts")):
        if host not in hostvars:
            raise AddressError("%s.from_hosts[%d]: no inventory host %r" % (where, i, host))
        hosts.append(host)
    for host in dict.fromkeys(hosts):
        sources.extend(host_addresses(host, hostvars[host], HOST_ADDRESSES_VAR))

    from_any = bool(rule.get("from_any", False))
    declares_sources = any(rule.get(k) for k in ("from_cidrs", "from_groups", "from_hosts"))
    if from_any and declares_sources:
        raise AddressError("%s: rule %r sets from_any and also lists sources; choose one" % (where, name))
    if not from_any and not declares_sources:
        raise AddressError("%s: rule %r lists no source (from_groups, from_hosts, from_cidrs) and is not from_any" % (where, name))

    split = split_families(sources)
    return {
        "name": name.strip(),
        "proto": proto,
        "ports": sorted(set(ports)),
        "from_any": from_any,
        "v4": split["v4"],
        "v6": split["v6"],
        "comment": str(rule.get("comment") or name).replace('"', "'"),
        "state": rule.get("state", "present"),
    }


def firewall_rules(rules, groups, hostvars, var_name="firewall_rules"):
    """Normalise a list of Keel firewall rules against the inventory.

    Each rule becomes ``{name, proto, ports, from_any, v4, v6, comment, state}`` with the
    addresses of every host in ``from_groups``/``from_hosts`` plus ``from_cidrs``. Rules with
    ``state: absent`` are dropped. Any invalid value raises an error naming ``var_name[index]``.
    """
    if rules is None:
        return []
    if not isinstance(rules, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of rules, got %r" % (var_name, rules))
    out = []
    try:
        for index, rule in enumerate(rules):
            where = "%s[%d]" % (var_name, index)
            normalised = _rule(rule, where, groups, hostvars)
            if normalised["state"] not in ("present", "absent"):
                raise AddressError("%s.state: %r is not present or absent" % (where, normalised["state"]))
            if normalised["state"] == "present":
                out.append(normalised)
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))
    return out


def dependent_rules(owners, groups, hostvars, var_name="firewall_dependent_rules"):
    """Normalise ``{owner: [rules]}`` as declared by other roles; owners become file names."""
    if owners is None:
        return {}
    if not isinstance(owners, dict):
        raise AnsibleFilterError("%s: expected a mapping of owner name to a list of rules, got %r" % (var_name, owners))
    out = {}
    for owner, rules in owners.items():
        if not isinstance(owner, str) or not owner.replace("_", "").replace("-", "").isalnum():
            raise AnsibleFilterError("%s: owner %r must be letters, digits, '-' or '_'" % (var_name, owner))
        out[owner] = firewall_rules(rules, groups, hostvars, "%s.%s" % (var_name, owner))
    return out


def inventory_addresses(hosts, hostvars):
    """``[{'host': name, 'addresses': [...]}]`` for hosts whose address is known, for /etc/hosts."""
    out = []
    for host in hosts:
        try:
            nets = host_addresses(host, hostvars[host], HOST_ADDRESSES_VAR)
        except AddressError:
            continue
        out.append({"host": host, "addresses": [str(n.network_address) for n in nets if n.num_addresses == 1]})
    return out


class FilterModule(object):
    def filters(self):
        return {
            "networks": networks,
            "firewall_rules": firewall_rules,
            "dependent_rules": dependent_rules,
            "inventory_addresses": inventory_addresses,
        }
