#!/usr/bin/env bash
# Prints, in one run, on the hosts of the Molecule scenario `postgresql` (after
# `molecule converge -s postgresql`, with the same KEEL_PG_NET):
#   - RPO of WAL archiving: for a few single writes on an otherwise quiet primary, the seconds
#     from the commit until the WAL segment holding it is in the pgBackRest repository
#     (archive_timeout is the role's default, 60 s: the bound is about that plus the push);
#   - the restore time of a ~1 GB database (pgbench -i -s 70): playbooks/postgresql_restore.yml
#     to the latest point (restore, recovery, promotion and the replica's re-clone; no backup
#     after), beside `pg_dump | psql` of the same database into a fresh database on the primary.
# Figures are printed, never asserted. It changes the scenario's cluster: a database `bench`
# (dropped at the end), a full backup, a restore (old data directories moved aside and, on
# these throw-away hosts, removed at the end).
# Usage: KEEL_PG_NET=85 bash benchmarks/postgresql_restore.sh [SCALE] [RPO_SAMPLES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH" ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
net=${KEEL_PG_NET:-84}
prefix="keel-pg$net-"
scale=${1:-70}
samples=${2:-3}
out="$root/.cache/bench"
mkdir -p "$out"

# The scenario's inventory: Molecule's ephemeral directory for this prefix.
eph=$(grep -l "lab_container_prefix: $prefix\$" "${ANSIBLE_HOME:-$HOME/.ansible}"/tmp/molecule.*.postgresql/molecule.yml 2>/dev/null \
      | head -1 | xargs -r dirname)
[ -n "$eph" ] || { echo "no converged Molecule scenario 'postgresql' with KEEL_PG_NET=$net" >&2; exit 1; }
export ANSIBLE_CONFIG="$root/ansible.cfg" ANSIBLE_CACHE_PLUGIN_CONNECTION="$eph/facts"
export MOLECULE_EPHEMERAL_DIRECTORY="$eph" MOLECULE_PROJECT_DIRECTORY="$root"
inventory="$eph/inventory/ansible_inventory.yml"

