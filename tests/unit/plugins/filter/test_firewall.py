import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.firewall import (
    FilterModule,
    covered_by,
    dependent_rules,
    firewall_rules,
    inventory_addresses,
    merged_rules,
    networks,
    nft_fragment,
    nft_fragments,
)

HOSTVARS = {
    "app1": {"ansible_host": "10.0.1.1"},
    "app2": {"ansible_host": "10.0.1.2"},
    "pg1": {"ansible_host": "10.0.2.1", "firewall_host_addresses": ["10.0.2.1", "fd00::21"]},
    "pg2": {"ansible_host": "10.0.2.2"},
    "named": {"ansible_host": "named.example"},
}
GROUPS = {
    "all": list(HOSTVARS),
    "app": ["app1", "app2"],
    "postgresql": ["pg1", "pg2"],
    "elk": [],
    "dns": ["named"],
}


def rules(value, var="firewall_rules"):
    return firewall_rules(value, GROUPS, HOSTVARS, var)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "networks", "covered_by", "firewall_rules", "merged_rules", "dependent_rules",
        "nft_fragment", "nft_fragments", "inventory_addresses", "firewall_exposure", "host_address",
    }


def test_host_address_is_the_first_address_and_names_the_host_when_unknown():
    from ansible_collections.keel.platform.plugins.filter.firewall import host_address
    assert host_address("app1", {"app1": {"ansible_host": "10.0.0.21"}}) == "10.0.0.21"
    with pytest.raises(AnsibleFilterError, match="nosuch"):
        host_address("nosuch", {})


def test_group_sources_become_the_hosts_addresses():
    [rule] = rules([{"name": "postgresql", "ports": [5432], "from_groups": ["app", "postgresql"]}])
    assert rule["v4"] == ["10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.2.2"]
    assert rule["v6"] == ["fd00::21"]
    assert rule["ports"] == ["5432"] and rule["proto"] == "tcp" and rule["from_any"] is False and rule["to"] == "host"


def test_adding_a_host_to_a_group_adds_it_to_the_rule():
    groups = dict(GROUPS, app=["app1", "app2", "app3"])
    hostvars = dict(HOSTVARS, app3={"ansible_host": "10.0.1.3"})
    [rule] = firewall_rules([{"name": "api", "ports": [8000], "from_groups": ["app"]}], groups, hostvars)
    # 10.0.1.2 and the new 10.0.1.3 form one /31: merged, as nftables would.
    assert rule["v4"] == ["10.0.1.1", "10.0.1.2/31"]


def test_hosts_cidrs_dedupe_and_merge():
    [rule] = rules([{"name": "x", "ports": ["443", 443, 80], "from_hosts": ["app1", "app1"], "from_cidrs": ["10.0.1.0/24", "192.0.2.0/24"], "proto": "udp"}])
    assert rule["v4"] == ["10.0.1.0/24", "192.0.2.0/24"]
    assert rule["ports"] == ["80", "443"] and rule["proto"] == "udp"


def test_from_any_and_absent():
    out = rules([{"name": "web", "ports": [80], "from_any": True}, {"name": "old", "ports": [81], "from_any": True, "state": "absent"}])
    assert [r["name"] for r in out] == ["web"] and out[0]["from_any"] and out[0]["v4"] == []


def test_empty_group_opens_nothing_but_is_valid():
    [rule] = rules([{"name": "logs", "ports": [5044], "from_groups": ["elk"]}])
    assert rule["v4"] == [] and rule["v6"] == []


@pytest.mark.parametrize("comment", ['say "hi"', 'x" accept; tcp dport 22 accept comment "', "two\nlines", "a # b", "{ x }"])
def test_comments_that_could_carry_nft_syntax_are_refused(comment):
    with pytest.raises(AnsibleFilterError, match=r"firewall_rules\[0\]\.comment: .* may hold letters"):
        rules([{"name": "web", "ports": [80], "from_any": True, "comment": comment}])


