"""keel.platform.nft_ruleset with a fake nft, systemctl and systemd-run (the real ones are
exercised by the Molecule scenarios): what is written, when it is loaded, and what a refused
check leaves behind."""

import os
import stat

import pytest

from ansible_collections.keel.platform.plugins.module_utils import nft_apply
from ansible_collections.keel.platform.plugins.module_utils.nft_ruleset import RulesetError, assemble
from ansible_collections.keel.platform.plugins.modules import nft_ruleset

MAIN = """table inet keel
delete table inet keel
table inet keel {
\tchain ruleset_id {
\t\tcounter comment "keel-ruleset @KEEL_RULESET_ID@"
\t}
}
@KEEL_FRAGMENTS@
"""

# `nft -c -f F` refuses a file containing BAD; `nft -f F` makes F the "running" ruleset;
# `nft list table inet keel` prints it. systemd-run/systemctl record their calls.
FAKE_NFT = """#!/bin/sh
state="$FAKE_STATE"
case "$1" in
  -c) grep -q BAD "$3" && { echo "$3:9:1-3: Error: syntax error, unexpected BAD" >&2; exit 1; }; exit 0 ;;
  -f) grep -q BAD "$2" && exit 1; cp "$2" "$state/running"; exit 0 ;;
  list) [ -f "$state/running" ] || exit 1; cat "$state/running" ;;
esac
"""
FAKE_SYSTEMD = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_STATE/calls"
if [ "$(basename "$0")" = systemctl ] && [ "$1" = is-active ]; then
  # Active when the last call that arms or stops the timer armed it.
  last=$(grep -E '^(systemd-run|systemctl stop)' "$FAKE_STATE/calls" | tail -n 1)
  case "$last" in systemd-run*) echo active; exit 0 ;; esac
  echo inactive; exit 3
