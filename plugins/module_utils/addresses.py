# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address and port handling shared by Keel's plugins.

Everything here is pure Python (standard library only) so that it runs on the controller
(filters) and on managed hosts (modules) alike, and so that the rules it encodes can be
unit-tested without a host.
"""

from __future__ import annotations

import ipaddress
import re

# ASCII digits only: str.isdigit() also accepts '²' and Arabic-Indic digits, which int() reads.
PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
# The widest source a person can mean short of everyone (a leading zero in a port, "0443",
# is refused too: unquoted in YAML it is an octal number, port 291).
MIN_PREFIX = {4: 8, 6: 7}


class AddressError(ValueError):
    """A value that should be an address, a network or a port is not one.

    The message always names where the value came from (for example
    ``firewall_rules[2].from_cidrs[0]``) so that the user can find it.
    """


def parse_network(value, where):
    """Return an ``ip_network`` for an address or CIDR, host bits allowed (10.0.0.5/24)."""
    if not isinstance(value, str) or not value.strip():
        raise AddressError("%s: expected an IP address or CIDR, got %r" % (where, value))
    if "%" in value:
        # A zone id (fe80::1%eth0) names an interface, which a set of addresses cannot hold.
        raise AddressError("%s: %r carries a zone id ('%%...'); write the address without it" % (where, value))
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise AddressError("%s: %r is not a valid IP address or CIDR" % (where, value))
    if network.version == 6 and network.network_address.ipv4_mapped is not None:
        # Packets never carry ::ffff:a.b.c.d as a source: the rule would match nothing.
        raise AddressError("%s: %r is an IPv4-mapped IPv6 address; write the IPv4 address %s instead"
                           % (where, value, network.network_address.ipv4_mapped))
    return network


def parse_cidr(value, where):
    """Return an ``ip_network`` for an address or CIDR that a person wrote, strictly.

    A CIDR with host bits set (``10.0.0.5/24``) is refused with the network it probably
    meant, and so is a network that is everyone (``0.0.0.0/0``, ``::/0``): opening a port to
    everyone is said with ``from_any: true``, never by accident.
    """
    network = parse_network(value, where)
    text = value.strip()
    if "/" in text:
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise AddressError(
                "%s: %r has host bits set; write the network %s, or the single address %s"
                % (where, value, network, "%s/%d" % (text.split("/")[0], network.max_prefixlen))
            )
    if network.prefixlen == 0:
        raise AddressError("%s: %r means every address; open a port to everyone with from_any: true instead" % (where, value))
    floor = MIN_PREFIX[network.version]
    if network.prefixlen < floor:
        # 2000::/3 is every global IPv6 source: "nearly everyone" is said with from_any too.
        raise AddressError("%s: %r is wider than /%d; open a port to everyone with from_any: true instead"
                           % (where, value, floor))
    return network


def covers(networks, address):
    """True when ``address`` (a string) is inside one of ``networks`` (ip_network objects)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except (AttributeError, ValueError):
        return False
    return any(ip in n for n in networks if n.version == ip.version)


def is_ip_address(value):
    """True when ``value`` is a single IPv4 or IPv6 address (not a name, not a network)."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def split_families(networks, where=None):
    """Split networks into IPv4 and IPv6 lists, merged and sorted.

    Overlapping and adjacent networks are merged (nftables refuses overlapping intervals in a
    set), and single addresses are written without a prefix length, as nftables prints them.
    With ``where``, a list whose networks merge into everyone (0.0.0.0/1 and 128.0.0.0/1) is
    refused as ``0.0.0.0/0`` itself is: everyone is said with ``from_any``.
    """
    out = {}
    for version, family in ((4, "v4"), (6, "v6")):
        merged = list(ipaddress.collapse_addresses(n for n in networks if n.version == version))
        if where is not None and any(n.prefixlen == 0 for n in merged):
            raise AddressError("%s: together these networks cover every %s address; open a port to everyone with"
                               " from_any: true instead" % (where, "IPv4" if version == 4 else "IPv6"))
        out[family] = [str(n.network_address) if n.num_addresses == 1 else str(n) for n in merged]
    return out


def parse_port(value, where):
    """Return a port number from an int or a numeric string; reject anything outside 1-65535."""
    if isinstance(value, bool):
        raise AddressError("%s: expected a port number, got %r" % (where, value))
    if isinstance(value, str) and PORT_RE.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise AddressError("%s: %r is not a port number (1-65535)" % (where, value))
    return value


def parse_port_range(value, where):
    """``(first, last)`` from a port (80, "80") or a range ("8000-8099", first below last)."""
    if isinstance(value, str) and "-" in value:
        first, _sep, last = value.partition("-")
        low, high = parse_port(first, where), parse_port(last, where)
        if low >= high:
            raise AddressError("%s: %r is not a range (the first port must be below the last)" % (where, value))
        return low, high
    port = parse_port(value, where)
    return port, port


def merge_port_ranges(ranges):
    """Merge overlapping and adjacent ranges; nftables refuses overlapping set intervals."""
    merged = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def host_addresses(host, host_vars, override_var):
    """Addresses of an inventory host: ``override_var`` if set, else ``ansible_host``.

    A host whose ``ansible_host`` is a DNS name must list its addresses in ``override_var``:
    a firewall rule must not depend on name resolution at load time.
    """
    override = host_vars.get(override_var)
    if override is not None and override != []:
        if isinstance(override, str):
            override = [override]
        if not isinstance(override, (list, tuple)):
            raise AddressError("%s of host %s: expected a list of IP addresses, got %r" % (override_var, host, override))
        addresses = []
        for i, item in enumerate(override):
            where = "%s[%d] of host %s" % (override_var, i, host)
            network = parse_cidr(item, where)
            if network.num_addresses != 1:
                # A host is its addresses: a network here would open a port to its neighbours.
                raise AddressError("%s: %r is a network; list the host's single addresses" % (where, item))
            addresses.append(network)
        return addresses
    address = host_vars.get("ansible_host", host)
    if not is_ip_address(address):
        raise AddressError(
            "host %s: ansible_host %r is not an IP address; list the host's addresses in %s"
            % (host, address, override_var)
        )
    return [parse_cidr(address, "ansible_host of host %s" % host)]