@pytest.mark.parametrize("name", ['web"', "web\n", "a b", "-x", "x;y", ""])
def test_names_that_could_carry_nft_syntax_are_refused(name):
    with pytest.raises(AnsibleFilterError, match=r"firewall_rules\[0\]\.name: "):
        rules([{"name": name, "ports": [80], "from_any": True}])


@pytest.mark.parametrize("value", ["false", "False", "no", "0", "true", 0, 1, None, []])
def test_from_any_must_be_a_real_boolean(value):
    # A quoted "false" used to open the port to everyone.
    with pytest.raises(AnsibleFilterError, match=r"firewall_rules\[0\]\.from_any: must be true or false, unquoted"):
        rules([{"name": "web", "ports": [80], "from_any": value, "from_groups": ["app"]}])


def test_cidr_with_host_bits_says_which_network_was_meant():
    expected = r"from_cidrs\[0\]: '10.0.0.5/24' has host bits set; write the network 10.0.0.0/24, or the single address 10.0.0.5/32"
    with pytest.raises(AnsibleFilterError, match=expected):
        rules([{"name": "a", "ports": [1], "from_cidrs": ["10.0.0.5/24"]}])


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0"])
def test_everyone_only_through_from_any(everyone):
    with pytest.raises(AnsibleFilterError, match=r"from_cidrs\[0\]: .* means every address; .*from_any: true"):
        rules([{"name": "a", "ports": [1], "from_cidrs": [everyone]}])
    with pytest.raises(AnsibleFilterError, match=r"firewall_admin_networks\[0\]: .* means every address"):
        networks([everyone], "firewall_admin_networks")


def test_port_ranges_and_containers():
    [rule] = rules([{"name": "apps", "ports": ["8000-8099", 8100, 443, "440-443"], "to": "containers", "from_groups": ["app"]}])
    assert rule["ports"] == ["440-443", "8000-8100"] and rule["to"] == "containers"
    for bad, message in (("9000-8000", "is not a range"), ("1-70000", "70000"), ("x-y", "'x' is not a port")):
        with pytest.raises(AnsibleFilterError, match=r"ports\[0\]: .*" + message):
            rules([{"name": "a", "ports": [bad], "from_any": True}])
    with pytest.raises(AnsibleFilterError, match=r"\.to: 'forward' is not one of host, containers"):
        rules([{"name": "a", "ports": [1], "from_any": True, "to": "forward"}])


def test_sources_must_be_lists_of_names():
    with pytest.raises(AnsibleFilterError, match=r"\.from_groups: expected a list, got 'app'"):
        rules([{"name": "a", "ports": [1], "from_groups": "app"}])
    with pytest.raises(AnsibleFilterError, match=r"\.from_hosts\[0\]: 1 is not a str"):
        rules([{"name": "a", "ports": [1], "from_hosts": [1]}])


def test_merged_levels_are_a_union_and_later_levels_replace_by_name():
    out = merged_rules({
        "firewall_rules": [{"name": "ssh-alt", "ports": [2222], "from_groups": ["app"]}],
        "firewall_rules__app": [{"name": "api", "ports": [8000], "from_groups": ["app"]}],
        "firewall_rules__postgresql": [{"name": "pg", "ports": [5432], "from_groups": ["app"]}],
        "firewall_group_rules": [],
        "firewall_host_rules": [{"name": "ssh-alt", "ports": [2222], "from_any": True, "state": "absent"},
                                {"name": "api", "ports": [8001], "from_hosts": ["app1"]}],
    }, GROUPS, HOSTVARS)
    assert [(r["name"], r["ports"]) for r in out] == [("api", ["8001"]), ("pg", ["5432"])]
    with pytest.raises(AnsibleFilterError, match=r"firewall_rules__app\[1\]\.name: 'api' is already"):
        merged_rules({"firewall_rules__app": [{"name": "api", "ports": [1], "from_any": True}] * 2}, GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match=r"firewall_host_rules\[0\]\.from_any"):
        merged_rules({"firewall_host_rules": [{"name": "a", "ports": [1], "from_any": "false"}]}, GROUPS, HOSTVARS)


