#!/usr/bin/env bash
# Switchover and failover as a client sees them, side by side, on real hosts: the Molecule
# scenario `postgresql` (a primary, a synchronous replica, the object store, an app host) runs
# from scratch; its drills insert sequence numbers through the multi-host DSN the whole time,
# once across playbooks/postgresql_switchover.yml and once across a killed primary and
# playbooks/postgresql_failover.yml. Printed: inserts acknowledged, acknowledged inserts missing
# afterwards, and the longest gap between two acknowledged inserts (the write unavailability
# the client saw, the playbook's own run included). Targets (issue 8): switchover at most
# 10 s and 0 lost; failover with synchronous replication 0 lost.
#
#   benchmarks/postgresql_ha.sh            (Debian 13; KEEL_LAB_RELEASE=bookworm for Debian 12)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1
export KEEL_LAB_RELEASE="${KEEL_LAB_RELEASE:-trixie}"
mkdir -p benchmarks/results
log="benchmarks/results/postgresql_ha-$(date -u +%Y%m%dT%H%M%SZ).log"
start=$SECONDS
molecule test -s postgresql >"$log" 2>&1 || { echo "the scenario failed; see $log" >&2; tail -n 30 "$log" >&2; exit 1; }
printf 'Debian %s (PostgreSQL 15 on bookworm, 17 on trixie), scenario run %ss, log %s\n\n' \
  "$KEEL_LAB_RELEASE" $((SECONDS - start)) "$log"
printf '%-26s %12s %6s %22s\n' operation acknowledged lost 'write unavailability'
# The output callback folds long messages over lines: join them before reading the figures.
tr -s ' \n' ' ' < "$log" |
  grep -oE '(switchover|failover \(synchronous\)): [0-9]+ inserts acknowledged, [0-9]+ lost, longest write gap [0-9.]+ s' |
  sed -E 's/^(.*): ([0-9]+) inserts acknowledged, ([0-9]+) lost, longest write gap ([0-9.]+) s$/\1|\2|\3|\4/' |
  while IFS='|' read -r op acked lost gap; do printf '%-26s %12s %6s %20s s\n' "$op" "$acked" "$lost" "$gap"; done
