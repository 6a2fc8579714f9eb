# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What keel.platform.nft_ruleset does on the host, with the module as its only link to Ansible.

Order of a run, so that any interruption leaves a state the next run finishes correctly:
check the complete would-be ruleset; write the fragments; write the file; arm the revert
timer (if asked); load. A run killed after writing leaves a file whose id differs from the
running one, and the next run loads it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time

from ansible_collections.keel.platform.plugins.module_utils.nft_ruleset import (
    REVERT_UNIT,
    RulesetError,
    assemble,
    merge_fragments,
    read_fragments,
    read_text,
    running_id,
    save_for_revert,
    write_atomic,
    write_fragments,
)

NFT = "/usr/sbin/nft"
# In a directory only root may write: a lock in the world-writable /run/lock could be taken
# (or replaced by a link) by any local user, and every firewall run would then wait on it.
LOCK_PATH = "/run/keel/nft_ruleset.lock"


def _lock(module, timeout):
    """An exclusive lock for the whole run (released when the module's process ends)."""
    directory = os.path.dirname(LOCK_PATH)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RulesetError("%s must be a directory owned by this user and writable by no one else; nothing was changed" % directory)
    handle = os.fdopen(os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), "r+")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            if time.monotonic() > deadline:
                handle.close()
                raise RulesetError("another run holds %s for more than %d s; nothing was changed" % (LOCK_PATH, timeout))
            time.sleep(0.5)


def _nft(module, *args):
    return module.run_command([NFT] + list(args))


def _running_listing(module):
    if not os.access(NFT, os.X_OK):
        return ""
    rc, out, err = _nft(module, "list", "table", "inet", "keel")
    return out if rc == 0 else ""


def _check_whole(module, text):
    """``nft -c`` of the complete text, from a private temporary file (never in /etc).

    In check mode on a host that has no nft yet (the role installs it first), the text cannot
    be checked: say so in a warning instead of failing a check that the real run would pass.
    """
    if not os.access(NFT, os.X_OK):
        if module.check_mode:
            module.warn("%s is not installed yet: the new ruleset was not checked with nft -c in check mode" % NFT)
            return
        raise RulesetError("%s is missing: install nftables first; nothing was written or loaded" % NFT)
    fd, tmp = tempfile.mkstemp(prefix="keel-check-", suffix=".nft", dir=module.tmpdir)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        rc, out, err = _nft(module, "-c", "-f", tmp)
    finally:
        os.unlink(tmp)
    if rc != 0:
        raise RulesetError("nft -c refused the complete ruleset; nothing was written or loaded:\n%s" % (err or out).replace(tmp, "<new ruleset>"))


def _timer_active(module):
    rc, out, err = module.run_command(["systemctl", "is-active", REVERT_UNIT + ".timer"])
    return out.strip() == "active"


def _stop_timer(module):
    module.run_command(["systemctl", "stop", REVERT_UNIT + ".timer", REVERT_UNIT + ".service"])
    module.run_command(["systemctl", "reset-failed", REVERT_UNIT + ".timer", REVERT_UNIT + ".service"])


def _arm_revert(module, script, seconds):
    _stop_timer(module)
    rc, out, err = module.run_command([
        # Timers are coalesced within a minute by default: a revert must be on time.
        "systemd-run", "--unit", REVERT_UNIT, "--on-active", "%ds" % seconds, "--timer-property", "AccuracySec=1s",
        "--description", "Keel: restore the previous firewall ruleset unless confirmed",
        "/bin/sh", script,
    ])
    if rc != 0:
        raise RulesetError("could not arm the revert timer (systemd-run: %s); nothing was loaded" % (err or out).strip())


def present(module):
    p = module.params
    fragments_before = read_fragments(p["fragments_dir"])
    fragments_after = merge_fragments(fragments_before, p["fragments"] or {})
    text, ruleset_id = assemble(p["ruleset"], fragments_after)
    file_before = read_text(p["path"])

    _check_whole(module, text)

    # One confirmation at a time: a second run arming (or changing) while the first waits for
    # its confirmation would save the unconfirmed ruleset as "previous", or be undone by the
    # first one's revert. Nothing changes until that one is confirmed or reverted.
    if _timer_active(module):
        raise RulesetError("a ruleset loaded by another run awaits confirmation (%s.timer is active): confirm it"
                           " (state=confirmed) or let it revert, then run again; nothing was changed" % REVERT_UNIT)

    listing = _running_listing(module)
    was_running = running_id(listing)
    written = file_before != text
    changed_owners = sorted(o for o in set(fragments_before) | set(fragments_after)
                            if fragments_before.get(o) != fragments_after.get(o))
    loaded = written or was_running != ruleset_id
    result = dict(
        changed=bool(written or changed_owners or loaded),
        ruleset_id=ruleset_id, running_id=was_running, written=written,
        fragments_changed=changed_owners, loaded=loaded, revert_armed=False,
    )
    if module._diff and (written or loaded):
        result["diff"] = dict(before_header=p["path"], after_header=p["path"],
                              before=file_before or "", after=text)
    if module.check_mode or not result["changed"]:
        return result

    armed = loaded and p["confirm_timeout"] > 0
    if armed:
        script = save_for_revert(p["state_dir"], p["path"], p["fragments_dir"], listing)
    write_fragments(p["fragments_dir"], fragments_before, fragments_after)
    write_atomic(p["path"], text)
    if loaded:
        if armed:
            _arm_revert(module, script, p["confirm_timeout"])
        rc, out, err = _nft(module, "-f", p["path"])
        if rc != 0:
            # Checked a moment ago, so this is the kernel refusing (or nft gone): say so.
            raise RulesetError("nft -f %s failed after the check passed; the previous ruleset still runs%s:\n%s"
                               % (p["path"], " and the revert timer restores the previous file" if armed else "", err or out))
    result["revert_armed"] = armed
    return result


def confirmed(module):
    """Stop a pending revert; fail if it already ran (the new ruleset was not kept)."""
    expected = module.params["ruleset_id"] or running_id(read_text(module.params["path"]) or "")
    now = running_id(_running_listing(module))
    pending = _timer_active(module)
    result = dict(changed=pending, ruleset_id=expected, running_id=now, revert_armed=pending)
    if now != expected:
        module.fail_json(msg="ruleset %s is not the one running (%s): %s"
                         % (expected, now, "another run changed it (its revert is still armed)" if pending
                            else "it was reverted (not confirmed in time), or changed by hand"), **result)
    if pending and not module.check_mode:
        _stop_timer(module)
        result["revert_armed"] = False
    return result


def run(module):
    handle = None
    try:
        handle = _lock(module, module.params["lock_timeout"])
        result = present(module) if module.params["state"] == "present" else confirmed(module)
    except (RulesetError, OSError) as exc:
        module.fail_json(msg=str(exc))
    finally:
        if handle is not None:
            handle.close()
    module.exit_json(**result)
