import pytest

from ansible_collections.keel.platform.plugins.module_utils import rollout
from ansible_collections.keel.platform.plugins.module_utils.rollout import LABEL_GENERATION, LABEL_HASH, LABEL_INDEX, LABEL_SLOT


def container(gen, slot, hash_, index=0, running=True, gated=True, legacy=False, service="web"):
    labels = {LABEL_GENERATION: str(gen), LABEL_SLOT: str(slot), LABEL_HASH: hash_}
    if not legacy:
        labels[LABEL_INDEX] = str(index)
    name = rollout.container_name(service, gen, index) if gated or legacy else rollout.pending_name(service, gen, index)
    return dict(id="id-%s" % name, name=name, running=running, image_id="sha256:x", labels=labels, ports={})


def plan(containers, desired, replicas=1, phase="full"):
    return rollout.plan(containers, "web", desired, replicas, phase)


def test_config_hash_is_stable_and_secret_values_only_count_by_hash():
    a = rollout.config_hash("sha256:1", {"env": {"A": "1"}, "replicas": 2}, {"DB_PASSWORD": "s3cret"})
    assert a == rollout.config_hash("sha256:1", {"replicas": 2, "env": {"A": "1"}}, {"DB_PASSWORD": "s3cret"})
    assert a != rollout.config_hash("sha256:1", {"env": {"A": "1"}, "replicas": 2}, {"DB_PASSWORD": "other"})
    assert a != rollout.config_hash("sha256:2", {"env": {"A": "1"}, "replicas": 2}, {"DB_PASSWORD": "s3cret"})
    assert "s3cret" not in a and len(a) == 16


def test_host_port_slots_never_overlap():
    slot0 = rollout.host_ports(18000, 2, 0, [8000, 9000])
    slot1 = rollout.host_ports(18000, 2, 1, [8000, 9000])
    assert slot0 == [{8000: 18000, 9000: 18001}, {8000: 18002, 9000: 18003}]
    assert slot1 == [{8000: 18004, 9000: 18005}, {8000: 18006, 9000: 18007}]
    assert rollout.host_ports(18000, 3, 1, []) == [{}, {}, {}]


def test_first_rollout_uses_slot_zero_generation_one():
    p = plan([], "h1", 2)
    assert (p["action"], p["generation"], p["slot"], p["retire"], p["discard"]) == ("rollout", 1, 0, [], [])


def test_up_to_date_changes_nothing():
    p = plan([container(3, 1, "h1", 0), container(3, 1, "h1", 1)], "h1", 2)
    assert (p["action"], p["generation"], p["slot"], p["retire"]) == ("none", 3, 1, [])


def test_new_config_rolls_to_the_slot_the_serving_generation_does_not_use():
    p = plan([container(3, 1, "h1")], "h2")
    assert (p["action"], p["generation"], p["slot"], p["retire"]) == ("rollout", 4, 0, ["web-g3-0"])


def test_a_stopped_or_missing_replica_triggers_a_rollout():
    assert plan([container(1, 0, "h1", 0), container(1, 0, "h1", 1, running=False)], "h1", 2)["action"] == "rollout"
    assert plan([container(1, 0, "h1", 0)], "h1", 2)["action"] == "rollout"


def test_deployed_but_not_finalized_only_retires():
    p = plan([container(2, 1, "h2"), container(1, 0, "h1")], "h2")
    assert (p["action"], p["generation"], p["slot"], p["retire"]) == ("retire", 2, 1, ["web-g1-0"])


def test_a_second_deploy_while_one_is_pending_fails_before_anything():
    # The fault: the slot came from the newest generation only, so generation 3 went to slot 0,
    # where generation 1 still publishes its ports.
    with pytest.raises(rollout.PlanError) as exc:
        plan([container(2, 1, "h2"), container(1, 0, "h1")], "h3")
    assert "a deploy is pending: generation 2 (web-g2-0) was deployed beside generation(s) 1 (web-g1-0)" in str(exc.value)
    assert "phase=finalize" in str(exc.value)
    with pytest.raises(rollout.PlanError):
        plan([container(2, 1, "h2"), container(1, 0, "h1")], "h3", phase="deploy")


