from ansible_collections.keel.platform.plugins.module_utils import rollout
from ansible_collections.keel.platform.plugins.module_utils.rollout import LABEL_GENERATION, LABEL_HASH, LABEL_SLOT


def container(name, gen, slot, hash_, running=True):
    return dict(name=name, running=running, image_id="sha256:x",
                labels={LABEL_GENERATION: str(gen), LABEL_SLOT: str(slot), LABEL_HASH: hash_})


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
    plan = rollout.plan(rollout.Current([]), "h1", 2)
    assert plan == {"action": "rollout", "generation": 1, "slot": 0, "retire": []}


def test_up_to_date_changes_nothing():
    current = rollout.Current([container("web-g3-0", 3, 1, "h1"), container("web-g3-1", 3, 1, "h1")])
    assert rollout.plan(current, "h1", 2) == {"action": "none", "generation": 3, "slot": 1, "retire": []}


def test_new_config_rolls_to_the_other_slot_and_retires_everything_old():
    current = rollout.Current([container("web-g3-0", 3, 1, "h1"), container("web-g2-0", 2, 0, "h0")])
    plan = rollout.plan(current, "h2", 1)
    assert plan == {"action": "rollout", "generation": 4, "slot": 0, "retire": ["web-g2-0", "web-g3-0"]}


def test_a_stopped_or_missing_replica_triggers_a_rollout():
    stopped = rollout.Current([container("web-g1-0", 1, 0, "h1"), container("web-g1-1", 1, 0, "h1", running=False)])
    assert rollout.plan(stopped, "h1", 2)["action"] == "rollout"
    short = rollout.Current([container("web-g1-0", 1, 0, "h1")])
    assert rollout.plan(short, "h1", 2)["action"] == "rollout"


def test_deployed_but_not_finalized_only_retires():
    current = rollout.Current([container("web-g2-0", 2, 1, "h2"), container("web-g1-0", 1, 0, "h1")])
    assert rollout.plan(current, "h2", 1) == {"action": "retire", "generation": 2, "slot": 1, "retire": ["web-g1-0"]}


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
