import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.firewall import (
    FilterModule,
    dependent_rules,
    firewall_rules,
    inventory_addresses,
    networks,
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
    assert set(FilterModule().filters()) == {"networks", "firewall_rules", "dependent_rules", "inventory_addresses"}


def test_group_sources_become_the_hosts_addresses():
    [rule] = rules([{"name": "postgresql", "ports": [5432], "from_groups": ["app", "postgresql"]}])
    assert rule["v4"] == ["10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.2.2"]
    assert rule["v6"] == ["fd00::21"]
    assert rule["ports"] == [5432] and rule["proto"] == "tcp" and rule["from_any"] is False


def test_adding_a_host_to_a_group_adds_it_to_the_rule():
    groups = dict(GROUPS, app=["app1", "app2", "app3"])
    hostvars = dict(HOSTVARS, app3={"ansible_host": "10.0.1.3"})
    [rule] = firewall_rules([{"name": "api", "ports": [8000], "from_groups": ["app"]}], groups, hostvars)
    # 10.0.1.2 and the new 10.0.1.3 form one /31: merged, as nftables would.
    assert rule["v4"] == ["10.0.1.1", "10.0.1.2/31"]


def test_hosts_cidrs_dedupe_and_merge():
    [rule] = rules([{"name": "x", "ports": ["443", 443, 80], "from_hosts": ["app1", "app1"], "from_cidrs": ["10.0.1.0/24", "192.0.2.0/24"], "proto": "udp"}])
    assert rule["v4"] == ["10.0.1.0/24", "192.0.2.0/24"]
    assert rule["ports"] == [80, 443] and rule["proto"] == "udp"


def test_from_any_and_absent():
    out = rules([{"name": "web", "ports": [80], "from_any": True}, {"name": "old", "ports": [81], "from_any": True, "state": "absent"}])
    assert [r["name"] for r in out] == ["web"] and out[0]["from_any"] and out[0]["v4"] == []


def test_empty_group_opens_nothing_but_is_valid():
    [rule] = rules([{"name": "logs", "ports": [5044], "from_groups": ["elk"]}])
    assert rule["v4"] == [] and rule["v6"] == []


def test_comment_quotes_cannot_break_the_ruleset():
    [rule] = rules([{"name": "web", "ports": [80], "from_any": True, "comment": 'say "hi"'}])
    assert '"' not in rule["comment"]


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
        ({"name": "a", "ports": [1], "proto": "icmp", "from_any": True}, r"\.proto: 'icmp' is not tcp or udp"),
        ({"name": "a", "ports": [1], "from_any": True, "form_groups": ["app"]}, r"unknown key\(s\) form_groups"),
        ({"ports": [1], "from_any": True}, r"firewall_rules\[0\]\.name: every rule needs a name"),
        ({"name": "a", "ports": [1], "from_groups": ["dns"]}, r"host named: ansible_host 'named.example' is not an IP address"),
        ({"name": "a", "ports": [1], "from_any": True, "state": "gone"}, r"\.state: 'gone' is not present or absent"),
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
    with pytest.raises(AnsibleFilterError, match="expected a mapping"):
        dependent_rules([], GROUPS, HOSTVARS)


def test_inventory_addresses_skips_hosts_without_an_address():
    out = inventory_addresses(["app1", "pg1", "named"], HOSTVARS)
    assert out == [{"host": "app1", "addresses": ["10.0.1.1"]}, {"host": "pg1", "addresses": ["10.0.2.1", "fd00::21"]}]
