# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keel's nftables ruleset on a host: assemble, check whole, write, load, confirm or revert.

The ruleset that nftables loads at boot (``/etc/nftables.conf``) is one complete file: the
main part from the firewall role plus every owner's fragment, inlined. Owners' fragments are
kept in a directory of their own so that a play for one owner (a service role) rebuilds the
complete file without knowing the other owners' rules. Nothing is ever written that was not
checked whole with ``nft -c``, and the loaded ruleset carries the id of the file it came from,
so a run can tell whether what runs is what is on disk.

Standard library only: this runs on managed hosts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile

FRAGMENTS_MARK = "@KEEL_FRAGMENTS@"
ID_MARK = "@KEEL_RULESET_ID@"
FRAGMENT_SUFFIX = ".nft"
OWNER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RUNNING_ID_RE = re.compile(r'comment "keel-ruleset ([0-9a-f]{16})"')
REVERT_UNIT = "keel-firewall-revert"


class RulesetError(Exception):
    """A ruleset cannot be assembled, checked, written or loaded; the message says why."""


def read_fragments(directory):
    """``{owner: text}`` of the fragments on disk (an absent directory has none)."""
    out = {}
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        owner = name[: -len(FRAGMENT_SUFFIX)]
        if name.endswith(FRAGMENT_SUFFIX) and OWNER_RE.fullmatch(owner):
            with open(os.path.join(directory, name)) as handle:
                out[owner] = handle.read()
    return out


def merge_fragments(current, updates):
    """Fragments after this run: ``updates`` replace owners' texts; an empty text removes it."""
    merged = dict(current)
    for owner, text in updates.items():
        if not isinstance(owner, str) or not OWNER_RE.fullmatch(owner):
            raise RulesetError("fragment owner %r: lower-case letters, digits, '-' or '_', at most 32" % (owner,))
        if text is not None and not isinstance(text, str):
            raise RulesetError("fragment of %s: expected nft text, got %r" % (owner, text))
        if text:
            merged[owner] = text if text.endswith("\n") else text + "\n"
        else:
            merged.pop(owner, None)
    return merged


def assemble(main, fragments):
    """The complete ruleset text, with its id filled in: ``(text, id)``.

    ``main`` must hold the fragments mark on a line of its own and the id mark once. The id
    is a hash of everything else, so the same inputs always give the same file.
    """
    lines = main.splitlines(True)
    marks = [i for i, line in enumerate(lines) if line.strip() == FRAGMENTS_MARK]
    if len(marks) != 1 or main.count(ID_MARK) != 1:
        raise RulesetError("the main ruleset needs the line %s once and %s once" % (FRAGMENTS_MARK, ID_MARK))
    body = "".join(
        "# --- owner: %s ---\n%s" % (owner, fragments[owner]) for owner in sorted(fragments)
    )
    text = "".join(lines[: marks[0]]) + body + "".join(lines[marks[0] + 1:])
    ruleset_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return text.replace(ID_MARK, ruleset_id), ruleset_id


def running_id(listing):
    """The id of the loaded Keel ruleset, from ``nft list table``'s output (None if absent)."""
    found = RUNNING_ID_RE.search(listing or "")
    return found.group(1) if found else None


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path, text, mode=0o640):
    """Write through a temporary file in the same directory and rename it over ``path``."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keel-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_fragments(directory, before, after):
    """Make the directory hold exactly ``after``; returns the owners changed."""
    changed = []
    for owner in sorted(set(before) | set(after)):
        if before.get(owner) == after.get(owner):
            continue
        changed.append(owner)
        path = os.path.join(directory, owner + FRAGMENT_SUFFIX)
        if owner in after:
            write_atomic(path, after[owner])
        elif os.path.exists(path):
            os.unlink(path)
    return changed


def save_for_revert(state_dir, path, fragments_dir, running_listing):
    """Keep what a revert restores: the file, the fragments and the ruleset that runs now.

    Returns the revert script's path. The script puts the previous file and fragments back
    and loads the previous ruleset in one nft transaction (or, with no Keel table before,
    removes Keel's table).
    """
    previous = os.path.join(state_dir, "previous")
    if os.path.isdir(previous):
        shutil.rmtree(previous)
    os.makedirs(os.path.join(previous, "fragments"), mode=0o700)
    if os.path.exists(path):
        shutil.copy2(path, os.path.join(previous, "nftables.conf"))
    if os.path.isdir(fragments_dir):
        for name in os.listdir(fragments_dir):
            shutil.copy2(os.path.join(fragments_dir, name), os.path.join(previous, "fragments", name))
    if running_listing:
        restore = "table inet keel\ndelete table inet keel\n" + running_listing
    else:
        restore = "table inet keel\ndelete table inet keel\n"
    write_atomic(os.path.join(previous, "running.nft"), restore, 0o600)
    script = os.path.join(state_dir, "revert.sh")
    write_atomic(script, REVERT_SCRIPT % {
        "previous": previous, "path": path, "fragments": fragments_dir,
    }, 0o700)
    return script


REVERT_SCRIPT = """#!/bin/sh
# Written by keel.platform.nft_ruleset: the new ruleset was not confirmed in time.
# Put the previous file and fragments back, then load the ruleset that ran before.
set -u
if [ -f '%(previous)s/nftables.conf' ]; then cp -p '%(previous)s/nftables.conf' '%(path)s'; fi
rm -f '%(fragments)s'/*.nft
cp -p '%(previous)s'/fragments/*.nft '%(fragments)s'/ 2>/dev/null
if /usr/sbin/nft -f '%(previous)s/running.nft'; then
  logger -t keel-firewall 'new ruleset not confirmed in time: previous ruleset restored'
else
  logger -p user.err -t keel-firewall 'new ruleset not confirmed in time: LOADING THE PREVIOUS RULESET FAILED'
  exit 1
fi
"""
