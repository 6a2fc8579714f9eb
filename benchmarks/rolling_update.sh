#!/usr/bin/env bash
# Rolling update of the app tier under load, beside a naive update (stop every container, start
# the new ones, then switch), in one run: seconds, requests served, failed requests, p99
# latency before and during each. It runs the app scenario's drill (molecule/app/drill_rollout.yml:
# N to N+1 rolling, a broken version, the rollback, then the naive N to N+1) against the
# scenario's converged hosts, and prints the drill's table. Figures only; the drill itself
# asserts no failed request for the rolling cases.
#   molecule converge -s app        # once (KEEL_LAB_RELEASE=trixie for Debian 13)
#   bash benchmarks/rolling_update.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
# Molecule's scenario directory for this checkout: the most recently written app inventory
# (other checkouts have directories of their own).
eph=""
for inv in "$HOME"/.ansible/tmp/molecule.*.app/inventory/ansible_inventory.yml; do
  [ -f "$inv" ] || continue
  if [ -z "$eph" ] || [ "$inv" -nt "$eph/inventory/ansible_inventory.yml" ]; then eph=${inv%/inventory/ansible_inventory.yml}; fi
done
if [ -z "$eph" ]; then
  echo "rolling_update.sh: converge the app scenario first (molecule converge -s app)" >&2
  exit 2
fi
export MOLECULE_PROJECT_DIRECTORY="$root" MOLECULE_SCENARIO_DIRECTORY="$root/molecule/app" \
  MOLECULE_INVENTORY_FILE="$eph/inventory/ansible_inventory.yml" MOLECULE_EPHEMERAL_DIRECTORY="$eph" \
  ANSIBLE_CONFIG="$root/ansible.cfg" ANSIBLE_CACHE_PLUGIN_CONNECTION="$eph/facts"
cd "$root/molecule/app"
ansible-playbook -i "$MOLECULE_INVENTORY_FILE" drill_rollout.yml > "$eph/rolling_update_benchmark.log" 2>&1 || {
  tail -n 40 "$eph/rolling_update_benchmark.log"; exit 1; }
# The table is the msg of the task "Rolling update against the naive update".
sed -n '/Rolling update against the naive update/,/^$/p' "$eph/rolling_update_benchmark.log" | grep '^ *"' | sed 's/^ *"//; s/",\?$//'
