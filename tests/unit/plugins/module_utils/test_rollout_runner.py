"""container_rollout's run (rollout_runner) and engine adapter (docker_engine) against a fake
Docker API that fails where the real engine fails (tests/support/fake_docker.py)."""

import os

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.keel.platform.plugins.module_utils import docker_engine
from ansible_collections.keel.platform.plugins.module_utils import gate as gate_loop
from ansible_collections.keel.platform.plugins.module_utils import rollout
from ansible_collections.keel.platform.plugins.module_utils import rollout_host
from ansible_collections.keel.platform.plugins.module_utils import rollout_runner
from ansible_collections.keel.platform.plugins.module_utils.rollout_runner import RolloutFailed, Runner
from ansible_collections.keel.platform.plugins.modules import container_rollout
from tests.support.fake_docker import FakeAPI, api_error

IMAGE = "registry.test:5000/shop:1"


@pytest.fixture
def api(monkeypatch):
    fake = FakeAPI()
    fake.add_image(IMAGE, user="1000:1000")
    fake.add_image("registry.test:5000/shop:2", user="1000:1000")
    monkeypatch.setattr(docker_engine, "connect", lambda base_url, timeout=60: docker_engine.Engine(fake))
    monkeypatch.setattr(rollout_host, "ports_in_use", lambda host_ip, ports: [])
    return fake


@pytest.fixture
def params(tmp_path):
    def make(**kw):
        args = dict(service="shop", image=IMAGE, replicas=2, container_ports=[8000], port_base=18000,
                    lock_dir=str(tmp_path), secrets_dir=str(tmp_path / "secrets"), lock_timeout=0.3)
        args.update(kw)
        result = ArgumentSpecValidator(container_rollout.argument_spec()).validate(args)
        assert not result.error_messages, result.error_messages
        return result.validated_parameters
    return make


@pytest.fixture
def gate(monkeypatch):
    """The gate's verdicts, in order (default: pass). Each item: True, False or an exception."""
    class Verdicts(list):
        pass

    verdicts = Verdicts()
    seen = []

    def run(checks, *_args):
        seen.append([name for name, _kind, _call in checks])
        verdict = verdicts.pop(0) if verdicts else True
        if not isinstance(verdict, bool):
            raise verdict  # pylint: disable=raising-bad-type
        report = dict(rounds=1, elapsed=0.1, reason="passed" if verdict else "failed", checks=[])
        return verdict, report

    monkeypatch.setattr(gate_loop, "run", run)
    monkeypatch.setattr(gate_loop, "failure_message", lambda report: "health (http): status 500, expected [200]")
    verdicts.seen = seen
    return verdicts


CHECKS = [{"name": "health", "type": "http", "url": "http://{host}:{port}/health"}]


def run(params, check_mode=False, sleep=None, **kw):
    return Runner(params(**kw), check_mode=check_mode, sleep=sleep or (lambda s: None)).execute()


def fails(params, **kw):
    with pytest.raises(RolloutFailed) as exc:
        run(params, **kw)
    return exc.value


def test_first_rollout_runs_the_exact_image_id_and_records_the_gate(api, params, gate):
    result = run(params, checks=CHECKS)
    assert result["changed"] and result["generation"] == 1 and not result["rolled_back"]
    assert api.names() == ["shop-g1-0", "shop-g1-1"]
    for c in api.store.values():
        assert c["Image"] == api.refs[IMAGE] and c["Image"].startswith("sha256:")  # the ID, not the tag
        assert c["State"] == "running"
    # Created under -pending names, gated, then renamed: the gate record.
    renames = [call for call in api.calls if call[0] == "rename"]
    assert [call[2] for call in renames] == ["shop-g1-0", "shop-g1-1"]
    assert gate.seen == [["shop-g1-0 health", "shop-g1-1 health"]]
    assert [e["ports"] for e in result["endpoints"]] == [{"8000": 18000}, {"8000": 18001}]
    again = run(params, checks=CHECKS)
    assert not again["changed"] and again["endpoints"] == result["endpoints"]


def start_then_die(api, params, monkeypatch, **kw):
    """A run killed between start and gate: the gate never returns and nothing cleans up."""
    class Killed(BaseException):
        pass

    def die(self, generation, members):
        raise Killed()

    with monkeypatch.context() as m:
        m.setattr(Runner, "gate_and_record", die)
        with pytest.raises(Killed):
            run(params, **kw)


