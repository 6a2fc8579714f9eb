import ipaddress

import pytest

from ansible_collections.keel.platform.plugins.module_utils.addresses import (
    AddressError,
    host_addresses,
    is_ip_address,
    parse_network,
    parse_port,
    split_families,
)


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.0/8", "10.0.0.5/24", "fd00::1", "2001:db8::/32"])
def test_parse_network_accepts_addresses_and_cidrs(value):
    assert parse_network(value, "x") == ipaddress.ip_network(value, strict=False)


@pytest.mark.parametrize("value", ["10.0.0.300", "10.0.0.0/33", "host.example", "", None, 5, "fd00::/129"])
def test_parse_network_names_the_variable(value):
    with pytest.raises(AddressError, match=r"^firewall_admin_networks\[2\]: "):
        parse_network(value, "firewall_admin_networks[2]")


def test_split_families_merges_overlaps_and_prints_single_addresses_bare():
    nets = [parse_network(v, "x") for v in ["10.0.0.0/24", "10.0.0.7", "10.0.1.0/24", "192.0.2.9", "fd00::1", "fd00::1"]]
    assert split_families(nets) == {"v4": ["10.0.0.0/23", "192.0.2.9"], "v6": ["fd00::1"]}


def test_split_families_empty():
    assert split_families([]) == {"v4": [], "v6": []}


@pytest.mark.parametrize("value,expected", [(1, 1), (65535, 65535), ("5432", 5432), (" 22 ", 22)])
def test_parse_port_accepts(value, expected):
    assert parse_port(value, "p") == expected


@pytest.mark.parametrize("value", [0, 65536, -1, "http", True, 1.5, None, "80-90"])
def test_parse_port_rejects_with_name(value):
    with pytest.raises(AddressError, match=r"^rules\[0\]\.ports\[1\]: "):
        parse_port(value, "rules[0].ports[1]")


def test_is_ip_address():
    assert is_ip_address("10.1.2.3") and is_ip_address("::1")
    assert not is_ip_address("10.1.2.0/24") and not is_ip_address("db1") and not is_ip_address(None)


def test_host_addresses_prefers_the_override_and_rejects_names():
    assert host_addresses("a", {"ansible_host": "10.0.0.1"}, "ov") == [ipaddress.ip_network("10.0.0.1")]
    assert host_addresses("b", {"ansible_host": "b.example", "ov": ["10.0.0.2", "fd00::2"]}, "ov") == [
        ipaddress.ip_network("10.0.0.2"),
        ipaddress.ip_network("fd00::2"),
    ]
    assert host_addresses("c", {"ov": "10.0.0.3"}, "ov") == [ipaddress.ip_network("10.0.0.3")]
    with pytest.raises(AddressError, match="host d: ansible_host 'd.example' is not an IP address; list .* in ov"):
        host_addresses("d", {"ansible_host": "d.example"}, "ov")
    # No ansible_host: the inventory name is the address Ansible would use.
    with pytest.raises(AddressError, match="host e"):
        host_addresses("e", {}, "ov")