def test_an_ungated_generation_that_matches_is_gated_not_trusted():
    # A run died between start and gate: generation 2 runs under -pending names.
    found = [container(1, 0, "h1"), container(2, 1, "h2", gated=False)]
    p = plan(found, "h2")
    assert (p["action"], p["generation"], p["slot"], p["retire"], p["discard"]) == ("gate", 2, 1, ["web-g1-0"], [])
    p = plan(found, "h2", phase="deploy")
    assert p["action"] == "gate"  # never "none" with the ungated endpoints
    with pytest.raises(rollout.PlanError) as exc:
        plan(found, "h2", phase="finalize")
    assert "never passed its gate" in str(exc.value)


def test_an_ungated_generation_that_does_not_match_is_discarded_and_its_slot_reused():
    found = [container(1, 0, "h1"), container(2, 1, "h2", gated=False)]
    p = plan(found, "h3")
    assert (p["action"], p["generation"], p["slot"], p["retire"], p["discard"]) == ("rollout", 3, 1, ["web-g1-0"], ["web-g2-0-pending"])
    p = plan(found, "h1")  # back to what serves: the leftover goes, nothing starts
    assert (p["action"], p["discard"]) == ("none", ["web-g2-0-pending"])


def test_an_ungated_generation_with_a_stopped_replica_is_discarded_not_gated():
    found = [container(1, 0, "h1"), container(2, 1, "h2", 0, gated=False), container(2, 1, "h2", 1, gated=False, running=False)]
    p = plan(found, "h2", 2)
    assert p["action"] == "rollout" and p["discard"] == ["web-g2-0-pending", "web-g2-1-pending"] and p["generation"] == 3


def test_a_partly_renamed_generation_passed_its_gate_and_the_record_is_finished():
    found = [container(1, 0, "h1", 0), container(1, 0, "h1", 1), container(2, 1, "h2", 0), container(2, 1, "h2", 1, gated=False)]
    p = plan(found, "h2", 2)
    assert p["action"] == "retire" and p["retire"] == ["web-g1-0", "web-g1-1"]
    assert [(c["name"], final) for c, final in p["record"]] == [("web-g2-1-pending", "web-g2-1")]


def test_containers_from_before_the_record_count_as_gated():
    p = plan([container(4, 1, "h1", legacy=True)], "h1")
    assert p["action"] == "none" and p["discard"] == []


def test_placeholders_are_exactly_host_and_port_everywhere():
    spec = {"type": "http", "url": "http://{host}:{port}/h", "headers": {"X-Body": '{"a": {"b": 1}}', "X-Target": "{host}"},
            "argv": ["curl", "{port}", "{container}", "{port_8000}", "{{port}}", "{ port }"], "json_value": {"k": "{port}"}}
    out = rollout.fill_check(0, spec, "127.0.0.1", 18000)
    assert out["url"] == "http://127.0.0.1:18000/h"
    assert out["headers"] == {"X-Body": '{"a": {"b": 1}}', "X-Target": "127.0.0.1"}
    assert out["argv"] == ["curl", "18000", "{container}", "{port_8000}", "{18000}", "{ port }"]
    assert out["json_value"] == {"k": "18000"}


def test_port_fields_take_the_placeholder_and_become_numbers():
    for kind in ("tcp", "redis", "postgresql"):
        assert rollout.fill_check(0, {"type": kind, "host": "{host}", "port": "{port}"}, "127.0.0.1", 18001) == \
            {"type": kind, "host": "127.0.0.1", "port": 18001}
    assert rollout.fill_check(0, {"type": "tcp", "port": 6379}, "h", 1)["port"] == 6379
    assert rollout.fill_check(0, {"type": "tcp", "port": "6379"}, "h", 1)["port"] == 6379


@pytest.mark.parametrize("spec, port, message", [
    ({"type": "tcp", "host": "{host}", "port": "{port}x"}, 18000, "port must be a number or {port}"),
    ({"type": "tcp", "port": "{host}"}, 18000, "port must be a number or {port}"),
    ({"type": "tcp", "port": 70000}, 18000, "port 70000 is not in 1-65535"),
    ({"type": "http", "url": "http://{host}:{port}/"}, None, "checks[0] (http): url uses {port}, but the service publishes no container_ports"),
])
def test_malformed_templates_are_refused(spec, port, message):
    with pytest.raises(rollout.TemplateError) as exc:
        rollout.fill_check(0, spec, "127.0.0.1", port)
    assert message in str(exc.value)


