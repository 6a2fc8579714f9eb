# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn Keel's firewall variables into concrete nftables rules.

The firewall role's templates only print what these filters return; all the decisions
(which addresses a group means, which ports, what is refused) are made here, where they are
unit-tested. Whatever reaches a template has been checked against a strict schema: names and
comments cannot carry nft syntax, booleans are booleans, CIDRs are networks.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.module_utils.addresses import (
    AddressError,
    covers,
    host_addresses,
    merge_port_ranges,
    parse_cidr,
    parse_port_range,
    split_families,
)

# Host variable that lists a host's addresses when ansible_host is not one.
HOST_ADDRESSES_VAR = "firewall_host_addresses"

RULE_KEYS = {"name", "ports", "proto", "to", "from_groups", "from_hosts", "from_cidrs", "from_any", "state", "comment"}
SOURCE_KEYS = ("from_groups", "from_hosts", "from_cidrs")
# Names and comments end up inside nft comments: letters, digits and a few marks only, so no
# quote, newline, brace, semicolon or hash can end the comment and start a rule.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
COMMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.,:/()+=@-]{0,119}$")
OWNER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Owner names the role uses itself, or that would read as the role's own file.
RESERVED_OWNERS = {"inventory", "keel", "main", "admin", "ssh", "firewall"}


def networks(values, var_name="networks"):
    """Validate a list of addresses/CIDRs and split it: ``{'v4': [...], 'v6': [...]}``."""
    if values is None:
        values = []
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of IP addresses or CIDRs, got %r" % (var_name, values))
    try:
        parsed = [parse_cidr(v, "%s[%d]" % (var_name, i)) for i, v in enumerate(values)]
        return split_families(parsed, var_name)
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))


def covered_by(address, values, var_name="networks"):
    """True when ``address`` is inside one of the networks ``values`` (validated as networks())."""
    split = networks(values, var_name)
    return covers([parse_cidr(n, var_name) for n in split["v4"] + split["v6"]], address or "")


def _list_of(rule, key, where, kinds):
    value = rule.get(key, [])
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise AddressError("%s.%s: expected a list, got %r" % (where, key, value))
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, kinds):
            raise AddressError("%s.%s[%d]: %r is not a %s" % (where, key, i, item, " or ".join(k.__name__ for k in kinds)))
    return list(value)


def _choice(rule, key, where, choices):
    value = rule.get(key, choices[0])
    if value not in choices:
        raise AddressError("%s.%s: %r is not one of %s" % (where, key, value, ", ".join(choices)))
    return value


def _rule(rule, where, groups, hostvars):
    if not isinstance(rule, dict):
        raise AddressError("%s: expected a mapping with name, ports and sources, got %r" % (where, rule))
    unknown = sorted(str(k) for k in set(rule) - RULE_KEYS)
    if unknown:
        raise AddressError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(unknown), ", ".join(sorted(RULE_KEYS))))
    name = rule.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise AddressError("%s.name: %r must be 1-48 letters, digits, '_', '.' or '-', starting with a letter or digit" % (where, name))
    comment = rule.get("comment", name)
    if not isinstance(comment, str) or not COMMENT_RE.fullmatch(comment):
        raise AddressError("%s.comment: %r may hold letters, digits, spaces and _.,:/()+=@- only (at most 120)" % (where, comment))
    from_any = rule.get("from_any", False)
    if not isinstance(from_any, bool):
        raise AddressError("%s.from_any: must be true or false, unquoted; got %r (a %s)" % (where, from_any, type(from_any).__name__))
    proto = _choice(rule, "proto", where, ("tcp", "udp"))
    to = _choice(rule, "to", where, ("host", "containers"))
    state = _choice(rule, "state", where, ("present", "absent"))

    port_values = _list_of(rule, "ports", where, (int, str))
    if not port_values:
        raise AddressError("%s.ports: rule %r opens no port" % (where, name))
    ranges = merge_port_ranges(parse_port_range(p, "%s.ports[%d]" % (where, i)) for i, p in enumerate(port_values))

    declared = {key: _list_of(rule, key, where, (str,)) for key in SOURCE_KEYS}
    if from_any and any(declared.values()):
        raise AddressError("%s: rule %r sets from_any and also lists sources; choose one" % (where, name))
    if not from_any and not any(declared.values()):
        raise AddressError("%s: rule %r lists no source (from_groups, from_hosts, from_cidrs) and is not from_any" % (where, name))
    sources = [parse_cidr(c, "%s.from_cidrs[%d]" % (where, i)) for i, c in enumerate(declared["from_cidrs"])]
    split_families(sources, "%s.from_cidrs" % where)
    hosts = []
    for i, group in enumerate(declared["from_groups"]):
        if group not in groups:
            raise AddressError("%s.from_groups[%d]: no inventory group %r" % (where, i, group))
        hosts.extend(groups[group])
    for i, host in enumerate(declared["from_hosts"]):
        if host not in hostvars:
            raise AddressError("%s.from_hosts[%d]: no inventory host %r" % (where, i, host))
        hosts.append(host)
    for host in dict.fromkeys(hosts):
        sources.extend(host_addresses(host, hostvars[host], HOST_ADDRESSES_VAR))

    split = split_families(sources)
    return {
        "name": name,
        "proto": proto,
        "to": to,
        "ports": ["%d" % low if low == high else "%d-%d" % (low, high) for low, high in ranges],
        "from_any": from_any,
        "v4": split["v4"],
        "v6": split["v6"],
        "comment": comment,
        "state": state,
    }


