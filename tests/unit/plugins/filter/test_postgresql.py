import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.postgresql import (
    FilterModule,
    postgresql_cidr,
    postgresql_clients,
    postgresql_dsn,
    postgresql_host_address,
    postgresql_openings,
    postgresql_pgpass_field,
    postgresql_value,
)

HOSTVARS = {
    "app1": {"ansible_host": "10.0.1.1"},
    "app2": {"ansible_host": "10.0.1.2", "firewall_host_addresses": ["10.0.1.2", "fd00::12"]},
    "pg1": {"ansible_host": "10.0.2.1"},
    "pg2": {"ansible_host": "10.0.2.2"},
    "pg6": {"ansible_host": "fd00::26"},
}
GROUPS = {"all": list(HOSTVARS), "app": ["app1", "app2"], "postgresql": ["pg1", "pg2"]}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "postgresql_clients", "postgresql_value", "postgresql_cidr", "postgresql_openings", "postgresql_dsn",
        "postgresql_pgpass_field", "postgresql_host_address",
    }


def test_clients_resolve_groups_as_the_firewall_does():
    clients = postgresql_clients([{"databases": ["shop"], "users": ["shop"], "from_groups": ["app"]}], GROUPS, HOSTVARS)
    assert clients == [{"databases": ["shop"], "users": ["shop"], "v4": ["10.0.1.1", "10.0.1.2"], "v6": ["fd00::12"]}]


@pytest.mark.parametrize("entry, message", [
    ({"databases": ["shop"], "users": ["shop"], "from_cidrs": ["10.0.0.300/8"]}, r"postgresql_clients\[0\].from_cidrs\[0\]"),
    ({"databases": ["shop"], "users": ["shop"], "from_cidrs": ["0.0.0.0/0"]}, "means every address"),
    ({"databases": ["shop"], "users": ["shop"], "from_any": True}, "unknown key"),
    ({"databases": ["shop"], "users": ["shop"]}, "lists no source"),
    ({"databases": ["shop; drop"], "users": ["shop"], "from_groups": ["app"]}, r"databases\[0\]"),
    ({"databases": ["replication"], "users": ["shop"], "from_groups": ["app"]}, r"databases\[0\]"),
    ({"databases": ["shop"], "users": [], "from_groups": ["app"]}, "users: expected a non-empty list"),
    ({"databases": ["shop"], "users": ["shop"], "from_groups": ["nope"]}, "no inventory group 'nope'"),
])
def test_bad_clients_are_refused_naming_the_entry(entry, message):
    with pytest.raises(AnsibleFilterError, match=message):
        postgresql_clients([entry], GROUPS, HOSTVARS)


@pytest.mark.parametrize("value, text", [
    (True, "on"), (False, "off"), (200, "200"), ("0.9", "0.9"), ("256MB", "'256MB'"),
    ("pgbackrest archive-get %f \"%p\"", "'pgbackrest archive-get %f \"%p\"'"), ("it's", "'it''s'"),
])
def test_values_are_written_as_postgresql_reads_them(value, text):
    assert postgresql_value(value) == text


def test_a_value_cannot_break_out_of_its_line():
    with pytest.raises(AnsibleFilterError, match="line break"):
        postgresql_value("x'\nssl = off")


def test_cidr_and_openings():
    assert postgresql_cidr("10.0.0.1") == "10.0.0.1/32" and postgresql_cidr("fd00::1") == "fd00::1/128"
    assert postgresql_cidr("10.0.0.0/24") == "10.0.0.0/24"
    rules = postgresql_openings([{"databases": ["shop"], "users": ["shop"], "from_groups": ["app"]}], 5432, "postgresql")
    assert rules == [
        {"name": "postgresql-peers", "ports": [5432], "from_groups": ["postgresql"]},
        {"name": "postgresql-client0", "ports": [5432], "from_groups": ["app"]},
    ]


def test_dsn_lists_every_member_and_asks_for_the_primary():
    dsn = postgresql_dsn(["pg1", "pg2", "pg6"], HOSTVARS, 5432, "shop")
    assert dsn == "postgresql://10.0.2.1:5432,10.0.2.2:5432,[fd00::26]:5432/shop?target_session_attrs=read-write&sslmode=verify-full"
    assert "prefer-standby" in postgresql_dsn(["pg1"], HOSTVARS, session="prefer-standby")
    with pytest.raises(AnsibleFilterError, match="not a target_session_attrs"):
        postgresql_dsn(["pg1"], HOSTVARS, session="whatever")
    # What a containerised client needs: its user and the CA file, encoded for the URI.
    assert postgresql_dsn(["pg1"], HOSTVARS, 5433, "shop", sslrootcert="/run/secrets/pg ca", user="shop@x") == (
        "postgresql://10.0.2.1:5433/shop?target_session_attrs=read-write&sslmode=verify-full"
        "&sslrootcert=/run/secrets/pg%20ca&user=shop%40x")
    assert postgresql_dsn(["pg1"], HOSTVARS, "5432", "my db/x?").startswith("postgresql://10.0.2.1:5432/my%20db%2Fx%3F?")
    for port in (True, 0, 70000, "x", 5432.5):
        with pytest.raises(AnsibleFilterError, match="is not a port number"):
            postgresql_dsn(["pg1"], HOSTVARS, port)
    with pytest.raises(AnsibleFilterError, match="is not a database name"):
        postgresql_dsn(["pg1"], HOSTVARS, 5432, "")


# Found by the review of the role.

def test_pgpass_fields_escape_what_libpq_reads():
    assert postgresql_pgpass_field("a:b\\c") == "a\\:b\\\\c"
    with pytest.raises(AnsibleFilterError, match="line break"):
        postgresql_pgpass_field("a\nb")


@pytest.mark.parametrize("value", [None, {"a": 1}, ["a,b"], [1]])
def test_values_that_would_break_the_server_later_are_refused(value):
    with pytest.raises(AnsibleFilterError, match="postgresql_settings"):
        postgresql_value(value)


def test_lists_are_joined():
    assert postgresql_value(["pg_stat_statements", "auto_explain"]) == "'pg_stat_statements, auto_explain'"


def test_host_address_is_parsed_not_indexed():
    hostvars = dict(HOSTVARS, odd={"ansible_host": "10.0.9.9", "firewall_host_addresses": "10.0.9.1"})
    assert postgresql_host_address("odd", hostvars) == "10.0.9.1"
    assert postgresql_host_address("pg6", HOSTVARS) == "fd00::26"
