import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.keel.platform.plugins.filter.app import (
    FilterModule,
    app_firewall_rules,
    app_lb_checks,
    app_removed_check,
    app_routed_removed,
    app_services_check,
    app_unrouted,
    app_upstream_servers,
)

WEB = {"name": "web", "image": "reg.example:5000/team/web", "tag": "1.4.2", "replicas": 2, "port": 8000,
       "port_base": 18000, "health": {"live": "/health/live", "ready": "/health/ready"}}
WORKER = {"name": "worker", "image": "reg.example:5000/team/web", "tag": "1.4.2", "healthcheck": ["python3", "/app/check.py"]}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"app_services_check", "app_firewall_rules", "app_upstream_servers", "app_lb_checks", "app_unrouted",
                                             "app_removed_check", "app_routed_removed"}


def test_a_web_service_and_a_worker_are_completed_with_safe_defaults():
    web, worker = app_services_check([WEB, WORKER])
    assert web["image"] == "reg.example:5000/team/web:1.4.2"
    assert web["read_only"] is True and web["user"] == "10001:10001" and web["cap_add"] == []
    assert web["memory"] == "512m" and web["pids_limit"] == 512
    assert worker["replicas"] == 1 and "port" not in worker and worker["healthcheck"] == ["python3", "/app/check.py"]


def test_a_digest_is_pinned():
    digest = "sha256:" + "a" * 64
    service = dict(WEB, digest=digest)
    del service["tag"]
    assert app_services_check([service])[0]["image"] == "reg.example:5000/team/web@" + digest


@pytest.mark.parametrize("change, message", [
    ({"health": None}, "app_services[0] (service web).health: a service with a port needs health.live and health.ready"),
    ({"health": {"live": "/l"}}, "needs health.live and health.ready"),
    ({"health": {"live": "/l", "ready": "r"}}, ".health.ready: expected a path"),
    ({"read_only": "false"}, "app_services[0] (service web).read_only: expected true or false (unquoted)"),
    ({"replicas": "2"}, ".replicas: expected a whole number"),
    ({"replicas": True}, ".replicas: expected a whole number"),
    ({"user": "0:0"}, ".user: expected a numeric user other than root"),
    ({"user": "app"}, ".user: expected a numeric user"),
    ({"tag": 1.1}, ".tag: expected a tag as a string"),
    ({"digest": "sha256:" + "a" * 64}, "give exactly one of tag and digest"),
    ({"image": "reg.example:5000/team/web:1.0"}, ".image: expected a repository without tag"),
    ({"memory": "512 MB"}, ".memory"),
    ({"cpus": "1"}, ".cpus"),
    ({"port_base": 65535}, "runs past port 65535"),
    ({"port": 0}, ".port: expected a whole number from 1 to 65535"),
    ({"user": "00"}, ".user: expected a numeric user other than root"),
    ({"user": "0000:0"}, ".user: expected a numeric user other than root"),
    ({"memory": "0m"}, ".memory"),
    ({"volumes": ["nocolon"]}, ".volumes[0]: expected SOURCE:TARGET"),
    ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}, "is the host's own"),
    ({"volumes": ["/:/host:ro"]}, "is the host's own"),
    ({"volumes": ["data:relative"]}, "the target must be an absolute path"),
    ({"volumes": ["data:/data:rx"]}, "expected SOURCE:TARGET"),
    ({"tmpfs": ["run"]}, ".tmpfs[0]: expected an absolute path"),
    ({"log_options": {"max-size": "banana"}}, ".log_options.max-size"),
    ({"log_options": {"max-file": "three"}}, ".log_options.max-file"),
    ({"path": "/api/"}, "unknown key(s) path"),
    ({"privileged": True}, "unknown key(s) privileged"),
    ({"env": {"BAD-NAME": "x"}}, ".env: 'BAD-NAME' is not a valid name"),
    ({"secrets": {"db": ["not", "a", "string"]}}, ".secrets.db: expected a string"),
    ({"backup_volumes": ["data"]}, ".backup_volumes: 'data' is not one of the service's named volumes"),
])
def test_bad_values_name_the_field(change, message):
    service = dict(WEB, **change)
    service = {k: v for k, v in service.items() if v is not None}
    with pytest.raises(AnsibleFilterError, match=None) as err:
        app_services_check([service])
    assert message in str(err.value)


def test_a_secret_value_is_never_in_the_message():
    with pytest.raises(AnsibleFilterError) as err:
        app_services_check([dict(WEB, secrets={"db": {"value": "hunter2-secret"}})])
    assert "hunter2" not in str(err.value)


