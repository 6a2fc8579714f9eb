#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nft_ruleset
short_description: Check, write and load Keel's complete nftables ruleset, with an optional confirm-or-revert
version_added: 0.2.0
description:
  - Assembles the complete ruleset from O(ruleset) (the main part) and every owner's fragment
    (the ones on the host in O(fragments_dir), updated by O(fragments)), checks it whole with
    C(nft -c) and only then writes the fragments and O(path), and loads it in one transaction.
  - A failed check changes nothing on disk and leaves the running ruleset as it is.
  - The loaded ruleset carries the id of the file it came from. When what runs is not what is
    on disk (a run killed between writing and loading, a hand-made change), the file is loaded
    again even if it did not change.
  - With O(confirm_timeout), the new ruleset goes live with a timer on the host that restores
    the previous file, fragments and ruleset unless O(state=confirmed) runs within that many
    seconds, like a router's commit confirmed. Confirm over a new connection
    (C(meta) C(reset_connection) first), so that a ruleset that cuts new connections is reverted.
  - Runs on one host are serialised with a lock, so two plays at once never lose an owner's
    fragment.
author:
  - Keel maintainers (@keel-platform)
extends_documentation_fragment:
  - keel.platform.attributes
attributes:
  check_mode:
    support: full
    details: The complete ruleset is still checked with C(nft -c), which changes nothing.
  diff_mode:
    support: full
    details: The diff is the complete ruleset file before and after.
options:
  state:
    description:
      - V(present) checks, writes and loads the ruleset.
      - V(confirmed) stops a pending revert timer and fails if the ruleset was already reverted.
    type: str
    choices: [present, confirmed]
    default: present
  ruleset:
    description:
      - The main part of the ruleset. It must contain the line C(@KEEL_FRAGMENTS@), where the
        owners' fragments are inlined, and C(@KEEL_RULESET_ID@) once, inside a rule comment
        C("keel-ruleset @KEEL_RULESET_ID@") of table C(inet keel).
      - Required with O(state=present).
    type: str
  fragments:
    description:
      - Fragments to set, by owner. An empty text removes that owner's fragment. Owners not
        named keep the fragment they have on the host.
    type: dict
    default: {}
  path:
    description: The ruleset file nftables loads at boot.
    type: path
    default: /etc/nftables.conf
  fragments_dir:
    description: Where owners' fragments are kept on the host.
    type: path
    default: /etc/keel/firewall
  state_dir:
    description: Where the previous ruleset is kept for a revert.
    type: path
    default: /var/lib/keel/firewall
  confirm_timeout:
    description:
      - Seconds the new ruleset has to be confirmed before it is reverted. V(0) loads without
        a revert timer.
    type: int
    default: 0
  ruleset_id:
    description:
      - With O(state=confirmed), the id that O(state=present) returned; confirming fails unless
        that ruleset is the one running. Defaults to the id of the file on disk.
    type: str
  lock_timeout:
    description: Seconds to wait for another run on this host to finish.
    type: int
    default: 120
"""

EXAMPLES = r"""
- name: Check, write and load the complete ruleset; revert unless confirmed within 60 s
  keel.platform.nft_ruleset:
    ruleset: "{{ lookup('ansible.builtin.template', 'nftables.conf.j2') }}"
    fragments:
      postgresql: "{{ lookup('ansible.builtin.template', 'fragment.nft.j2') }}"
    confirm_timeout: 60
  register: firewall_load

- name: Drop the connection, so that the confirmation needs a new one
  ansible.builtin.meta: reset_connection

- name: Confirm over a new connection
  keel.platform.nft_ruleset:
    state: confirmed
  when: firewall_load.revert_armed
"""

RETURN = r"""
ruleset_id:
  description: Id of the complete ruleset (a hash of its text), also carried by the loaded ruleset.
  returned: always
  type: str
  sample: 3f6d0c1e9a2b4c5d
running_id:
  description: Id of the ruleset that ran before this task (null when Keel's table was not loaded).
  returned: always
  type: str
written:
  description: Whether the ruleset file was (or in check mode would be) rewritten.
  returned: state=present
  type: bool
fragments_changed:
  description: Owners whose fragment was (or would be) written or removed.
  returned: state=present
  type: list
  elements: str
loaded:
  description: Whether the ruleset was (or would be) loaded.
  returned: state=present
  type: bool
revert_armed:
  description: Whether a revert timer is waiting for O(state=confirmed).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keel.platform.plugins.module_utils.nft_apply import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "confirmed"], default="present"),
            ruleset=dict(type="str"),
            fragments=dict(type="dict", default={}),
            path=dict(type="path", default="/etc/nftables.conf"),
            fragments_dir=dict(type="path", default="/etc/keel/firewall"),
            state_dir=dict(type="path", default="/var/lib/keel/firewall"),
            confirm_timeout=dict(type="int", default=0),
            ruleset_id=dict(type="str"),
            lock_timeout=dict(type="int", default=120),
        ),
        required_if=[("state", "present", ["ruleset"])],
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