def test_covered_by_tells_whether_the_controller_keeps_ssh():
    assert covered_by("10.0.1.7", ["10.0.1.0/24"]) and covered_by("fd00::5", ["10.0.0.0/8", "fd00::/64"])
    assert not covered_by("10.0.2.7", ["10.0.1.0/24"]) and not covered_by("", ["10.0.1.0/24"])
    with pytest.raises(AnsibleFilterError, match=r"firewall_admin_networks\[0\]: '10.0.1.1/24' has host bits"):
        covered_by("10.0.1.7", ["10.0.1.1/24"], "firewall_admin_networks")


def test_fragment_text_puts_rules_in_their_chain():
    out = firewall_rules([
        {"name": "pg", "ports": [5432], "from_hosts": ["pg1"]},
        {"name": "web", "ports": [80, 443], "from_any": True},
        {"name": "apps", "ports": ["8000-8099"], "to": "containers", "from_groups": ["app"]},
    ], GROUPS, HOSTVARS)
    text = nft_fragment(out, "inventory")
    assert 'ip saddr { 10.0.2.1 } tcp dport { 5432 } accept comment "pg"' in text
    assert 'ip6 saddr { fd00::21 } tcp dport { 5432 } accept comment "pg"' in text
    assert 'tcp dport { 80, 443 } accept comment "web"' in text
    host, containers = text.split("chain container_services")
    assert "chain host_services" in host and "8000" not in host
    assert 'ip saddr { 10.0.1.1, 10.0.1.2 } meta l4proto tcp ct original proto-dst { 8000-8099 } accept' in containers
    assert nft_fragments({"inventory": out, "redis": []}) == {"inventory": text, "redis": ""}


@pytest.mark.parametrize(
    "rule,message",
    [
        ({"name": "a", "ports": [70000], "from_any": True}, r"firewall_rules\[0\]\.ports\[0\]: 70000 is not a port"),
        ({"name": "a", "ports": [], "from_any": True}, r"firewall_rules\[0\]\.ports: rule 'a' opens no port"),
        ({"name": "a", "ports": [1], "from_groups": ["nope"]}, r"firewall_rules\[0\]\.from_groups\[0\]: no inventory group 'nope'"),
        ({"name": "a", "ports": [1], "from_hosts": ["ghost"]}, r"firewall_rules\[0\]\.from_hosts\[0\]: no inventory host 'ghost'"),
        ({"name": "a", "ports": [1], "from_cidrs": ["10.0.0.0/40"]}, r"firewall_rules\[0\]\.from_cidrs\[0\]: '10.0.0.0/40' is not"),
        ({"name": "a", "ports": [1]}, r"firewall_rules\[0\]: rule 'a' lists no source"),
        ({"name": "a", "ports": [1], "from_any": True, "from_groups": ["app"]}, r"sets from_any and also lists sources"),
        ({"name": "a", "ports": [1], "proto": "icmp", "from_any": True}, r"\.proto: 'icmp' is not one of tcp, udp"),
        ({"name": "a", "ports": [1], "from_any": True, "form_groups": ["app"]}, r"unknown key\(s\) form_groups"),
        ({"ports": [1], "from_any": True}, r"firewall_rules\[0\]\.name: None must be"),
        ({"name": "a", "ports": [1], "from_groups": ["dns"]}, r"host named: ansible_host 'named.example' is not an IP address"),
        ({"name": "a", "ports": [1], "from_any": True, "state": "gone"}, r"\.state: 'gone' is not one of present, absent"),
        ("web", r"firewall_rules\[0\]: expected a mapping"),
    ],
)
def test_invalid_rules_name_the_variable(rule, message):
    with pytest.raises(AnsibleFilterError, match=message):
        rules([rule])


