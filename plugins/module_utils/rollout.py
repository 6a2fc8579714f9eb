# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions for a rolling container update, separate from the Docker calls that carry them out.

A service's containers carry labels: the service, a generation number and a hash of the
desired configuration. A rollout starts the next generation beside the current one on the
other "slot" of host ports (blue/green), so both can serve while the load balancer switches.
"""

from __future__ import annotations

import hashlib
import json

LABEL_SERVICE = "keel.rollout.service"
LABEL_GENERATION = "keel.rollout.generation"
LABEL_HASH = "keel.rollout.config-hash"
LABEL_SLOT = "keel.rollout.slot"
# Image IDs the service has run, newest first: what "previous images" means for pruning.
LABEL_HISTORY = "keel.rollout.image-history"
HISTORY_LIMIT = 20


def config_hash(image_id, config, secrets):
    """Hash of everything that defines the containers. Secrets count by their own hash only,
    so changing a secret rolls the service without the secret appearing anywhere."""
    secret_digest = dict((k, hashlib.sha256(str(v).encode("utf-8")).hexdigest()) for k, v in sorted((secrets or {}).items()))
    document = json.dumps({"image": image_id, "config": config, "secrets": secret_digest}, sort_keys=True, default=str)
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:16]


def host_ports(port_base, replicas, slot, container_ports):
    """Host ports of each replica in a slot: slot 0 and slot 1 never overlap.

    Replica ``i`` of slot ``s`` publishes container port number ``j`` (in ``container_ports``
    order) on ``port_base + (s * replicas + i) * len(container_ports) + j``.
    """
    out = []
    width = len(container_ports)
    for index in range(replicas):
        first = port_base + (slot * replicas + index) * width
        out.append(dict((cport, first + j) for j, cport in enumerate(container_ports)))
    return out


class Current(object):
    """The service's containers as found, grouped by generation."""

    def __init__(self, containers):
        # containers: dicts with name, labels, running (bool), image_id
        self.containers = containers
        self.generations = {}
        for container in containers:
            gen = int(container["labels"].get(LABEL_GENERATION, "0") or 0)
            self.generations.setdefault(gen, []).append(container)

    @property
    def newest_generation(self):
        return max(self.generations) if self.generations else 0

    def newest(self):
        return self.generations.get(self.newest_generation, [])


def plan(current, desired_hash, replicas):
    """What to do: ``{'action': 'none'|'rollout'|'retire', 'generation', 'slot', 'retire': [names]}``.

    * Up to date: the newest generation has exactly ``replicas`` running containers with the
      desired hash. Older generations still around are only retired (a finished rollout whose
      old containers were kept for the load balancer switch).
    * Otherwise a new generation is rolled out on the slot the newest one does not use.
    """
    newest = current.newest()
    up_to_date = (
        len(newest) == replicas
        and all(c["running"] and c["labels"].get(LABEL_HASH) == desired_hash for c in newest)
    )
    older = sorted(c["name"] for gen, cs in current.generations.items() if gen != current.newest_generation for c in cs)
    if up_to_date:
        slot = int(newest[0]["labels"].get(LABEL_SLOT, "0") or 0) if newest else 0
        return {"action": "retire" if older else "none", "generation": current.newest_generation, "slot": slot, "retire": older}
    used_slot = int(newest[0]["labels"].get(LABEL_SLOT, "1") or 1) if newest else 1
    return {
        "action": "rollout",
        "generation": current.newest_generation + 1,
        "slot": 1 - used_slot,
        "retire": sorted(c["name"] for c in current.containers),
    }


def read_history(labels):
    value = (labels or {}).get(LABEL_HISTORY, "")
    return [i for i in value.split(",") if i]


def next_history(history, image_id, limit=HISTORY_LIMIT):
    """The deployment history after deploying ``image_id``: it first, no repeats, bounded."""
    out = [image_id] + [i for i in history if i != image_id]
    return out[:limit]


def images_to_prune(history, in_use, keep):
    """Image IDs the service deployed before its ``keep`` most recent ones, never one in use.

    Only images in the service's own deployment history are candidates: an image it never
    ran (a version pulled ahead of a rollout, another service's) is never removed.
    """
    return [i for i in history[keep:] if i not in in_use]
