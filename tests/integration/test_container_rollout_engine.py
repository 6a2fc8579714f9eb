"""container_rollout against the local Docker engine, with a test app built from the lab image."""

import json
import random
import urllib.request

import pytest

from ansible_collections.keel.platform.plugins.modules import container_rollout
from tests.support.webapp_images import build_images

SERVICE = "keel-it-shop"


@pytest.fixture(scope="module")
def images():
    return build_images({"1": True, "2": True, "broken": False})


@pytest.fixture
def service():
    import docker

    client = docker.from_env()
    yield SERVICE

    for c in client.containers.list(all=True, filters={"label": "keel.rollout.service=" + SERVICE}):
        c.remove(force=True)


@pytest.fixture(scope="module")
def port_base():
    return random.randint(3000, 3900) * 10


def args(image, port_base, **kw):
    base = dict(
        service=SERVICE, image=image, replicas=2, container_ports=[8000], port_base=port_base,
        env={"SHOP_MODE": "test"}, secrets={"SHOP_DB_PASSWORD": "rollout-secret-value"},
        healthcheck={"test": ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"], "interval": 1, "retries": 1},
        checks=[{"name": "health", "type": "http", "url": "http://{host}:{port}/health", "json_field": "status", "json_value": "ok"}],
        success_threshold=2, interval=0.5, timeout=60,
        stop_timeout=2,
    )
    base.update(kw)
    return base


def version_at(endpoint):
    port = list(endpoint["ports"].values())[0]
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as response:
        return json.loads(response.read())["version"]


def containers():
    import docker

    return sorted(c.name for c in docker.from_env().containers.list(all=True, filters={"label": "keel.rollout.service=" + SERVICE}))


def test_rollout_idempotence_update_and_rollback(run_module, images, service, port_base):
    failed, first = run_module(container_rollout.main, args(images["1"], port_base))
    assert not failed, first.get("msg")
    assert first["changed"] and first["generation"] == 1 and not first["rolled_back"]
    assert [version_at(e) for e in first["endpoints"]] == ["1", "1"]
    assert "rollout-secret-value" not in json.dumps(first)

    failed, again = run_module(container_rollout.main, args(images["1"], port_base))
    assert not failed and not again["changed"] and again["generation"] == 1

    failed, planned = run_module(container_rollout.main, dict(args(images["2"], port_base), _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and planned["changed"] and planned["retired"] == ["%s-g1-0" % SERVICE, "%s-g1-1" % SERVICE]
    assert containers() == ["%s-g1-0" % SERVICE, "%s-g1-1" % SERVICE]
    assert planned["diff"]["after"]["containers"] == ["%s-g2-0" % SERVICE, "%s-g2-1" % SERVICE]

    failed, second = run_module(container_rollout.main, args(images["2"], port_base))
    assert not failed, second.get("msg")
    assert second["generation"] == 2 and second["retired"] == ["%s-g1-0" % SERVICE, "%s-g1-1" % SERVICE]
    assert containers() == ["%s-g2-0" % SERVICE, "%s-g2-1" % SERVICE]
    assert [version_at(e) for e in second["endpoints"]] == ["2", "2"]
    # The new generation is on the other slot of host ports.
    assert set(e["ports"]["8000"] for e in second["endpoints"]).isdisjoint(e["ports"]["8000"] for e in first["endpoints"])

    failed, broken = run_module(container_rollout.main, args(images["broken"], port_base, timeout=8, failure_threshold=4))
    assert failed and broken["rolled_back"] is True
    assert "rolled back %s to the running version" % SERVICE in broken["msg"]
    assert "health (http): status 500, expected [200]" in broken["msg"]
    assert containers() == ["%s-g2-0" % SERVICE, "%s-g2-1" % SERVICE]
    assert [version_at(e) for e in broken["endpoints"]] == ["2", "2"]


def test_deploy_then_finalize_keeps_old_until_the_switch(run_module, images, service, port_base):
    failed, result = run_module(container_rollout.main, args(images["1"], port_base, replicas=1))
    assert not failed, result.get("msg")
    failed, deployed = run_module(container_rollout.main, args(images["2"], port_base, replicas=1, phase="deploy"))
    assert not failed and deployed["retire_pending"] == ["%s-g1-0" % SERVICE]
    assert containers() == ["%s-g1-0" % SERVICE, "%s-g2-0" % SERVICE]
    assert version_at(result["endpoints"][0]) == "1" and version_at(deployed["endpoints"][0]) == "2"

    failed, again = run_module(container_rollout.main, args(images["2"], port_base, replicas=1, phase="deploy"))
    assert not failed and not again["changed"] and again["retire_pending"] == ["%s-g1-0" % SERVICE]

    failed, final = run_module(container_rollout.main, args(images["2"], port_base, replicas=1, phase="finalize"))
    assert not failed and final["changed"] and final["retired"] == ["%s-g1-0" % SERVICE]
    assert containers() == ["%s-g2-0" % SERVICE]
    failed, final = run_module(container_rollout.main, args(images["2"], port_base, replicas=1, phase="finalize"))
    assert not failed and not final["changed"]


def test_bad_input_and_unreachable_engine(run_module, images, service, port_base):
    cases = [
        (dict(replicas=0), "replicas must be at least 1"),
        (dict(image="keel-test/webapp"), "has no tag"),
        (dict(port_base=65533), "needs host ports up to 65536; they must lie in 1-65535"),
        (dict(docker_host="unix:///nonexistent/docker.sock"), "cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        (dict(image="keel-test/webapp:never-built", pull="never"), "is not present and pull is never"),
        (dict(interval=0), "health gate: interval must be more than 0"),
    ]
    for overrides, message in cases:
        failed, result = run_module(container_rollout.main, dict(args(images["1"], port_base), **overrides))
        assert failed and message in result["msg"], (overrides, result["msg"])
    assert containers() == []


def test_old_images_beyond_keep_images_are_pruned(run_module, service, port_base):
    import docker

    client = docker.from_env()
    refs = build_images({"p1": True, "p2": True, "p3": True})
    ids = dict((tag, client.images.get(ref).id) for tag, ref in refs.items())
    for tag in ("p1", "p2"):
        failed, result = run_module(container_rollout.main, args(refs[tag], port_base, replicas=1, keep_images=2))
        assert not failed, result.get("msg")
    failed, result = run_module(container_rollout.main, args(refs["p3"], port_base, replicas=1, keep_images=2))
    assert not failed, result.get("msg")
    # The service ran p1, p2, p3: with keep_images 2, p1 goes; p2 and p3 stay (whatever their build times).
    assert result["pruned_images"] == [ids["p1"]]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(ids["p1"])
    assert client.images.get(ids["p3"]).id == ids["p3"] and client.images.get(ids["p2"]).id == ids["p2"]
    failed, again = run_module(container_rollout.main, args(refs["p3"], port_base, replicas=1, keep_images=2))
    assert not failed and not again["changed"] and again["pruned_images"] == []