def _normalise(rules, var_name, groups, hostvars):
    """Every rule of one variable, absent ones included, by name (names are unique in it)."""
    if rules is None:
        return {}
    if not isinstance(rules, (list, tuple)):
        raise AddressError("%s: expected a list of rules, got %r" % (var_name, rules))
    out = {}
    for index, rule in enumerate(rules):
        where = "%s[%d]" % (var_name, index)
        normalised = _rule(rule, where, groups, hostvars)
        if normalised["name"] in out:
            raise AddressError("%s.name: %r is already the name of another rule in %s" % (where, normalised["name"], var_name))
        out[normalised["name"]] = normalised
    return out


def firewall_rules(rules, groups, hostvars, var_name="firewall_rules"):
    """Normalise a list of Keel firewall rules against the inventory.

    Each rule becomes ``{name, proto, to, ports, from_any, v4, v6, comment, state}`` with the
    addresses of every host in ``from_groups``/``from_hosts`` plus ``from_cidrs``. Rules with
    ``state: absent`` are dropped. Any invalid value raises an error naming ``var_name[index]``.
    """
    try:
        return [r for r in _normalise(rules, var_name, groups, hostvars).values() if r["state"] == "present"]
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))


def merged_rules(sources, groups, hostvars, peers=None):
    """The union of rule lists from several variables, ``{variable name: rules}`` in order.

    A rule named again in a later variable replaces the earlier one (so a host can change or,
    with ``state: absent``, remove a rule its groups declare); every other rule is kept.
    Variables listed in ``peers`` stand side by side with no order between them (``firewall_rules``
    and every ``firewall_rules__*``): a name declared in two of them is an error naming both,
    never one silently winning.
    """
    if not isinstance(sources, dict):
        raise AnsibleFilterError("merged_rules: expected a mapping of variable name to rules, got %r" % (sources,))
    peers = set(peers or [])
    merged = {}
    declared_in = {}
    try:
        for var_name, rules in sources.items():
            for name, rule in _normalise(rules, var_name, groups, hostvars).items():
                earlier = declared_in.get(name)
                if earlier in peers and var_name in peers:
                    raise AddressError("rule %r is declared in both %s and %s; rename one (only firewall_group_rules and"
                                       " firewall_host_rules may replace a rule)" % (name, earlier, var_name))
                merged[name] = rule
                declared_in[name] = var_name
    except AddressError as exc:
        raise AnsibleFilterError(str(exc))
    return [r for r in merged.values() if r["state"] == "present"]


def _port_segments(rules):
    """Elementary port intervals of ``rules`` with the rules covering each: ``[(low, high, [rules])]``."""
    bounds = set()
    spans = []
    for rule in rules:
        for text in rule["ports"]:
            low, _sep, high = text.partition("-")
            low, high = int(low), int(high or low)
            spans.append((low, high, rule))
            bounds.update((low, high + 1))
    points = sorted(bounds)
    out = []
    for low, nxt in zip(points, points[1:]):
        covering = [r for a, b, r in spans if a <= low and nxt - 1 <= b]
        if covering:
            out.append((low, nxt - 1, covering))
    return out


