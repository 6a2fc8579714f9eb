import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.redis import (
    FilterModule,
    redis_acl_rules,
    redis_bytes,
    redis_info,
    redis_pairs,
    redis_sentinels,
)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"redis_acl_rules", "redis_bytes", "redis_info", "redis_pairs", "redis_sentinels"}


@pytest.mark.parametrize("rules", [
    "~* &* +@all -@dangerous -@admin",
    ["resetkeys", "~app:*", "%R~cache:*", "+get", "+client|setname", "-config"],
    "+psync +replconf +ping",
    "allchannels +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname "
    "+client|kill +script|kill",
])
def test_rules_that_parse(rules):
    assert redis_acl_rules(rules)


@pytest.mark.parametrize("rules, message", [
    ("~* +@everything", "names no command category"),
    ("~* +get ++set", "is not a command"),
    ("~* >secret", "passwords are not written"),
    ("~* +get lru", "does not parse"),
    ("~", "does not parse"),
    ("", "no rule at all"),
    ("(~x +get)", "selectors"),
    (["+get", 3], r"redis_acl_rules\[1\]"),
    (42, "expected a string or a list"),
])
def test_rules_that_do_not_parse_name_the_variable(rules, message):
    with pytest.raises(AnsibleFilterError, match=message):
        redis_acl_rules(rules)
    with pytest.raises(AnsibleFilterError, match="redis_app_acl"):
        redis_acl_rules(rules, "redis_app_acl")


@pytest.mark.parametrize("value, expected", [
    ("512mb", 512 * 1024 ** 2), ("2GB", 2 * 1024 ** 3), ("1000", 1000), (1000, 1000), ("1k", 1000), ("3kb", 3072),
])
def test_sizes(value, expected):
    assert redis_bytes(value) == expected


@pytest.mark.parametrize("value", ["12 apples", "1.5gb", "-1mb", "mb", "", True, "10tb"])
def test_malformed_sizes_name_the_variable(value):
    with pytest.raises(AnsibleFilterError, match="redis_maxmemory"):
        redis_bytes(value)


def test_info_and_pairs():
    assert redis_info("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\n\r\n") == {"role": "slave", "master_host": "10.0.0.1"}
    assert redis_pairs(["name", "keel", "quorum", "2"]) == {"name": "keel", "quorum": "2"}
    assert redis_pairs(None) == {}


@pytest.mark.parametrize("rules", ["nopass ~* +@all", "~* +@all resetpass", "reset ~* +@all", '~a"b +@all'])
def test_acl_rules_refuse_password_keywords_and_quotes(rules):
    with pytest.raises(AnsibleFilterError, match="redis_app_acl"):
        redis_acl_rules(rules, "redis_app_acl")


SENTINEL_HOSTVARS = {
    "r1": {"ansible_host": "10.0.4.1"},
    "r2": {"ansible_host": "r2.example.net", "firewall_host_addresses": ["10.0.4.2"]},
    "r6": {"ansible_host": "fd00::46"},
    "noaddress": {},
    "bad": {"ansible_host": "10.0.4.9 --evil"},
}


def test_sentinels_are_the_hosts_as_the_inventory_reaches_them():
    # A DNS name stays a name: it is what the host's certificate carries.
    assert redis_sentinels(["r1", "r2", "r6"], SENTINEL_HOSTVARS) == ["10.0.4.1:26379", "r2.example.net:26379", "[fd00::46]:26379"]
    assert redis_sentinels(["noaddress"], SENTINEL_HOSTVARS, "26380") == ["noaddress:26380"]
    assert redis_sentinels([], SENTINEL_HOSTVARS) == []


@pytest.mark.parametrize("hosts, port, message", [
    (["missing"], 26379, "'missing' is not an inventory host"),
    (["bad"], 26379, "is not an address or a host name"),
    ("r1", 26379, "expected a list of inventory hosts"),
    (["r1"], "x", "'x' is not a port number"),
    (["r1"], 0, "is not a port number"),
    (["r1"], True, "True is not a port number"),
    (["r1"], 26379.9, "is not a port number"),
])
def test_sentinels_refuse_what_a_client_could_not_use(hosts, port, message):
    with pytest.raises(AnsibleFilterError, match=message):
        redis_sentinels(hosts, SENTINEL_HOSTVARS, port)