def test_killed_between_start_and_gate_the_rerun_gates_before_retiring(api, params, gate, monkeypatch):
    run(params, replicas=1, checks=CHECKS)
    start_then_die(api, params, monkeypatch, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert api.names() == ["shop-g1-0", "shop-g2-0-pending"]
    # The same run again: generation 2 is gated now (before, g1 was retired without any gate).
    gate.append(True)
    result = run(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert gate.seen[-1] == ["shop-g2-0 health"]
    assert result["generation"] == 2 and result["retired"] == ["shop-g1-0"]
    assert api.names() == ["shop-g2-0"]


def test_killed_then_a_failing_gate_leaves_the_old_generation_alone(api, params, gate, monkeypatch):
    run(params, replicas=1, checks=CHECKS)
    start_then_die(api, params, monkeypatch, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    gate.append(False)
    exc = fails(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert exc.result["rolled_back"] is True and api.names() == ["shop-g1-0"]
    assert "The host holds generation 1, gated (shop-g1-0)." in exc.msg


def test_killed_deploy_never_returns_unchecked_endpoints(api, params, gate, monkeypatch):
    run(params, replicas=1, checks=CHECKS)
    start_then_die(api, params, monkeypatch, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2", phase="deploy")
    with pytest.raises(RolloutFailed) as exc:
        run(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2", phase="finalize")
    assert "never passed its gate" in exc.value.msg and api.names() == ["shop-g1-0", "shop-g2-0-pending"]
    gate.append(True)
    result = run(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2", phase="deploy")
    assert result["changed"] and gate.seen[-1] == ["shop-g2-0 health"]
    assert [e["container"] for e in result["endpoints"]] == ["shop-g2-0"] and result["retire_pending"] == ["shop-g1-0"]
    assert api.names() == ["shop-g1-0", "shop-g2-0"]


def test_leftover_of_another_configuration_is_removed_and_the_slot_reused(api, params, gate, monkeypatch):
    run(params, replicas=1)
    start_then_die(api, params, monkeypatch, replicas=1, image="registry.test:5000/shop:2")
    result = run(params, replicas=1, env={"A": "1"})
    assert result["discarded"] == ["shop-g2-0-pending"] and result["generation"] == 3
    assert api.names() == ["shop-g3-0"] and result["endpoints"][0]["ports"] == {"8000": 18001}


def test_killed_while_renaming_the_record_is_finished(api, params, gate, monkeypatch):
    run(params)
    calls = []

    def killed(*_args):
        raise SystemExit("killed")

    def rename_once(container, name):
        calls.append(name)
        if len(calls) == 2:
            raise SystemExit("killed")

    with monkeypatch.context() as m:
        api.faults["rename"] = rename_once
        m.setattr(rollout_runner.Runner, "abandon", killed)
        with pytest.raises(SystemExit):
            run(params, image="registry.test:5000/shop:2")
    api.faults.clear()
    assert api.names() == ["shop-g1-0", "shop-g1-1", "shop-g2-0", "shop-g2-1-pending"]
    result = run(params, image="registry.test:5000/shop:2")
    assert api.names() == ["shop-g2-0", "shop-g2-1"] and result["retired"] == ["shop-g1-0", "shop-g1-1"]


def test_a_second_deploy_while_one_is_pending_fails_and_touches_nothing(api, params, gate):
    run(params, replicas=1)
    run(params, replicas=1, image="registry.test:5000/shop:2", phase="deploy")
    before = api.names()
    exc = fails(params, replicas=1, env={"NEW": "1"})
    assert "a deploy is pending: generation 2 (shop-g2-0) was deployed beside generation(s) 1 (shop-g1-0)" in exc.msg
    assert api.names() == before and exc.result["rolled_back"] is False


def test_abort_undoes_a_pending_deploy_and_then_changes_nothing(api, params, gate):
    first = run(params, checks=CHECKS)
    run(params, checks=CHECKS, image="registry.test:5000/shop:2", phase="deploy")
    assert "undo it with phase=abort" in fails(params, checks=CHECKS).msg
    preview = run(params, check_mode=True, phase="abort")
    assert preview["changed"] and preview["retired"] == ["shop-g2-0", "shop-g2-1"] and len(api.names()) == 4
    events = []
    api.faults["stop"] = lambda cid, **kw: events.append("stop")
    result = run(params, phase="abort", image=None, drain_delay=2, sleep=lambda s: events.append(("sleep", s)))
    assert result["changed"] and result["retired"] == ["shop-g2-0", "shop-g2-1"] and result["generation"] == 1
    assert result["endpoints"] == first["endpoints"] and events == [("sleep", 2), "stop", "stop"]
    assert api.names() == ["shop-g1-0", "shop-g1-1"]
    again = run(params, phase="abort")
    assert not again["changed"] and again["retired"] == [] and api.names() == ["shop-g1-0", "shop-g1-1"]
    # The previous state is back: the old configuration is up to date, a new deploy goes ahead.
    assert not run(params, checks=CHECKS)["changed"]
    assert run(params, checks=CHECKS, image="registry.test:5000/shop:2")["generation"] == 2


def test_abort_removes_an_ungated_leftover_and_never_the_only_generation(api, params, gate, monkeypatch):
    run(params, checks=CHECKS, replicas=1)

    def killed(*_args):
        raise KeyboardInterrupt()

    monkeypatch.setattr(gate_loop, "run", killed)
    api.faults["remove_container"] = lambda cid, **kw: api_error(500, "engine busy")
    with pytest.raises(RolloutFailed):
        run(params, checks=CHECKS, replicas=1, image="registry.test:5000/shop:2")
    api.faults.clear()
    assert api.names() == ["shop-g1-0", "shop-g2-0-pending"]
    result = run(params, phase="abort")
    assert result["changed"] and result["discarded"] == ["shop-g2-0-pending"] and result["retired"] == []
    assert api.names() == ["shop-g1-0"] and result["endpoints"][0]["container"] == "shop-g1-0"
    assert "image is required" in fails(params, image=None).msg


def test_port_clash_at_start_removes_the_new_container_and_keeps_the_old(api, params, gate):
    run(params, replicas=1)
    api.faults["start"] = lambda cid: api_error(500, "driver failed programming external connectivity: Bind for 127.0.0.1:18001 "
                                                     "failed: port is already allocated")
    exc = fails(params, replicas=1, image="registry.test:5000/shop:2")
    assert "port is already allocated" in exc.msg and "The new containers were removed" in exc.msg
    assert exc.result["rolled_back"] is True and api.names() == ["shop-g1-0"]
    assert "The host holds generation 1, gated (shop-g1-0)." in exc.msg


def test_busy_host_ports_fail_before_anything_starts(api, params, gate, monkeypatch):
    monkeypatch.setattr(rollout_host, "ports_in_use", lambda host_ip, ports: [ports[1]])
    exc = fails(params)
    assert "host port(s) 18001 on 127.0.0.1 are in use" in exc.msg and api.names() == []
    assert not [c for c in api.calls if c[0] == "create_container"]


def test_the_second_replica_failing_to_start_removes_the_first(api, params, gate):
    api.faults["create_container"] = lambda image, name: api_error(500, "boom") if name.endswith("-1-pending") else None
    exc = fails(params)
    assert exc.result["rolled_back"] is True and api.names() == []
    assert "cannot start generation 1: create container shop-g1-1-pending: boom" in exc.msg


@pytest.mark.parametrize("method, where", [
    ("inspect_image", "cannot look up image"),
    ("containers", "list the containers of shop"),
    ("ping", "cannot reach the Docker engine"),
])
def test_api_errors_before_any_change_say_nothing_changed(api, params, gate, method, where):
    run(params)
    api.faults[method] = lambda *a, **k: api_error(500, "engine on fire")
    exc = fails(params, image="registry.test:5000/shop:2")
    assert where in exc.msg and "engine on fire" in exc.msg and "Nothing was changed." in exc.msg
    assert exc.result["rolled_back"] is False
    api.faults.clear()
    assert api.names() == ["shop-g1-0", "shop-g1-1"]


def test_an_api_error_in_the_gate_removes_the_new_generation(api, params, gate):
    run(params, replicas=1, checks=CHECKS)
    gate.append(docker_engine.EngineError("inspect container", api_error(500, "gate went wrong")))
    exc = fails(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert exc.result["rolled_back"] is True and api.names() == ["shop-g1-0"]
    assert "gating generation 2 stopped" in exc.msg and "its containers were removed" in exc.msg


def test_a_failed_removal_after_a_failed_gate_says_what_is_left(api, params, gate):
    run(params, replicas=1, checks=CHECKS)
    gate.append(False)
    api.faults["remove_container"] = lambda cid: api_error(500, "device busy")
    exc = fails(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert exc.result["rolled_back"] is False and exc.result["left_behind"] == ["shop-g2-0-pending (device busy)"]
    assert "generation 2, NOT gated (shop-g2-0-pending)" in exc.msg
    api.faults.clear()
    result = run(params, replicas=1, checks=CHECKS)  # the next run removes the leftover
    assert result["discarded"] == ["shop-g2-0-pending"] and api.names() == ["shop-g1-0"]


def test_an_api_error_while_retiring_leaves_the_new_generation_serving(api, params, gate):
    run(params)
    api.faults["stop"] = lambda cid: api_error(500, "stop timed out") if api._container(cid)["Name"] == "shop-g1-1" else None
    exc = fails(params, image="registry.test:5000/shop:2")
    assert "generation 2 is gated and serving, but retiring the old containers failed" in exc.msg
    assert "stop timed out" in exc.msg and "Retired: shop-g1-0." in exc.msg
    assert exc.result["rolled_back"] is False and exc.result["retired"] == ["shop-g1-0"]
    assert api.names() == ["shop-g1-1", "shop-g2-0", "shop-g2-1"]
    api.faults.clear()
    result = run(params, image="registry.test:5000/shop:2")  # the next run finishes the retirement
    assert result["retired"] == ["shop-g1-1"] and api.names() == ["shop-g2-0", "shop-g2-1"]


def test_an_api_error_while_pruning_fails_with_the_state(api, params, gate):
    for tag in ("2", "3"):
        api.add_image("registry.test:5000/shop:%s" % tag)
    run(params, keep_images=1)
    api.faults["remove_image"] = lambda image: api_error(500, "layer locked")
    exc = fails(params, keep_images=1, image="registry.test:5000/shop:2")
    assert "generation 2 is gated and serving, but pruning old images failed" in exc.msg and "layer locked" in exc.msg
    assert exc.result["rolled_back"] is False and api.names() == ["shop-g2-0", "shop-g2-1"]


def test_module_failures_are_fail_json_without_a_traceback(api, tmp_path, run_module, monkeypatch):
    module_args = dict(service="shop", image=IMAGE, lock_dir=str(tmp_path), secrets_dir=str(tmp_path / "s"),
                       secrets={"db": "zq-secret-1"}, checks=[{"type": "redis", "host": "{host}", "port": 1, "password": "zq-secret-2"}])
    api.faults["create_container"] = lambda image, name: RuntimeError("socket closed while creating %s" % name)
    failed, result = run_module(container_rollout.main, module_args)
    assert failed and "exception" not in result and "Traceback" not in str(result)
    assert "cannot start generation 1: create container shop-g1-0-pending: socket closed" in result["msg"]
    assert result["rolled_back"] is False and api.names() == []
    # A bug (any exception the run does not expect) still ends in fail_json with the host's state, and
    # a secret that made it into the exception's text is masked.
    api.faults.clear()

    def broken_plan(*_args, **_kwargs):
        raise KeyError("zq-secret-2")

    monkeypatch.setattr(rollout, "plan", broken_plan)
    failed, result = run_module(container_rollout.main, module_args)
    assert failed and "exception" not in result and "Traceback" not in str(result)
    assert "container_rollout stopped on an unexpected KeyError" in result["msg"] and "The host holds no container of shop." in result["msg"]
    assert "zq-secret" not in str(result)


def test_check_header_values_and_url_credentials_are_hidden(api, tmp_path, run_module, gate):
    module_args = dict(service="shop", image=IMAGE, lock_dir=str(tmp_path), secrets_dir=str(tmp_path / "s"),
                       container_ports=[8000], port_base=18000,
                       checks=[{"type": "http", "url": "http://admin:zq-urlpass-9@{host}:{port}/h",
                                "headers": {"Authorization": "Bearer zq-token-7"}}])
    failed, result = run_module(container_rollout.main, module_args)
    assert not failed, result
    assert "zq-token-7" not in str(result) and "zq-urlpass-9" not in str(result)
    assert result["invocation"]["module_args"]["checks"][0]["headers"]["Authorization"] != "Bearer zq-token-7"


def test_lock_the_second_run_waits_then_fails_and_touches_nothing(api, params, gate, tmp_path):
    run(params)
    held = rollout_host.ServiceLock(str(tmp_path), "shop", 1).acquire()
    try:
        exc = fails(params, image="registry.test:5000/shop:2")
    finally:
        held.release()
    assert "another container_rollout run holds" in exc.msg and "Nothing was changed." in exc.msg
    assert api.names() == ["shop-g1-0", "shop-g1-1"]


def test_the_lock_directory_must_be_private_and_the_lock_file_no_symlink(tmp_path):
    rollout_host.ServiceLock(str(tmp_path / "new"), "shop", 0).acquire().release()
    assert os.stat(str(tmp_path / "new")).st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    with pytest.raises(rollout_host.UnsafeLockDir) as exc:
        rollout_host.ServiceLock(str(shared), "shop", 0).acquire()
    assert "writable by no one else" in str(exc.value) and not os.listdir(str(shared))
    os.symlink(str(tmp_path / "new"), str(tmp_path / "link"))
    with pytest.raises(rollout_host.UnsafeLockDir):
        rollout_host.ServiceLock(str(tmp_path / "link"), "shop", 0).acquire()
    private = tmp_path / "private"
    private.mkdir()
    os.chmod(str(private), 0o700)
    os.symlink(str(tmp_path / "victim"), str(private / "keel-container-rollout-shop.lock"))
    with pytest.raises(OSError):
        rollout_host.ServiceLock(str(private), "shop", 0).acquire()
    assert not os.path.exists(str(tmp_path / "victim"))


def test_a_remote_docker_host_is_refused_with_secrets_and_warned_about_without(api, params, gate, tmp_path):
    exc = fails(params, checks=CHECKS, secrets={"db": "x"}, user="1000:1000", docker_host="tcp://10.0.0.9:2376")
    assert "docker_host must be this host's unix:// socket" in exc.msg and api.calls == []
    warnings = []
    Runner(params(checks=CHECKS, docker_host="tcp://10.0.0.9:2376"), warn=warnings.append, sleep=lambda s: None).execute()
    assert any("is not a local unix:// socket" in w for w in warnings)
    os.chmod(str(tmp_path), 0o777)
    exc = fails(params, checks=CHECKS, image="registry.test:5000/shop:2")
    assert "writable by no one else" in exc.msg and "Nothing was changed" in exc.msg


def test_lock_is_released_when_the_holder_ends(tmp_path):
    first = rollout_host.ServiceLock(str(tmp_path), "shop", 0).acquire()
    with pytest.raises(rollout_host.LockTimeout):
        rollout_host.ServiceLock(str(tmp_path), "shop", 0.05).acquire()
    first.release()
    rollout_host.ServiceLock(str(tmp_path), "shop", 0).acquire().release()


# --- templates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("checks, message", [
    ([{"type": "tcp", "host": "{host}", "port": "{port}x"}], "port must be a number or {port}"),
    ([{"type": "http"}], "a http check needs url"),
    ([{"type": "nope", "url": "x"}], "checks[0]"),
    ([{"type": "http", "url": "http://{host}:{port}/", "bogus": 1}], "bogus"),
])
def test_malformed_templates_fail_before_anything(api, params, checks, message):
    exc = fails(params, checks=checks)
    assert message in exc.msg and "Nothing was changed." in exc.msg
    assert not [c for c in api.calls if c[0] in ("create_container", "ping", "inspect_image")]


def test_placeholders_reach_every_check_kind(api, params, gate):
    checks = [{"name": "web", "type": "http", "url": "http://{host}:{port}/", "headers": {"X-Json": '{"a": 1}', "X-Port": "{port}"}},
              {"name": "tcp", "type": "tcp", "host": "{host}", "port": "{port}"},
              {"name": "redis", "type": "redis", "host": "{host}", "port": "{port}", "password": "p{w}}{"},
              {"name": "pg", "type": "postgresql", "host": "{host}", "port": "{port}"},
              {"name": "cmd", "type": "command", "argv": ["probe", "{host}:{port}", "{container}"]}]
    seen = []
    real_fill = rollout.fill_check

    def spy(index, spec, host, port):
        out = real_fill(index, spec, host, port)
        seen.append(out)
        return out

    rollout_runner.rollout.fill_check = spy
    try:
        run(params, replicas=1, checks=checks)
    finally:
        rollout_runner.rollout.fill_check = real_fill
    last = dict((s["name"].split()[-1], s) for s in seen[-5:])
    assert last["web"]["url"] == "http://127.0.0.1:18000/" and last["web"]["headers"] == {"X-Json": '{"a": 1}', "X-Port": "18000"}
    assert last["tcp"]["port"] == 18000 and last["redis"]["port"] == 18000 and last["pg"]["port"] == 18000
    assert last["redis"]["password"] == "p{w}}{"
    assert last["cmd"]["argv"] == ["probe", "127.0.0.1:18000", "{container}"]


# --- images --------------------------------------------------------------------------------------

def test_digest_reference_is_pulled_and_run_by_id(api, params, gate):
    iid, digest = api.publish("registry.test:5000/shop:9", "shop v9")
    ref = "registry.test:5000/shop@" + digest
    result = run(params, image=ref)
    assert result["image_id"] == iid
    assert set(c["Image"] for c in api.store.values()) == {iid}
    assert ("pull", ref, None) in api.calls
    assert not run(params, image=ref)["changed"]


def test_a_moved_tag_is_not_followed_by_running_containers(api, params, gate):
    first_id = api.publish("registry.test:5000/shop:live", "v1")[0]
    run(params, image="registry.test:5000/shop:live", pull="always")
    second_id = api.publish("registry.test:5000/shop:live", "v2")[0]
    planned = run(params, image="registry.test:5000/shop:live", pull="always", check_mode=True)
    assert planned["changed"] and planned["image_id"] is None
    assert set(c["ImageID"] for c in api.store.values()) == {first_id}
    assert not [c for c in api.calls if c[0] == "pull" and c[1].endswith(":live")][1:]  # check mode did not pull
    result = run(params, image="registry.test:5000/shop:live", pull="always")
    assert result["image_id"] == second_id and set(c["Image"] for c in api.store.values()) == {second_id}


def test_check_mode_with_pull_always_and_an_unmoved_tag_changes_nothing(api, params, gate):
    api.publish("registry.test:5000/shop:live", "v1")
    run(params, image="registry.test:5000/shop:live", pull="always")
    planned = run(params, image="registry.test:5000/shop:live", pull="always", check_mode=True)
    assert not planned["changed"]


def test_registry_login_failure_pulls_nothing_and_hides_the_password(api, params, gate):
    api.publish("registry.test:5000/private:1", "private")
    api.users["registry.test:5000"] = ("deploy", "right-password")
    exc = fails(params, image="registry.test:5000/private:1", registry_auth={"username": "deploy", "password": "wrong-pass-zq8"})
    assert "registry login failed" in exc.msg and "Nothing was pulled or started." in exc.msg
    assert "wrong-pass-zq8" not in exc.msg and "wrong-pass-zq8" not in str(exc.result)
    assert not [c for c in api.calls if c[0] in ("pull", "create_container")]
    result = run(params, image="registry.test:5000/private:1", registry_auth={"username": "deploy", "password": "right-password"})
    assert result["changed"] and [c for c in api.calls if c[0] == "pull"][-1][2]["password"] == "right-password"


def test_pull_never_and_pull_errors(api, params, gate):
    exc = fails(params, image="registry.test:5000/shop:absent", pull="never")
    assert "is not present and pull is never" in exc.msg
    exc = fails(params, image="registry.test:5000/shop:absent")
    assert "cannot pull registry.test:5000/shop:absent" in exc.msg and "manifest unknown" in exc.msg
    assert api.names() == []


# --- what the app tier needs -----------------------------------------------------------------------

def test_app_tier_options_reach_the_engine(api, params, gate, tmp_path):
    api.networks.update(["front", "back"])
    run(params, replicas=1, networks=[{"name": "front"}, {"name": "back", "aliases": ["shop-db-client"]}],
        entrypoint=["/bin/app"], command=["serve", "--port", "8000"], tmpfs=["/tmp", "/run/app:size=16m,mode=0700"],
        ulimits=[{"name": "nofile", "soft": 1024, "hard": 2048}], env={"MODE": "prod"}, secrets={"db_password": "s3cr3t-zq9"})
    c = api.named("shop-g1-0")
    assert c["Config"]["entrypoint"] == ["/bin/app"] and c["Config"]["command"] == ["serve", "--port", "8000"]
    assert c["Config"]["environment"] == {"MODE": "prod"}  # the secret is not in the environment
    assert c["HostConfig"]["Tmpfs"] == {"/tmp": "", "/run/app": "size=16m,mode=0700"}
    assert c["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert c["Networks"]["front"]["Aliases"] == ["shop", "shop-g1"] and c["Networks"]["back"] == {"Aliases": ["shop-db-client", "shop-g1"]}
    secret_dir = str(tmp_path / "secrets" / "shop" / "g1")
    assert "%s:/run/secrets:ro" % secret_dir in c["HostConfig"]["Binds"]
    path = os.path.join(secret_dir, "db_password")
    assert open(path).read() == "s3cr3t-zq9"
    assert (os.stat(path).st_mode & 0o777, os.stat(path).st_uid) == (0o400, 1000)
    assert os.stat(secret_dir).st_mode & 0o777 == 0o500
    # The next generation gets its own files; the retired one's go with it. Same aliases.
    run(params, replicas=1, networks=[{"name": "front"}, {"name": "back", "aliases": ["shop-db-client"]}],
        secrets={"db_password": "rotated"})
    assert api.named("shop-g2-0")["Networks"]["front"]["Aliases"] == ["shop", "shop-g2"]
    assert not os.path.exists(secret_dir)
    assert open(str(tmp_path / "secrets" / "shop" / "g2" / "db_password")).read() == "rotated"


def test_the_stable_alias_joins_only_after_the_gate(api, params, gate, monkeypatch):
    api.networks.update(["front", "back"])
    networks = [{"name": "front"}, {"name": "back", "aliases": ["shop-db-client"]}]
    seen = {}

    def spy(checks, *args):
        for c in api.store.values():
            seen[c["Name"]] = (c["State"], dict((n, e.get("Aliases")) for n, e in c["Networks"].items()))
        return True, dict(rounds=1, elapsed=0.1, reason="passed", checks=[])

    monkeypatch.setattr(gate_loop, "run", spy)
    run(params, checks=CHECKS, networks=networks, replicas=1)
    # While its gate runs, the pending container answers only to its generation's alias.
    assert seen == {"shop-g1-0-pending": ("running", {"front": ["shop-g1"], "back": ["shop-g1"]})}
    assert api.named("shop-g1-0")["Networks"] == {"front": {"Aliases": ["shop", "shop-g1"]}, "back": {"Aliases": ["shop-db-client", "shop-g1"]}}
    # The aliases join before the rename (the gate record), so a gated name always has them.
    calls = [c[0] for c in api.calls if c[0] in ("disconnect_container_from_network", "connect_container_to_network", "rename")]
    assert calls[-5:] == ["disconnect_container_from_network", "connect_container_to_network"] * 2 + ["rename"]
    # A failed gate: the pending generation never had the stable alias and is gone.
    seen.clear()
    monkeypatch.setattr(gate_loop, "run", lambda checks, *a: (spy(checks), (False, dict(rounds=1, elapsed=0, reason="failed", checks=[])))[1])
    monkeypatch.setattr(gate_loop, "failure_message", lambda report: "failed")
    fails(params, checks=CHECKS, networks=networks, replicas=1, image="registry.test:5000/shop:2")
    assert seen["shop-g2-0-pending"][1] == {"front": ["shop-g2"], "back": ["shop-g2"]} and api.names() == ["shop-g1-0"]


def test_secrets_need_a_numeric_user(api, params, gate):
    api.add_image("registry.test:5000/named:1", user="app")
    exc = fails(params, image="registry.test:5000/named:1", secrets={"k": "v"})
    assert "user 'app' is not numeric" in exc.msg and api.names() == []


def test_numeric_secret_values_are_written_as_text_and_others_refused(api, params, gate):
    result = run(params, checks=CHECKS, secrets={"pin": 1234}, secret_env={"PIN": 42}, user="1000:1000", replicas=1)
    assert result["changed"] and result["generation"] == 1
    assert api.named("shop-g1-0")["Config"]["environment"]["PIN"] == "42"
    for bad in ([1, 2], {"a": 1}, True, None):
        exc = fails(params, checks=CHECKS, secrets={"pin": bad}, user="1000:1000", replicas=1)
        assert "secrets.pin must be a string" in exc.msg and "Nothing was changed" in exc.msg


def test_check_mode_reports_the_images_of_retired_containers_as_pruned(api, params, gate):
    first = run(params, checks=CHECKS, keep_images=1)["image_id"]
    preview = run(params, check_mode=True, checks=CHECKS, keep_images=1, image="registry.test:5000/shop:2")
    real = run(params, checks=CHECKS, keep_images=1, image="registry.test:5000/shop:2")
    assert preview["pruned_images"] == real["pruned_images"] == [first]


@pytest.mark.parametrize("other", ["registry.test:5000/shop:stable", "registry.test:5000/shop-tools:1"])
def test_an_image_with_several_names_is_pruned_name_by_name(api, params, gate, other):
    # The engine refuses to remove by ID an image with two tags, or names in two repositories,
    # without force (409): before its names went one by one, finalize failed after the switch.
    first = run(params, checks=CHECKS, keep_images=1)["image_id"]
    api.images[first]["RepoTags"].append(other)
    api.refs[other] = first
    result = run(params, checks=CHECKS, keep_images=1, image="registry.test:5000/shop:2")
    assert result["pruned_images"] == [first] and first not in api.images
    assert IMAGE not in api.refs and other not in api.refs


def test_a_name_moved_to_another_image_is_not_untagged(api, params, gate):
    first = run(params, checks=CHECKS, keep_images=1)["image_id"]
    other = "registry.test:5000/shop:stable"
    api.images[first]["RepoTags"].append(other)
    api.refs[other] = first
    moved = api.add_image("registry.test:5000/shop:moved")

    def move(ref):  # a pull elsewhere moves shop:stable to another image after the first look
        if ref == IMAGE:
            api.images[first]["RepoTags"].remove(other)
            api.images[moved]["RepoTags"].append(other)
            api.refs[other] = moved
    api.faults["remove_image"] = move
    result = run(params, checks=CHECKS, keep_images=1, image="registry.test:5000/shop:2")
    assert result["pruned_images"] == [first] and first not in api.images
    assert api.refs[other] == moved and moved in api.images


def test_an_image_another_service_keeps_for_rollback_is_not_pruned(api, params, gate):
    # The worker ran shop:1 under its own name and keeps it in its history: shop's prune leaves it.
    first = run(params, checks=CHECKS, keep_images=1)["image_id"]
    worker = "registry.test:5000/shop-worker:1"
    api.images[first]["RepoTags"].append(worker)
    api.refs[worker] = first
    run(params, service="worker", image=worker, replicas=1, port_base=19000, keep_images=3)
    run(params, service="worker", image="registry.test:5000/shop:2", replicas=1, port_base=19000, keep_images=3)
    result = run(params, checks=CHECKS, keep_images=1, image="registry.test:5000/shop:2")
    assert result["pruned_images"] == [] and first in api.images and api.refs[worker] == first


def test_images_two_services_run_are_pruned_once_both_stopped_keeping_them(api, params, gate):
    # Each service protects only what the other keeps (its keep_images newest): protecting the
    # other's whole history kept every shared image for ever.
    refs = ["registry.test:5000/shop:%d" % n for n in range(1, 7)]
    for ref in refs[2:]:
        api.add_image(ref)
    ids = [api.refs[ref] for ref in refs]
    for ref in refs:
        run(params, image=ref, replicas=1, keep_images=2)
        run(params, service="worker", image=ref, replicas=1, port_base=19000, keep_images=2)
    assert [i in api.images for i in ids] == [False] * 4 + [True] * 2


def test_names_taken_off_an_image_that_then_stays_are_reported_as_a_change(api, params, gate):
    first = run(params, checks=CHECKS, keep_images=1)["image_id"]
    other = "registry.test:5000/shop:stable"
    api.images[first]["RepoTags"].append(other)
    api.refs[other] = first

    def refuse_second(ref):  # the second name cannot go (an engine error of any kind)
        if ref == other:
            return api_error(500, "the engine is busy")
    api.faults["remove_image"] = refuse_second
    exc = fails(params, checks=CHECKS, keep_images=1, image="registry.test:5000/shop:2")
    assert exc.result["changed"] and "names removed: %s" % IMAGE in exc.msg
    assert IMAGE not in api.refs and api.refs[other] == first


def test_drain_delay_comes_between_the_gate_and_the_stop(api, params, gate):
    run(params, replicas=1)
    events = []
    api.faults["stop"] = lambda cid: events.append("stop")
    run(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2", drain_delay=7, sleep=lambda s: events.append(("sleep", s)))
    assert events == [("sleep", 7), "stop"]


@pytest.mark.parametrize("crash", [dict(State="exited", ExitCode=1), dict(State="restarting", RestartCount=2),
                                   dict(State="running", RestartCount=1)])
def test_without_checks_new_containers_that_crash_never_replace_running_ones(api, params, monkeypatch, crash):
    warnings = []
    Runner(params(replicas=1), warn=warnings.append, sleep=lambda s: None).execute()
    assert "neither checks nor healthcheck is set" in warnings[0]
    start = api.start

    def start_then_crash(container):
        start(container)
        api._container(container).update(crash)  # the app dies at boot (the restart policy may bring it back)

    monkeypatch.setattr(api, "start", start_then_crash)
    slept = []
    exc = fails(params, replicas=1, image="registry.test:5000/shop:2", sleep=slept.append)
    assert slept == [rollout_runner.SETTLE_SECONDS]
    assert "not running after their start" in exc.msg and "shop-g2-0" in exc.msg and exc.result["rolled_back"] is True
    assert api.names() == ["shop-g1-0"] and api.named("shop-g1-0")["State"] == "running"


def test_a_container_that_crashes_after_passing_its_checks_is_not_recorded(api, params, gate, monkeypatch):
    run(params, replicas=1, checks=CHECKS)
    gate.append(True)

    def crashed(cid):  # the container died after the checks passed, before the record
        api._container(cid)["State"] = "exited"

    api.faults["inspect_container"] = crashed
    exc = fails(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert "not running after their start" in exc.msg and api.names() == ["shop-g1-0"]


def test_interrupted_by_a_signal_during_the_gate_removes_the_new_generation(api, params, gate):
    run(params, replicas=1, checks=CHECKS)
    gate.append(rollout_runner.Interrupted("signal 15"))
    exc = fails(params, replicas=1, checks=CHECKS, image="registry.test:5000/shop:2")
    assert exc.result["rolled_back"] is True and api.names() == ["shop-g1-0"]


def test_check_mode_with_a_leftover_on_the_new_slot_and_an_image_to_pull(api, params, gate, monkeypatch):
    run(params, replicas=1, user="1000:1000", secrets={"k": "v"})
    start_then_die(api, params, monkeypatch, replicas=1, image="registry.test:5000/shop:2")
    # The leftover's port 18001 is busy until a real run removes it; check mode must not fail on it.
    monkeypatch.setattr(rollout_host, "ports_in_use", lambda host_ip, ports: [p for p in ports if p == 18001])
    api.publish("registry.test:5000/shop:3", "v3")
    before = len(api.calls)
    planned = run(params, replicas=1, image="registry.test:5000/shop:3", secrets={"k": "v"}, check_mode=True)
    assert planned["changed"] and planned["discarded"] == ["shop-g2-0-pending"] and planned["image_id"] is None
    assert [e["ports"] for e in planned["endpoints"]] == [{"8000": 18001}]
    assert api.names() == ["shop-g1-0", "shop-g2-0-pending"]
    assert not [c for c in api.calls[before:] if c[0] in ("pull", "create_container", "remove_container", "rename", "login")]
    # The real run: the leftover goes first, then its port is free for generation 3.
    monkeypatch.setattr(rollout_host, "ports_in_use", lambda host_ip, ports: [p for p in ports if p == 18001 and any(
        c["Name"] == "shop-g2-0-pending" for c in api.store.values())])
    result = run(params, replicas=1, image="registry.test:5000/shop:3", secrets={"k": "v"})
    assert result["generation"] == 3 and api.names() == ["shop-g3-0"]


def test_a_failed_gate_record_removes_the_generation_it_could_not_record(api, params, gate):
    run(params, replicas=1)
    api.faults["rename"] = lambda cid, name: api_error(500, "rename refused")
    exc = fails(params, replicas=1, image="registry.test:5000/shop:2")
    assert "generation 2 passed its gate, but recording that failed" in exc.msg and "it was removed" in exc.msg
    assert exc.result["rolled_back"] is True and api.names() == ["shop-g1-0"]


def test_remove_takes_every_generation_its_secrets_and_its_unused_images_then_changes_nothing(api, params, gate, tmp_path):
    one = run(params, checks=CHECKS, secrets={"token": "fake-token-1"}, user="1000:1000")["image_id"]
    two = run(params, checks=CHECKS, image="registry.test:5000/shop:2", phase="deploy", secrets={"token": "fake-token-1"},
              user="1000:1000")["image_id"]
    # Another service runs the first image: it stays.
    run(params, service="other", checks=CHECKS, port_base=19000)
    assert len(api.names()) == 6 and os.path.isdir(str(tmp_path / "secrets" / "shop" / "g2"))
    preview = run(params, check_mode=True, phase="remove", image=None)
    assert preview["changed"] and preview["pruned_images"] == [two] and len(api.names()) == 6
    assert preview["retired"] == ["shop-g1-0", "shop-g1-1", "shop-g2-0", "shop-g2-1"]
    events = []
    api.faults["stop"] = lambda cid, **kw: events.append("stop")
    result = Runner(params(phase="remove", image=None, drain_delay=3), diff=True,
                    sleep=lambda s: events.append(("sleep", s))).execute()
    assert result["changed"] and result["retired"] == preview["retired"] and result["pruned_images"] == [two]
    assert result["endpoints"] == [] and result["generation"] == 0
    assert events == [("sleep", 3)] + ["stop"] * 4  # drained once, each stopped gracefully
    assert api.names() == ["other-g1-0", "other-g1-1"] and one in api.images and two not in api.images
    assert not os.path.exists(str(tmp_path / "secrets" / "shop" / "g1"))
    assert not os.path.exists(str(tmp_path / "secrets" / "shop" / "g2"))
    assert result["diff"]["after"] == {"containers": []} and len(result["diff"]["before"]["containers"]) == 4
    again = run(params, phase="remove", image=None)
    assert not again["changed"] and again["retired"] == [] and again["pruned_images"] == []


def test_remove_cut_short_by_an_engine_error_says_what_is_left_and_the_next_one_finishes(api, params, gate):
    image_id = run(params, checks=CHECKS)["image_id"]
    api.faults["remove_container"] = lambda cid, **kw: api_error(500, "engine busy") if api.store[cid]["Name"] == "shop-g1-1" else None
    exc = fails(params, phase="remove", image=None)
    assert "removing the containers of shop failed" in exc.msg and "Retired: shop-g1-0" in exc.msg
    assert "shop-g1-1" in exc.msg and api.names() == ["shop-g1-1"]
    api.faults.clear()
    result = run(params, phase="remove", image=None)
    assert result["changed"] and result["retired"] == ["shop-g1-1"] and api.names() == []
    assert result["pruned_images"] == [image_id] and image_id not in api.images


@pytest.mark.parametrize("state", ["restarting", "paused"])
def test_remove_takes_a_crashing_or_paused_service(api, params, gate, state):
    # The engine counts both as running and refuses to remove them without force.
    run(params, checks=CHECKS, replicas=1)
    api.named("shop-g1-0")["State"] = state
    result = run(params, phase="remove", image=None)
    assert result["changed"] and result["retired"] == ["shop-g1-0"] and api.names() == []
    assert [call[0] for call in api.calls if call[0] in ("stop", "remove_container")] == ["stop", "remove_container"]


def test_remove_cut_short_after_its_containers_still_removes_its_images_next_time(api, params, gate, tmp_path):
    one = run(params, checks=CHECKS, replicas=1)["image_id"]
    two = run(params, checks=CHECKS, replicas=1, image="registry.test:5000/shop:2")["image_id"]
    api.faults["remove_image"] = lambda image, **kw: api_error(500, "engine busy")
    exc = fails(params, phase="remove", image=None)
    assert "the containers of shop are removed, but removing its images failed" in exc.msg and api.names() == []
    api.faults.clear()
    # No container is left to read the history from: the record written before they went is.
    result = run(params, phase="remove", image=None)
    assert result["changed"] and sorted(result["pruned_images"]) == sorted([one, two])
    assert one not in api.images and two not in api.images
    assert not os.path.exists(str(tmp_path / "secrets" / "shop"))  # the record and the service's directory go
    assert not run(params, phase="remove", image=None)["changed"]


def test_remove_keeps_the_images_of_the_services_that_stay(api, params, gate):
    run(params, checks=CHECKS, replicas=1)
    result = run(params, phase="remove", image=None, protect_images=[IMAGE, "registry.test:5000/not-here:1"])
    assert result["changed"] and result["pruned_images"] == [] and api.refs[IMAGE] in api.images
