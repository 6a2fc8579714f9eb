"""container_rollout against the local Docker engine, with a test app built from the lab image."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import requests

from ansible_collections.keel.platform.plugins.module_utils import rollout_host
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
    # The secret files of generations removed here behind the module's back (it removes those it retires).
    shutil.rmtree("/var/lib/keel/container-rollout/secrets/" + SERVICE, ignore_errors=True)


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
    # p1 has a second tag and a name in another repository: the engine refuses to remove it by ID
    # without force (either alone is enough).
    others = [refs["p1"] + "-stable", "keel-it-other-repository:p1"]
    for other in others:
        client.images.get(refs["p1"]).tag(other)
    for tag in ("p1", "p2"):
        failed, result = run_module(container_rollout.main, args(refs[tag], port_base, replicas=1, keep_images=2))
        assert not failed, result.get("msg")
    failed, result = run_module(container_rollout.main, args(refs["p3"], port_base, replicas=1, keep_images=2))
    assert not failed, result.get("msg")
    # The service ran p1, p2, p3: with keep_images 2, p1 goes; p2 and p3 stay (whatever their build times).
    assert result["pruned_images"] == [ids["p1"]]
    for gone in [ids["p1"]] + others:
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(gone)
    assert client.images.get(ids["p3"]).id == ids["p3"] and client.images.get(ids["p2"]).id == ids["p2"]
    failed, again = run_module(container_rollout.main, args(refs["p3"], port_base, replicas=1, keep_images=2))
    assert not failed and not again["changed"] and again["pruned_images"] == []


# --- faults (issue 7) ----------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The module in a process of its own (as Ansible runs it), so that a test can kill it.
CHILD = """
import json, sys
sys.path[:0] = [%r, %r]
from tests.support.modules import call_module
from ansible_collections.keel.platform.plugins.modules import container_rollout
failed, result = call_module(container_rollout.main, json.load(sys.stdin))
print(json.dumps(result))
""" % (ROOT, os.path.join(ROOT, "collections"))


def start_child(module_args):
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdin.write(json.dumps(module_args))
    child.stdin.close()
    child.stdin = None  # written and closed: communicate() must not flush it again
    return child


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s" % what)


def running(name):
    import docker

    try:
        return docker.from_env().containers.get(name).status == "running"
    except docker.errors.NotFound:
        return False


def slow_gate(image, port_base, delay, **kw):
    """Args whose gate waits ``delay`` seconds on the slow health endpoint before it can pass."""
    return args(image, port_base, replicas=1, checks=[{"name": "health", "type": "http", "url": "http://{host}:{port}/health?delay=%d" % delay,
                                                       "json_field": "status", "json_value": "ok", "timeout": delay + 20}],
                success_threshold=1, healthcheck=None, **kw)


def kill_during_gate(module_args):
    """Run the module in a child, SIGKILL it once its new container runs and the gate waits."""
    child = start_child(module_args)
    try:
        wait_for(lambda: running("%s-g2-0-pending" % SERVICE), what="the new container to run under its -pending name")
        time.sleep(2)  # the gate's first request is now waiting on the slow endpoint
        assert child.poll() is None, child.communicate()
    finally:
        child.kill()
        child.wait()


def test_killed_between_start_and_gate_the_rerun_gates_before_retiring(run_module, images, service, port_base):
    failed, first = run_module(container_rollout.main, slow_gate(images["1"], port_base, 0))
    assert not failed, first.get("msg")
    kill_during_gate(slow_gate(images["2"], port_base, 6))
    assert containers() == ["%s-g1-0" % SERVICE, "%s-g2-0-pending" % SERVICE]

    # The identical run again: generation 2 is gated now; generation 1 is retired only after that.
    # (Before the fix, it retired generation 1 without gating generation 2.)
    started = time.monotonic()
    failed, rerun = run_module(container_rollout.main, slow_gate(images["2"], port_base, 6))
    assert not failed, rerun.get("msg")
    assert time.monotonic() - started >= 6 and rerun["gate"]["checks"][0]["name"] == "%s-g2-0 health" % SERVICE
    assert rerun["generation"] == 2 and rerun["retired"] == ["%s-g1-0" % SERVICE]
    assert containers() == ["%s-g2-0" % SERVICE] and version_at(rerun["endpoints"][0]) == "2"


def test_killed_deploy_is_gated_on_the_rerun_and_a_failing_one_removed(run_module, images, service, port_base):
    failed, first = run_module(container_rollout.main, slow_gate(images["1"], port_base, 0))
    assert not failed, first.get("msg")
    kill_during_gate(slow_gate(images["broken"], port_base, 6, phase="deploy"))
    assert containers() == ["%s-g1-0" % SERVICE, "%s-g2-0-pending" % SERVICE]

    failed, final = run_module(container_rollout.main, slow_gate(images["broken"], port_base, 1, phase="finalize"))
    assert failed and "never passed its gate" in final["msg"] and final["rolled_back"] is False

    # Before the fix: changed=false and the endpoints of the unchecked (broken) container.
    failed, rerun = run_module(container_rollout.main, slow_gate(images["broken"], port_base, 1, phase="deploy", timeout=8, failure_threshold=2))
    assert failed and rerun["rolled_back"] is True, rerun
    assert "health (http): status 500" in rerun["msg"]
    assert "The host holds generation 1, gated (%s-g1-0)." % SERVICE in rerun["msg"]
    assert containers() == ["%s-g1-0" % SERVICE] and version_at(first["endpoints"][0]) == "1"


def test_port_clash_fails_before_a_start_or_removes_what_failed_to_start(run_module, images, service, port_base, monkeypatch):
    failed, first = run_module(container_rollout.main, args(images["1"], port_base, replicas=1))
    assert not failed, first.get("msg")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port_base + 1))  # generation 2's slot
    squatter.listen(1)
    try:
        failed, clash = run_module(container_rollout.main, args(images["2"], port_base, replicas=1))
        assert failed and "host port(s) %d on 127.0.0.1 are in use" % (port_base + 1) in clash["msg"]
        assert clash["rolled_back"] is False and containers() == ["%s-g1-0" % SERVICE]

        # Without the check the engine itself refuses the start: the created container goes.
        monkeypatch.setattr(rollout_host, "ports_in_use", lambda host_ip, ports: [])
        failed, clash = run_module(container_rollout.main, args(images["2"], port_base, replicas=1))
        assert failed and "cannot start generation 2: start container %s-g2-0-pending" % SERVICE in clash["msg"], clash["msg"]
        assert clash["rolled_back"] is True and "The new containers were removed" in clash["msg"]
        assert "The host holds generation 1, gated (%s-g1-0)." % SERVICE in clash["msg"]
        assert containers() == ["%s-g1-0" % SERVICE] and version_at(first["endpoints"][0]) == "1"
    finally:
        squatter.close()


def test_a_second_deploy_while_one_is_pending_fails_and_changes_nothing(run_module, images, service, port_base):
    failed, first = run_module(container_rollout.main, args(images["1"], port_base, replicas=1))
    assert not failed, first.get("msg")
    failed, deployed = run_module(container_rollout.main, args(images["2"], port_base, replicas=1, phase="deploy"))
    assert not failed, deployed.get("msg")
    for phase in ("full", "deploy"):
        failed, second = run_module(container_rollout.main, args(images["1"], port_base, replicas=1, phase=phase, env={"SHOP_MODE": "other"}))
        assert failed and "a deploy is pending: generation 2 (%s-g2-0)" % SERVICE in second["msg"]
        assert "Nothing was changed." in second["msg"] and second["rolled_back"] is False
        assert containers() == ["%s-g1-0" % SERVICE, "%s-g2-0" % SERVICE]
    assert version_at(first["endpoints"][0]) == "1" and version_at(deployed["endpoints"][0]) == "2"


def test_an_api_error_while_retiring_leaves_the_new_generation_serving(run_module, images, service, port_base, monkeypatch):
    import docker

    failed, first = run_module(container_rollout.main, args(images["1"], port_base, replicas=1))
    assert not failed, first.get("msg")
    real_stop = docker.APIClient.stop

    def stop(self, container, timeout=None):
        if docker.APIClient.inspect_container(self, container)["Name"] == "/%s-g1-0" % SERVICE:
            # What dockerd answers when it cannot stop a container in time.
            response = requests.Response()
            response.status_code = 500
            explanation = "cannot stop container: tried to kill container, but did not receive an exit event"
            raise docker.errors.APIError("500 Server Error", response=response, explanation=explanation)
        return real_stop(self, container, timeout=timeout)

    monkeypatch.setattr(docker.APIClient, "stop", stop)
    failed, second = run_module(container_rollout.main, args(images["2"], port_base, replicas=1))
    assert failed and second["rolled_back"] is False
    assert "generation 2 is gated and serving, but retiring the old containers failed: stop container %s-g1-0" % SERVICE in second["msg"]
    assert "The host holds generation 1, gated (%s-g1-0); generation 2, gated (%s-g2-0)." % (SERVICE, SERVICE) in second["msg"]
    assert version_at(second["endpoints"][0]) == "2"

    monkeypatch.setattr(docker.APIClient, "stop", real_stop)
    failed, again = run_module(container_rollout.main, args(images["2"], port_base, replicas=1))
    assert not failed and again["retired"] == ["%s-g1-0" % SERVICE] and containers() == ["%s-g2-0" % SERVICE]


def test_app_tier_options_on_the_real_engine(run_module, images, service, port_base):
    import docker

    client = docker.from_env()
    network = client.networks.create("keel-it-rollout-net")
    try:
        common = dict(networks=[{"name": network.name}], tmpfs=["/tmp", "/run/app:size=1m,mode=0700"],
                      ulimits=[{"name": "nofile", "soft": 1024, "hard": 2048}], secret_env={"SHOP_API_TOKEN": "env-token-zq1"},
                      command=["python3", "/app.py"], entrypoint=["/usr/bin/env"])
        for image in (images["1"], images["2"]):
            failed, result = run_module(container_rollout.main, args(image, port_base, replicas=1, **common))
            assert not failed, result.get("msg")
        attrs = client.containers.get("%s-g2-0" % SERVICE).attrs
        assert attrs["NetworkSettings"]["Networks"][network.name]["Aliases"][:1] == [SERVICE]  # same name as generation 1 had
        assert attrs["HostConfig"]["Tmpfs"] == {"/tmp": "", "/run/app": "size=1m,mode=0700"}
        assert attrs["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert attrs["Config"]["Entrypoint"] == ["/usr/bin/env"] and attrs["Config"]["Cmd"] == ["python3", "/app.py"]
        assert "SHOP_MODE=test" in attrs["Config"]["Env"] and "SHOP_API_TOKEN=env-token-zq1" in attrs["Config"]["Env"]
        # The file secret is a read-only file for the container's user, and nowhere in inspect.
        assert "rollout-secret-value" not in json.dumps(attrs)
        out = client.containers.get("%s-g2-0" % SERVICE).exec_run(["cat", "/run/secrets/SHOP_DB_PASSWORD"], user="65534:65534")
        assert out.exit_code == 0 and out.output == b"rollout-secret-value"
        out = client.containers.get("%s-g2-0" % SERVICE).exec_run(["sh", "-c", "echo x > /run/secrets/SHOP_DB_PASSWORD"], user="65534:65534")
        assert out.exit_code != 0
        # Another container on the network reaches the service by its alias.
        out = client.containers.get("%s-g2-0" % SERVICE).exec_run(
            ["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://%s:8000/').read().decode())" % SERVICE])
        assert out.exit_code == 0 and json.loads(out.output)["version"] == "2"
    finally:
        for c in client.containers.list(all=True, filters={"label": "keel.rollout.service=" + SERVICE}):
            c.remove(force=True)
        network.remove()


# --- a private registry (Debian's docker-registry) --------------------------------------------------

REGISTRY_USER = "keel-deploy"
REGISTRY_PASSWORD = "registry-pass-zq2"


@pytest.fixture(scope="module")
def registry(images, tmp_path_factory):
    """A registry that requires a login, on a free loopback port, holding webapp:1 as pushed."""
    import docker

    binary = shutil.which("docker-registry")
    if not binary or not shutil.which("htpasswd"):
        pytest.skip("needs the Debian packages docker-registry and apache2-utils")
    directory = tmp_path_factory.mktemp("registry")
    htpasswd = subprocess.run(["htpasswd", "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD], check=True, stdout=subprocess.PIPE, text=True).stdout
    (directory / "htpasswd").write_text(htpasswd)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (directory / "config.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n"
        "auth:\n  htpasswd:\n    realm: keel-test\n    path: %s\n" % (directory / "data", port, directory / "htpasswd"))
    log = open(str(directory / "registry.log"), "w")
    server = subprocess.Popen([binary, "serve", str(directory / "config.yml")], stdout=log, stderr=log)

    def answers():
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=1)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False
        return False

    try:
        wait_for(answers, timeout=30, what="the registry")
        client = docker.from_env()
        repository = "127.0.0.1:%d/keel-test/webapp" % port
        client.images.get(images["1"]).tag(repository, "1")
        auth = dict(username=REGISTRY_USER, password=REGISTRY_PASSWORD)
        errors = [e for e in client.images.push(repository, tag="1", auth_config=auth, stream=True, decode=True) if e.get("error")]
        assert not errors, errors
        digests = [d for d in client.images.get(repository + ":1").attrs["RepoDigests"] if d.startswith(repository + "@")]
        assert digests
        digest = digests[0].split("@")[1]
        yield dict(repository=repository, digest=digest, image_id=client.images.get(images["1"]).id)
        client.images.remove(repository + ":1")
    finally:
        server.terminate()
        server.wait()
        log.close()


def test_digest_from_a_private_registry_runs_the_exact_image(run_module, registry, service, port_base):
    ref = "%s@%s" % (registry["repository"], registry["digest"])
    auth = dict(username=REGISTRY_USER, password=REGISTRY_PASSWORD)
    failed, result = run_module(container_rollout.main, args(ref, port_base, replicas=1, pull="always", registry_auth=auth))
    assert not failed, result.get("msg")
    assert result["image_id"] == registry["image_id"] and version_at(result["endpoints"][0]) == "1"
    import docker

    assert docker.from_env().containers.get("%s-g1-0" % SERVICE).attrs["Image"] == registry["image_id"]
    assert REGISTRY_PASSWORD not in json.dumps(result)
    failed, again = run_module(container_rollout.main, args(ref, port_base, replicas=1, pull="always", registry_auth=auth))
    assert not failed and not again["changed"]
    failed, planned = run_module(container_rollout.main, dict(args(ref, port_base, replicas=1, pull="always", registry_auth=auth),
                                                              _ansible_check_mode=True))
    assert not failed and not planned["changed"], planned


def test_private_registry_login_failure(run_module, registry, service, port_base):
    ref = "%s:1" % registry["repository"]
    wrong = "wrong-pass-zq3"
    failed, result = run_module(container_rollout.main, args(ref, port_base, replicas=1, pull="always",
                                                             registry_auth=dict(username=REGISTRY_USER, password=wrong)))
    assert failed and "registry login failed" in result["msg"] and "Nothing was pulled or started." in result["msg"]
    assert wrong not in json.dumps(result) and result["rolled_back"] is False and containers() == []
    # No credentials at all: the registry refuses the pull.
    failed, result = run_module(container_rollout.main, args(ref, port_base, replicas=1, pull="always"))
    assert failed and "cannot pull %s" % ref in result["msg"] and "Nothing was changed." in result["msg"]
    assert containers() == []


# --- no_log, through ansible-playbook ------------------------------------------------------------------

def test_no_secret_in_anything_the_run_prints(images, service, port_base, tmp_path):
    secrets = dict(file="file-secret-zq4", env="env-secret-zq5", registry="registry-secret-zq6", check="check-secret-zq7")
    task = dict(service=SERVICE, image=images["1"], replicas=1, container_ports=[8000], port_base=port_base,
                secrets={"db_password": secrets["file"]}, secret_env={"API_TOKEN": secrets["env"]},
                registry_auth={"username": "deploy", "password": secrets["registry"]}, interval=0.5, stop_timeout=2)
    failing = dict(task, image=images["2"], timeout=3, checks=[{"name": "cache", "type": "redis", "host": "{host}", "port": 1,
                                                                "password": secrets["check"], "timeout": 1}])
    playbook = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "deploy", "keel.platform.container_rollout": task},
        {"name": "a failing gate with a secret in its check", "keel.platform.container_rollout": failing, "ignore_errors": True},
        {"name": "a malformed template", "keel.platform.container_rollout": dict(failing, checks=[dict(failing["checks"][0], port="{port}x")]),
         "ignore_errors": True},
    ]}]
    (tmp_path / "play.yml").write_text(json.dumps(playbook))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "collections"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvvv", "-i", "localhost,", "-c", "local",
                          "-e", "ansible_python_interpreter=" + sys.executable, str(tmp_path / "play.yml")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    output = run.stdout
    assert "ok: [localhost]" in output or "changed: [localhost]" in output, output[-3000:]
    assert output.count("...ignoring") == 2, output[-3000:]
    assert "health gate: checks[0]" in output and "port must be a number or {port}" in output
    for name, value in secrets.items():
        assert value not in output, "the %s secret appears in the output" % name
    import docker

    attrs = json.dumps(docker.from_env().containers.get("%s-g1-0" % SERVICE).attrs)
    assert secrets["file"] not in attrs and secrets["check"] not in attrs


def test_two_runs_at_once_the_second_waits_or_fails_and_never_touches_the_first(run_module, images, service, port_base):
    first = start_child(slow_gate(images["1"], port_base, 5))
    try:
        wait_for(lambda: running("%s-g1-0-pending" % SERVICE), what="the first run's container")
        failed, second = run_module(container_rollout.main, slow_gate(images["2"], port_base, 0, lock_timeout=1))
        assert failed and "another container_rollout run holds" in second["msg"] and "Nothing was changed." in second["msg"]
        assert containers() == ["%s-g1-0-pending" % SERVICE]
        # With time to wait, the same run as the first waits for it and then finds nothing to do.
        started = time.monotonic()
        failed, third = run_module(container_rollout.main, slow_gate(images["1"], port_base, 5, lock_timeout=60))
        assert not failed and not third["changed"] and time.monotonic() - started > 1, third
        out, err = first.communicate(timeout=60)
        result = json.loads(out)
        assert not result.get("failed"), (result.get("msg"), err)
        assert result["generation"] == 1 and containers() == ["%s-g1-0" % SERVICE]
    finally:
        first.kill()
        first.wait()


def test_a_run_told_to_stop_during_the_gate_removes_what_it_started(run_module, images, service, port_base):
    failed, first = run_module(container_rollout.main, slow_gate(images["1"], port_base, 0))
    assert not failed, first.get("msg")
    child = start_child(slow_gate(images["2"], port_base, 20))
    try:
        wait_for(lambda: running("%s-g2-0-pending" % SERVICE), what="the new container to run under its -pending name")
        time.sleep(1)
        child.send_signal(signal.SIGTERM)  # what a task timeout or a stopped controller sends
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    result = json.loads(out)
    assert result["failed"] and result["rolled_back"] is True and "Traceback" not in out + err
    assert "gating generation 2 stopped (Interrupted: signal 15)" in result["msg"]
    assert containers() == ["%s-g1-0" % SERVICE] and version_at(first["endpoints"][0]) == "1"


def test_check_mode_with_pull_always_sees_a_moved_tag(run_module, images, registry, service, port_base):
    import docker

    client = docker.from_env()
    auth = dict(username=REGISTRY_USER, password=REGISTRY_PASSWORD)
    ref = "%s:live" % registry["repository"]

    def push(version):
        client.images.get(images[version]).tag(registry["repository"], "live")
        errors = [e for e in client.images.push(registry["repository"], tag="live", auth_config=auth, stream=True, decode=True) if e.get("error")]
        assert not errors, errors

    try:
        push("1")
        client.images.remove(ref)  # the run pulls it
        failed, first = run_module(container_rollout.main, args(ref, port_base, replicas=1, pull="always", registry_auth=auth))
        assert not failed, first.get("msg")
        failed, planned = run_module(container_rollout.main, dict(args(ref, port_base, replicas=1, pull="always", registry_auth=auth),
                                                                  _ansible_check_mode=True))
        assert not failed and not planned["changed"]
        push("2")  # the tag moves in the registry (and locally, as a push leaves it)
        client.images.get(images["1"]).tag(registry["repository"], "live")  # locally it still names version 1
        failed, planned = run_module(container_rollout.main, dict(args(ref, port_base, replicas=1, pull="always", registry_auth=auth),
                                                                  _ansible_check_mode=True))
        assert not failed and planned["changed"] and planned["image_id"] is None, planned
        assert client.images.get(ref).id == client.images.get(images["1"]).id  # check mode pulled nothing
        failed, second = run_module(container_rollout.main, args(ref, port_base, replicas=1, pull="always", registry_auth=auth))
        assert not failed and second["image_id"] == client.images.get(images["2"]).id and version_at(second["endpoints"][0]) == "2"
    finally:
        try:
            client.images.remove(ref)
        except docker.errors.ImageNotFound:
            pass


def test_remove_takes_every_generation_even_paused_and_keeps_protected_images(run_module, images, service, port_base):
    import docker

    failed, first = run_module(container_rollout.main, args(images["1"], port_base, replicas=1))
    assert not failed, first.get("msg")
    failed, deployed = run_module(container_rollout.main, args(images["2"], port_base, replicas=1, phase="deploy"))
    assert not failed, deployed.get("msg")
    # A paused container counts as running to the engine, which refuses to remove it without force.
    docker.from_env().containers.get("%s-g2-0" % SERVICE).pause()
    secrets = "/var/lib/keel/container-rollout/secrets/" + SERVICE
    assert os.path.isdir(secrets)
    # The test images serve the other tests: protected (what the app role does for the services that stay).
    keep = [images["1"], images["2"], images["broken"]]
    remove = dict(service=SERVICE, phase="remove", stop_timeout=2, drain_delay=0, protect_images=keep)
    failed, preview = run_module(container_rollout.main, dict(remove, _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and preview["changed"] and preview["retired"] == ["%s-g1-0" % SERVICE, "%s-g2-0" % SERVICE]
    assert containers() == ["%s-g1-0" % SERVICE, "%s-g2-0" % SERVICE] and preview["diff"]["after"] == {"containers": []}
    failed, result = run_module(container_rollout.main, remove)
    assert not failed, result.get("msg")
    assert result["changed"] and result["retired"] == preview["retired"] and result["pruned_images"] == []
    assert containers() == [] and not os.path.exists(secrets)
    for ref in keep:
        docker.from_env().images.get(ref)  # still there
    failed, again = run_module(container_rollout.main, remove)
    assert not failed and not again["changed"]