def test_rules_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="firewall_rules: expected a list"):
        rules({"name": "a"})
    assert rules(None) == []


def test_networks_filter():
    assert networks(["10.0.0.0/8", "fd00::/8", "10.1.0.0/16"]) == {"v4": ["10.0.0.0/8"], "v6": ["fd00::/8"]}
    assert networks(None) == {"v4": [], "v6": []}
    with pytest.raises(AnsibleFilterError, match=r"firewall_admin_networks\[1\]: '300.0.0.1' is not"):
        networks(["10.0.0.1", "300.0.0.1"], "firewall_admin_networks")
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        networks("10.0.0.0/8", "firewall_admin_networks")


def test_dependent_rules_keep_owners_apart():
    out = dependent_rules(
        {"postgresql": [{"name": "pg", "ports": [5432], "from_groups": ["app"]}], "redis": []}, GROUPS, HOSTVARS
    )
    assert set(out) == {"postgresql", "redis"} and out["redis"] == []
    assert out["postgresql"][0]["v4"] == ["10.0.1.1", "10.0.1.2"]
    with pytest.raises(AnsibleFilterError, match=r"firewall_dependent_rules\.redis\[0\]\.ports\[0\]"):
        dependent_rules({"redis": [{"name": "r", "ports": [0], "from_any": True}]}, GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match="owner '../etc'"):
        dependent_rules({"../etc": []}, GROUPS, HOSTVARS)
    for reserved in ("inventory", "keel", "ssh"):
        with pytest.raises(AnsibleFilterError, match="owner '%s' is reserved" % reserved):
            dependent_rules({reserved: []}, GROUPS, HOSTVARS)
    # A full schema for every owner's rules, as strict as the inventory's.
    with pytest.raises(AnsibleFilterError, match=r"firewall_dependent_rules\.redis\[0\]\.from_any: must be true or false"):
        dependent_rules({"redis": [{"name": "r", "ports": [6379], "from_any": "false"}]}, GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match=r"firewall_dependent_rules\.redis\[0\]: unknown key\(s\) port"):
        dependent_rules({"redis": [{"name": "r", "port": 6379, "from_any": True}]}, GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match=r"firewall_dependent_rules\.redis: expected a list of rules"):
        dependent_rules({"redis": {"name": "r"}}, GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match="expected a mapping"):
        dependent_rules([], GROUPS, HOSTVARS)


def test_inventory_addresses_skips_hosts_without_an_address():
    out = inventory_addresses(["app1", "pg1", "named"], HOSTVARS)
    assert out == [{"host": "app1", "addresses": ["10.0.1.1"]}, {"host": "pg1", "addresses": ["10.0.2.1", "fd00::21"]}]


# Found by the review that tried to break the firewall: each of these was accepted before.

@pytest.mark.parametrize("halves", [["0.0.0.0/1", "128.0.0.0/1"], ["::/1", "8000::/1"]])
def test_halves_that_merge_into_everyone_are_refused(halves):
    with pytest.raises(AnsibleFilterError, match="(cover every IPv[46] address|is wider than).*from_any"):
        rules([{"name": "web", "ports": [80], "from_cidrs": halves}])
    with pytest.raises(AnsibleFilterError, match="firewall_admin_networks.*(together these networks cover every|is wider than)"):
        networks(halves, "firewall_admin_networks")


def test_peer_variables_naming_the_same_rule_fail_naming_both():
    sources = {
        "firewall_rules": [],
        "firewall_rules__monitoring": [{"name": "metrics", "ports": [9100], "from_groups": ["app"]}],
        "firewall_rules__web": [{"name": "metrics", "ports": [9200], "from_groups": ["app"]}],
        "firewall_group_rules": [],
        "firewall_host_rules": [],
    }
    peers = ["firewall_rules", "firewall_rules__monitoring", "firewall_rules__web"]
    with pytest.raises(AnsibleFilterError, match="firewall_rules__monitoring and firewall_rules__web"):
        merged_rules(sources, GROUPS, HOSTVARS, peers)
    # A later level still replaces a peer's rule by name.
    sources["firewall_rules__web"] = []
    sources["firewall_host_rules"] = [{"name": "metrics", "ports": [9300], "from_groups": ["app"]}]
    assert [r["ports"] for r in merged_rules(sources, GROUPS, HOSTVARS, peers)] == [["9300"]]