def firewall_exposure(inventory_rules, owner_rules, ssh_port):
    """Refuse what only the whole ruleset shows; returns True when it is acceptable.

    Rules are checked one by one as they are normalised; this looks at all of them together
    (every level and every owner): sources of several rules that add up to everyone on one
    port (``0.0.0.0/1`` in one rule, ``128.0.0.0/1`` in another), and a ``to: host`` rule on
    the SSH port, which only ``firewall_admin_networks`` opens.
    """
    everything = [("firewall_rules", r) for r in inventory_rules or []]
    for owner, rules in (owner_rules or {}).items():
        everything.extend(("firewall_dependent_rules.%s" % owner, r) for r in rules)
    for _var, rule in everything:
        if rule["to"] == "host" and rule["proto"] == "tcp":
            for text in rule["ports"]:
                low, _sep, high = text.partition("-")
                if int(low) <= int(ssh_port) <= int(high or low):
                    raise AnsibleFilterError("rule %r of %s opens port %s, the SSH port: SSH is opened by"
                                             " firewall_admin_networks only" % (rule["name"], _var, ssh_port))
    for proto in ("tcp", "udp"):
        for to in ("host", "containers"):
            chain = [r for _v, r in everything if r["proto"] == proto and r["to"] == to and not r["from_any"]]
            for low, high, covering in _port_segments(chain):
                if len(covering) < 2:
                    continue
                sources = [ipaddress.ip_network(a) for r in covering for a in r["v4"] + r["v6"]]
                try:
                    split_families(sources, "ports %d-%d/%s" % (low, high, proto))
                except AddressError as exc:
                    raise AnsibleFilterError("rules %s: %s" % (", ".join(repr(r["name"]) for r in covering), exc))
    return True


def dependent_rules(owners, groups, hostvars, var_name="firewall_dependent_rules"):
    """Normalise ``{owner: [rules]}`` as declared by other roles; owners become fragment names."""
    if owners is None:
        return {}
    if not isinstance(owners, dict):
        raise AnsibleFilterError("%s: expected a mapping of owner name to a list of rules, got %r" % (var_name, owners))
    out = {}
    for owner, rules in owners.items():
        if not isinstance(owner, str) or not OWNER_RE.fullmatch(owner):
            raise AnsibleFilterError("%s: owner %r must be 1-32 lower-case letters, digits, '-' or '_', starting with a letter" % (var_name, owner))
        if owner in RESERVED_OWNERS:
            raise AnsibleFilterError("%s: owner %r is reserved (%s); name the role that needs the openings"
                                     % (var_name, owner, ", ".join(sorted(RESERVED_OWNERS))))
        if rules is None or (isinstance(rules, (list, tuple)) and not rules):
            out[owner] = []
            continue
        out[owner] = firewall_rules(rules, groups, hostvars, "%s.%s" % (var_name, owner))
    return out


def nft_fragment(rules, owner):
    """One owner's openings as nft text for table inet keel (rules as firewall_rules() returns).

    Rules ``to: host`` go to chain host_services (input); rules ``to: containers`` go to
    chain container_services (forward), matched on the port the client asked for
    (``ct original proto-dst``), before Docker's DNAT rewrote it to the container's port.
    An owner without rules gets an empty text, which removes its fragment.
    """
    if not rules:
        return ""
    lines = ["# Openings declared by: %s. Sources are computed from the inventory." % owner, "table inet keel {"]
    for chain, to in (("host_services", "host"), ("container_services", "containers")):
        chain_rules = [r for r in rules if r["to"] == to]
        if not chain_rules:
            continue
        lines.append("\tchain %s {" % chain)
        for rule in chain_rules:
            if to == "containers":
                match = "meta l4proto %s ct original proto-dst" % rule["proto"]
            else:
                match = "%s dport" % rule["proto"]
            tail = '%s { %s } accept comment "%s"' % (match, ", ".join(rule["ports"]), rule["comment"])
            lines.append("\t\t# %s: %s/%s to the %s" % (rule["name"], ",".join(rule["ports"]), rule["proto"], to))
            if rule["from_any"]:
                lines.append("\t\t" + tail)
                continue
            for family, key in (("ip", "v4"), ("ip6", "v6")):
                if rule[key]:
                    lines.append("\t\t%s saddr { %s } %s" % (family, ", ".join(rule[key]), tail))
            if not rule["v4"] and not rule["v6"]:
                lines.append("\t\t# (its source groups have no hosts yet: nothing is opened)")
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def nft_fragments(owners):
    """``{owner: nft text}`` for ``{owner: rules}``; an owner without rules gets ``''``."""
    return {owner: nft_fragment(rules, owner) for owner, rules in owners.items()}


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


def host_address(host, hostvars):
    """The address other hosts connect to: the first of the host's addresses, parsed."""
    try:
        return str(host_addresses(host, hostvars[host], HOST_ADDRESSES_VAR)[0].network_address)
    except (AddressError, KeyError) as exc:
        raise AnsibleFilterError("%s: %s" % (host, exc))


class FilterModule(object):
    def filters(self):
        return {
            "host_address": host_address,
            "networks": networks,
            "covered_by": covered_by,
            "firewall_rules": firewall_rules,
            "merged_rules": merged_rules,
            "dependent_rules": dependent_rules,
            "nft_fragment": nft_fragment,
            "nft_fragments": nft_fragments,
            "inventory_addresses": inventory_addresses,
            "firewall_exposure": firewall_exposure,
        }