def test_a_template_error_never_shows_a_secret_value():
    spec = {"type": "postgresql", "password": "pa{port}ss-zq7", "port": "{port}"}
    with pytest.raises(rollout.TemplateError) as exc:
        rollout.fill_check(0, spec, "127.0.0.1", None)
    assert "password uses {port}" in str(exc.value) and "zq7" not in str(exc.value)
    # Braces in a password are literal: no format() that would choke on them.
    assert rollout.fill_check(0, {"type": "redis", "password": "p{w}}{", "port": 1}, "h", 2)["password"] == "p{w}}{"


def test_an_ipv6_host_is_bracketed_in_urls_only():
    spec = {"type": "http", "url": "http://{host}:{port}/h", "headers": {"X-Host": "{host}"}}
    filled = rollout.fill_check(0, spec, rollout.gate_host("::"), 18000)
    assert filled["url"] == "http://[::1]:18000/h" and filled["headers"] == {"X-Host": "::1"}
    # Brackets already written are kept (not doubled); IPv4 stays as it is.
    assert rollout.fill_check(0, {"type": "http", "url": "http://[{host}]:{port}/"}, "fd00::5", 1)["url"] == "http://[fd00::5]:1/"
    assert rollout.fill_check(0, spec, "127.0.0.1", 18000)["url"] == "http://127.0.0.1:18000/h"


def test_a_url_that_does_not_parse_fails_without_showing_it():
    with pytest.raises(rollout.TemplateError) as exc:
        rollout.fill_check(0, {"type": "http", "url": "http://u:zq-pw5@{host}:99999999/"}, "127.0.0.1", 1)
    assert "url is not a valid URL" in str(exc.value) and "zq-pw5" not in str(exc.value)


@pytest.mark.parametrize("ref, parsed", [
    ("shop:1.2", ("shop", "1.2", None)),
    ("registry.internal:5000/team/shop:1.2", ("registry.internal:5000/team/shop", "1.2", None)),
    ("registry.internal:5000/shop", ("registry.internal:5000/shop", None, None)),
    ("127.0.0.1:5000/shop@sha256:" + "a" * 64, ("127.0.0.1:5000/shop", None, "sha256:" + "a" * 64)),
    ("shop:1.2@sha256:" + "b" * 64, ("shop", "1.2", "sha256:" + "b" * 64)),
])
def test_image_references(ref, parsed):
    assert rollout.parse_image(ref) == parsed


def test_registry_of_a_repository():
    assert rollout.registry_of("127.0.0.1:5000/shop") == "127.0.0.1:5000"
    assert rollout.registry_of("registry.internal/shop") == "registry.internal"
    assert rollout.registry_of("localhost/shop") == "localhost"
    assert rollout.registry_of("team/shop") is None and rollout.registry_of("shop") is None


def test_ports_label_round_trip_and_gate_host():
    assert rollout.parse_ports(rollout.format_ports({9000: 18001, 8000: 18000})) == {8000: 18000, 9000: 18001}
    assert rollout.parse_ports("") == {} and rollout.parse_ports("x=1,2") == {}
    assert rollout.gate_host("0.0.0.0") == "127.0.0.1" and rollout.gate_host("10.0.0.5") == "10.0.0.5"


def test_history_and_pruning_follow_deployments_not_build_times():
    history = []
    for image in ("i1", "i2", "i1", "i3"):  # i1 redeployed: it moves to the front, no repeat
        history = rollout.next_history(history, image)
    assert history == ["i3", "i1", "i2"]
    assert rollout.images_to_prune(history, in_use=set(), keep=2) == ["i2"]
    assert rollout.images_to_prune(history, in_use={"i2"}, keep=2) == []
    assert rollout.images_to_prune(history, in_use=set(), keep=5) == []
    assert len(rollout.next_history(["x%d" % n for n in range(30)], "new")) == rollout.HISTORY_LIMIT


def test_history_label_round_trip():
    assert rollout.read_history({rollout.LABEL_HISTORY: "a,b"}) == ["a", "b"]
    assert rollout.read_history({}) == [] and rollout.read_history(None) == []