fi
"""


@pytest.fixture
def host(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("nft", FAKE_NFT), ("systemd-run", FAKE_SYSTEMD), ("systemctl", FAKE_SYSTEMD)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.setattr(nft_apply, "NFT", str(bin_dir / "nft"))
    monkeypatch.setattr(nft_apply, "LOCK_PATH", str(tmp_path / "lock"))
    return tmp_path


def args(host, **kw):
    base = dict(ruleset=MAIN, path=str(host / "etc" / "nftables.conf"),
                fragments_dir=str(host / "etc" / "keel"), state_dir=str(host / "var"))
    base.update(kw)
    return base


def running(host):
    path = host / "state" / "running"
    return path.read_text() if path.exists() else None


def test_writes_checks_and_loads_then_changes_nothing(run_module, host):
    failed, first = run_module(nft_ruleset.main, args(host, fragments={"inventory": "# web\n"}))
    assert not failed and first["changed"] and first["written"] and first["loaded"]
    assert first["fragments_changed"] == ["inventory"] and first["running_id"] is None
    on_disk = (host / "etc" / "nftables.conf").read_text()
    assert on_disk == running(host) and "# --- owner: inventory ---\n# web\n" in on_disk
    assert 'keel-ruleset %s"' % first["ruleset_id"] in on_disk

    failed, again = run_module(nft_ruleset.main, args(host, fragments={"inventory": "# web\n"}))
    assert not failed and not again["changed"] and again["running_id"] == first["ruleset_id"]


def test_a_refused_check_writes_and_loads_nothing(run_module, host):
    run_module(nft_ruleset.main, args(host, fragments={"inventory": "# web\n"}))
    before = (host / "etc" / "nftables.conf").read_text()
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"redis": "BAD\n"}))
    assert failed and "nft -c refused the complete ruleset; nothing was written or loaded" in result["msg"]
    assert "<new ruleset>:9:1-3" in result["msg"]
    assert (host / "etc" / "nftables.conf").read_text() == before == running(host)
    assert sorted(os.listdir(host / "etc" / "keel")) == ["inventory.nft"]


def test_what_runs_is_made_what_is_on_disk(run_module, host):
    # As after a run killed between writing the file and loading it, or a hand-made change.
    run_module(nft_ruleset.main, args(host))
    (host / "state" / "running").write_text("table inet keel {}\n")
    failed, result = run_module(nft_ruleset.main, args(host, _ansible_check_mode=True))
    assert not failed and result["changed"] and result["loaded"] and not result["written"]
    failed, result = run_module(nft_ruleset.main, args(host))
    assert not failed and result["changed"] and result["loaded"] and not result["written"]
    assert running(host) == (host / "etc" / "nftables.conf").read_text()


def test_check_mode_predicts_and_touches_nothing(run_module, host):
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"inventory": "# web\n"}, _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and result["changed"] and result["written"] and result["loaded"]
    assert result["diff"]["before"] == "" and "# web" in result["diff"]["after"]
    assert not (host / "etc" / "nftables.conf").exists() and running(host) is None


def test_owners_keep_their_fragments_and_an_empty_one_is_removed(run_module, host):
    run_module(nft_ruleset.main, args(host, fragments={"inventory": "# web\n", "postgresql": "# pg\n"}))
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"redis": "# redis\n"}))
    assert not failed and result["fragments_changed"] == ["redis"]
    text = (host / "etc" / "nftables.conf").read_text()
    assert text.index("# pg") < text.index("# redis") and "# web" in text
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"postgresql": ""}))
    assert result["fragments_changed"] == ["postgresql"] and "# pg" not in running(host)
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"../x": "# no\n"}))
    assert failed and "fragment owner '../x'" in result["msg"]


def test_confirm_or_revert(run_module, host):
    run_module(nft_ruleset.main, args(host, fragments={"inventory": "# old\n"}))
    failed, armed = run_module(nft_ruleset.main, args(host, fragments={"inventory": "# new\n"}, confirm_timeout=30))
    assert not failed and armed["revert_armed"]
    calls = (host / "state" / "calls").read_text()
    assert "systemd-run --unit keel-firewall-revert --on-active 30s --timer-property AccuracySec=1s" in calls
    revert = (host / "var" / "revert.sh").read_text()
    assert "previous/running.nft" in revert and "# old" in (host / "var" / "previous" / "running.nft").read_text()

    confirm = dict(state="confirmed", ruleset_id=armed["ruleset_id"], path=str(host / "etc" / "nftables.conf"))
    failed, done = run_module(nft_ruleset.main, confirm)
    assert not failed and done["changed"] and not done["revert_armed"]
    assert "systemctl stop keel-firewall-revert.timer" in (host / "state" / "calls").read_text()

    # The revert ran (the old ruleset is back): confirming says so and fails.
    (host / "state" / "running").write_text((host / "var" / "previous" / "running.nft").read_text()
                                            .replace("@", "") + 'comment "keel-ruleset 0000000000000000"\n')
    failed, late = run_module(nft_ruleset.main, confirm)
    assert failed and "it was reverted (not confirmed in time)" in late["msg"]


def test_assemble_needs_its_marks():
    with pytest.raises(RulesetError, match="needs the line @KEEL_FRAGMENTS@ once"):
        assemble("table inet keel {}\n", {})
    text, ruleset_id = assemble(MAIN, {"b": "# b\n", "a": "# a\n"})
    assert text.index("# a") < text.index("# b") and ruleset_id in text and len(ruleset_id) == 16
    assert assemble(MAIN, {"a": "# a\n", "b": "# b\n"}) == (text, ruleset_id)


# Found by the review that tried to break the firewall.

def test_check_mode_on_a_host_without_nft_warns_and_touches_nothing(run_module, host, monkeypatch):
    monkeypatch.setattr(nft_apply, "NFT", str(host / "bin" / "not-installed"))
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"inventory": "# web\n"}, _ansible_check_mode=True))
    assert not failed and result["changed"] and result["written"]
    assert "not checked with nft -c" in str(result.get("warnings"))
    assert not (host / "etc").exists() and not (host / "var").exists()
    failed, result = run_module(nft_ruleset.main, args(host))
    assert failed and "is missing: install nftables first" in result["msg"] and not (host / "etc").exists()


def test_the_check_file_is_never_beside_the_real_one(run_module, host):
    run_module(nft_ruleset.main, args(host))
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"redis": "BAD\n"}))
    assert failed and os.listdir(host / "etc") == ["nftables.conf"]


def test_the_lock_is_refused_where_others_can_write_or_link(run_module, host, monkeypatch):
    shared = host / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(nft_apply, "LOCK_PATH", str(shared / "lock"))
    failed, result = run_module(nft_ruleset.main, args(host))
    assert failed and "writable by no one else" in result["msg"] and running(host) is None

    private = host / "private"
    private.mkdir(mode=0o700)
    (private / "lock").symlink_to(host / "elsewhere")
    monkeypatch.setattr(nft_apply, "LOCK_PATH", str(private / "lock"))
    failed, result = run_module(nft_ruleset.main, args(host))
    assert failed and running(host) is None and not (host / "elsewhere").exists()


def test_the_revert_script_reports_a_failed_restore(run_module, host):
    run_module(nft_ruleset.main, args(host, fragments={"inventory": "# old\n"}))
    run_module(nft_ruleset.main, args(host, fragments={"inventory": "# new\n"}, confirm_timeout=30))
    revert = (host / "var" / "revert.sh").read_text()
    assert "if /usr/sbin/nft -f" in revert and "exit 1" in revert


def test_a_second_run_waits_for_the_first_ones_confirmation(run_module, host):
    run_module(nft_ruleset.main, args(host, fragments={"inventory": "# old\n"}))
    failed, armed = run_module(nft_ruleset.main, args(host, fragments={"inventory": "# new\n"}, confirm_timeout=30))
    assert not failed and armed["revert_armed"]
    on_disk = (host / "etc" / "nftables.conf").read_text()
    failed, second = run_module(nft_ruleset.main, args(host, fragments={"redis": "# redis\n"}))
    assert failed and "awaits confirmation" in second["msg"]
    assert (host / "etc" / "nftables.conf").read_text() == on_disk == running(host)
    assert "# old" in (host / "var" / "previous" / "running.nft").read_text()
    confirm = dict(state="confirmed", ruleset_id=armed["ruleset_id"], path=str(host / "etc" / "nftables.conf"))
    failed, done = run_module(nft_ruleset.main, confirm)
    assert not failed
    failed, second = run_module(nft_ruleset.main, args(host, fragments={"redis": "# redis\n"}))
    assert not failed and second["fragments_changed"] == ["redis"]


def test_a_fragment_that_is_not_text_is_refused(run_module, host):
    failed, result = run_module(nft_ruleset.main, args(host, fragments={"redis": 5}))
    assert failed and "expected nft text" in result["msg"]