def test_a_worker_needs_a_healthcheck_and_no_port_settings():
    with pytest.raises(AnsibleFilterError, match="needs a healthcheck command"):
        app_services_check([{k: v for k, v in WORKER.items() if k != "healthcheck"}])
    with pytest.raises(AnsibleFilterError, match="port_base: only for a service with a port"):
        app_services_check([dict(WORKER, port_base=19000)])


def test_port_ranges_of_services_must_not_overlap():
    api = dict(WEB, name="api", port_base=18003)  # web takes 18000-18003 (2 replicas, 2 slots)
    with pytest.raises(AnsibleFilterError, match="port clash: web publishes on host ports 18000-18003 and api on 18003-18006"):
        app_services_check([WEB, api])
    assert len(app_services_check([WEB, dict(api, port_base=18004)])) == 2


def test_names_are_unique():
    with pytest.raises(AnsibleFilterError, match=r"app_services\[1\].name: 'web' is used twice"):
        app_services_check([WEB, dict(WEB, port_base=19000)])


def test_firewall_rules_cover_both_slots_for_the_given_groups_only():
    rules = app_firewall_rules(app_services_check([WEB, WORKER]), ["loadbalancers"])
    assert rules == [{"name": "app-web", "ports": ["18000-18003"], "to": "containers", "from_groups": ["loadbalancers"]}]


HOSTVARS = {
    "app1": {"ansible_host": "10.0.0.21", "app_published": {"web": {"ports": [18002, 18003]}}},
    "app2": {"ansible_host": "10.0.0.22", "ansible_local": {"keel_app": {"services": {"web": {"ports": [18000, 18001]}}}}},
    "app3": {"ansible_host": "10.0.0.23", "ansible_local": {}},
    "app6": {"ansible_host": "fd00::26", "app_published": {"web": {"ports": [18000], "address": "fd00::26"}}},
    "app9": {"ansible_host": "10.0.0.29"},
}


def test_upstream_servers_follow_what_each_host_published():
    servers = app_upstream_servers("web", ["app1", "app2", "app3"], HOSTVARS, ["app2"])
    assert servers == [
        {"address": "10.0.0.21", "port": 18002, "down": False},
        {"address": "10.0.0.21", "port": 18003, "down": False},
        {"address": "10.0.0.22", "port": 18000, "down": True},
        {"address": "10.0.0.22", "port": 18001, "down": True},
    ]
    assert app_upstream_servers("api", ["app1", "app2"], HOSTVARS) == []


def test_ipv6_addresses_are_bracketed():
    assert app_upstream_servers("web", ["app6"], HOSTVARS) == [{"address": "[fd00::26]", "port": 18000, "down": False}]


def test_a_host_whose_facts_were_not_gathered_fails_instead_of_vanishing():
    with pytest.raises(AnsibleFilterError, match="the facts of app9 were not gathered"):
        app_upstream_servers("web", ["app1", "app9"], HOSTVARS)


def test_lb_checks_go_through_the_path_nginx_routes():
    services = app_services_check([WEB, WORKER, dict(WEB, name="api", port_base=19000)])
    nginx = [{"name": "shop", "app_service": "web", "path": "/shop/"}, {"name": "static", "port": 80, "path": "/s/"}]
    checks = app_lb_checks(services, nginx, 8443, "lb1")
    assert checks == [{"name": "web through the load balancer", "type": "http",
                       "url": "https://127.0.0.1:8443/shop/health/ready", "validate_certs": False, "host_header": "lb1"}]
    assert app_unrouted(services, nginx) == ["api"]


def test_removed_services_are_names_not_declared_and_not_routed():
    services = app_services_check([WEB])
    assert app_removed_check([], services) == [] and app_removed_check(["worker", "old-api"], services) == ["worker", "old-api"]
    for removed, message in [("worker", "expected a list of service names"),
                             (["Worker"], r"app_removed_services\[0\]: expected a service name"),
                             ([{"name": "worker"}], r"app_removed_services\[0\]: expected a service name"),
                             (["worker", "worker"], r"app_removed_services\[1\]: 'worker' is listed twice"),
                             (["web"], r"app_removed_services\[0\]: 'web' is still in app_services")]:
        with pytest.raises(AnsibleFilterError, match=message):
            app_removed_check(removed, services)
    nginx = [{"name": "shop", "app_service": "web"}, {"name": "old", "app_service": "old-api"}, {"name": "static", "port": 80}]
    assert app_routed_removed(["old-api", "worker"], nginx) == ["old (old-api)"]
    assert app_routed_removed(["worker"], nginx) == [] and app_routed_removed(["worker"], None) == []