# sql HOST [DB] SQL: one value from psql as postgres on a scenario host.
sql() { local host=$1 db=postgres; [ $# -eq 3 ] && { db=$2; shift; }; docker exec "$prefix$host" runuser -u postgres -- psql -XAtq -d "$db" -c "$2"; }
on() { local host=$1; shift; docker exec "$prefix$host" runuser -u postgres -- "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

primary=""
for h in pgm-db1 pgm-db2; do
  [ "$(sql $h 'SELECT pg_is_in_recovery()')" = f ] && primary=$h
done
[ -n "$primary" ] || { echo "no primary answers" >&2; exit 1; }
timeout=$(sql "$primary" 'SHOW archive_timeout')
echo "primary: $primary, archive_timeout $timeout, scale $scale" >&2

# --- RPO: archive lag behind a single write ----------------------------------------------
sql "$primary" 'CREATE TABLE IF NOT EXISTS bench_rpo (at timestamptz DEFAULT now())' >/dev/null
lags=()
for i in $(seq 1 "$samples"); do
  # A random point in the archive_timeout cycle, as a real write would fall.
  sleep $((RANDOM % 20))
  seg=$(sql "$primary" "INSERT INTO bench_rpo DEFAULT VALUES RETURNING pg_walfile_name(pg_current_wal_insert_lsn())")
  t0=$(now)
  # The segment is in the repository when archive-get can fetch it from there.
  until on "$primary" pgbackrest --stanza=main --no-archive-async archive-get "$seg" "/tmp/bench-$seg" >/dev/null 2>&1; do sleep 0.5; done
  on "$primary" rm -f "/tmp/bench-$seg"
  lags+=("$(secs "$t0" "$(now)")")
  echo "write $i: segment $seg in the repository after ${lags[-1]} s" >&2
done
sql "$primary" 'DROP TABLE bench_rpo' >/dev/null

# --- 1 GB database: restore playbook vs pg_dump | psql ---------------------------------------
sql "$primary" 'DROP DATABASE IF EXISTS bench' >/dev/null
sql "$primary" 'DROP DATABASE IF EXISTS bench_copy' >/dev/null
sql "$primary" 'CREATE DATABASE bench' >/dev/null
t0=$(now)
on "$primary" pgbench -q -i -s "$scale" bench >"$out/pgbench-init.log" 2>&1
t_init=$(secs "$t0" "$(now)")
size=$(sql "$primary" "SELECT pg_size_pretty(pg_database_size('bench'))")
bytes=$(sql "$primary" "SELECT pg_database_size('bench')")

sql "$primary" 'CREATE DATABASE bench_copy' >/dev/null
t0=$(now)
docker exec "$prefix$primary" runuser -u postgres -- sh -c 'pg_dump -d bench | psql -XAtq -v ON_ERROR_STOP=1 -d bench_copy' \
  >"$out/dump-restore.log" 2>&1
t_dump=$(secs "$t0" "$(now)")
sql "$primary" 'DROP DATABASE bench_copy' >/dev/null

t0=$(now)
on "$primary" pgbackrest --stanza=main --type=full backup >"$out/backup.log" 2>&1
t_backup=$(secs "$t0" "$(now)")

t0=$(now)
ansible-playbook playbooks/postgresql_restore.yml -i "$inventory" -e postgresql_restore_host="$primary" \
  -e postgresql_restore_latest=true -e postgresql_restore_backup_after=false >"$out/restore-playbook.log" 2>&1 \
  || { echo "the restore playbook failed; see $out/restore-playbook.log" >&2; exit 1; }
t_restore=$(secs "$t0" "$(now)")
# The step's own time, from the profile_tasks timings: the line after the task's output.
t_step=$(awk '/TASK \[Restore \| Restore from the repository/ { f = 1 } f && /^[A-Z][a-z]+day .*\(([0-9:.]+)\)/ { if (++n == 1) { match($0, /\(([0-9:.]+)\)/); print substr($0, RSTART + 1, RLENGTH - 2); exit } }' "$out/restore-playbook.log")
rows=$(sql "$primary" bench 'SELECT count(*) FROM pgbench_accounts')

sql "$primary" 'DROP DATABASE bench' >/dev/null
for h in pgm-db1 pgm-db2; do docker exec "$prefix$h" sh -c 'rm -rf /var/lib/postgresql/*/*.keel-before-restore-*'; done

printf '\nPostgreSQL PITR benchmark (scenario postgresql, KEEL_PG_NET=%s, %s cores)\n' "$net" "$(nproc)"
printf 'RPO: archive lag behind a single write (archive_timeout %s): %s s (min %s, max %s)\n' "$timeout" \
  "$(printf '%s\n' "${lags[@]}" | awk '{ s += $1 } END { printf "%.1f mean of %d", s / NR, NR }')" \
  "$(printf '%s\n' "${lags[@]}" | sort -n | head -1)" "$(printf '%s\n' "${lags[@]}" | sort -n | tail -1)"
printf 'database bench: %s (%s bytes, pgbench -i -s %s took %s s), %s rows after the restore\n' "$size" "$bytes" "$scale" "$t_init" "$rows"
printf '%-62s %10s\n' "step" "seconds"
printf '%-62s %10s\n' "pg_dump bench | psql bench_copy (on the primary)" "$t_dump"
printf '%-62s %10s\n' "full backup before the restore (pgbackrest, not in the restore)" "$t_backup"
printf '%-62s %10s\n' "postgresql_restore.yml latest, whole playbook (incl. re-clone)" "$t_restore"
printf '%-62s %10s\n' "  of which pgbackrest restore (h:mm:ss)" "${t_step:-?}"
printf 'logs: %s\n' "$out"