@pytest.mark.parametrize("port", ["\u00b2", "\u0668\u0660", "80\u00b2", " ", "1e3", "0x50"])
def test_ports_are_ascii_digits_only(port):
    with pytest.raises(AnsibleFilterError, match="is not a port number"):
        rules([{"name": "web", "ports": [port], "from_any": True}])


@pytest.mark.parametrize("value, message", [
    ("fe80::1%eth0", "zone id"),
    ("::ffff:10.0.0.1", "IPv4-mapped.*10.0.0.1"),
    ("::ffff:10.0.0.0/120", "IPv4-mapped"),
])
def test_zone_ids_and_mapped_addresses_are_refused(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        rules([{"name": "web", "ports": [80], "from_cidrs": [value]}])


@pytest.mark.parametrize("value, message", [
    ({"a": "10.0.3.1"}, "expected a list of IP addresses"),
    (["10.0.3.0/24"], "is a network; list the host's single addresses"),
    (42, "expected a list of IP addresses"),
])
def test_host_addresses_must_be_single_addresses(value, message):
    hostvars = dict(HOSTVARS, odd={"ansible_host": "10.0.3.1", "firewall_host_addresses": value})
    groups = dict(GROUPS, odd=["odd"])
    with pytest.raises(AnsibleFilterError, match=message):
        firewall_rules([{"name": "web", "ports": [80], "from_groups": ["odd"]}], groups, hostvars)


# Found by the second review: what only the rules together, or the template, show.

def test_sources_of_several_rules_adding_up_to_everyone_are_refused():
    from ansible_collections.keel.platform.plugins.filter.firewall import firewall_exposure
    hostvars = dict(HOSTVARS)
    nets = ["%d.0.0.0/8" % i for i in range(256)]
    half = [{"name": "a%d" % i, "ports": [80], "from_cidrs": nets[i * 128:(i + 1) * 128]} for i in range(2)]
    merged = rules(half)
    with pytest.raises(AnsibleFilterError, match="'a0', 'a1'.*cover every IPv4"):
        firewall_exposure(merged, {}, 22)
    # The same networks on different ports open no port to everyone.
    half[1]["ports"] = [81]
    assert firewall_exposure(rules(half), {}, 22) is True
    del hostvars


@pytest.mark.parametrize("ports", [[22], ["1-65535"], ["20-30"]])
def test_a_host_rule_on_the_ssh_port_is_refused(ports):
    from ansible_collections.keel.platform.plugins.filter.firewall import firewall_exposure
    with pytest.raises(AnsibleFilterError, match="the SSH port"):
        firewall_exposure(rules([{"name": "wide", "ports": ports, "from_any": True}]), {}, 22)
    assert firewall_exposure(rules([{"name": "wide", "ports": ports, "from_any": True, "proto": "udp"}]), {}, 22)
    with pytest.raises(AnsibleFilterError, match="firewall_dependent_rules.redis"):
        firewall_exposure([], {"redis": rules([{"name": "r", "ports": ports, "from_groups": ["app"]}])}, 22)


@pytest.mark.parametrize("cidr", ["2000::/3", "0.0.0.0/4", "128.0.0.0/7", "::/6"])
def test_nearly_everyone_is_said_with_from_any(cidr):
    with pytest.raises(AnsibleFilterError, match="is wider than"):
        rules([{"name": "web", "ports": [80], "from_cidrs": [cidr]}])


def test_a_leading_zero_port_is_refused():
    with pytest.raises(AnsibleFilterError, match="is not a port number"):
        rules([{"name": "web", "ports": ["0443"], "from_any": True}])
