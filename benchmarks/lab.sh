#!/usr/bin/env bash
# Prints, in one run, on the ten-host lab:
#   - lab creation time (from the cached image, hosts destroyed first)
#   - first converge of site.yml
#   - no-op re-run of site.yml with Keel's ansible.cfg
#   - the same no-op re-run with stock Ansible settings (no pipelining, no fact cache,
#     default forks, default callback): only the collection path is kept so keel.platform resolves.
# Figures are printed, never asserted. Usage: bash benchmarks/lab.sh [--keep]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup
export PATH="$root/.venv/bin:$PATH"
out="$root/.cache/bench"
mkdir -p "$out"

# timed LOG COMMAND...: run COMMAND with its output in LOG; print its wall seconds.
timed() {
  local log=$1 start; shift
  start=$(date +%s%N)
  "$@" >"$log" 2>&1 || { echo "benchmark step failed: $*; see $log" >&2; exit 1; }
  awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'
}

# Warm the image cache so creation time means "start hosts", as after the first use.
bash lab/image/build.sh "${KEEL_LAB_RELEASE:-bookworm}" >/dev/null
scripts/lab destroy >/dev/null 2>&1

stock_cfg="$out/stock-ansible.cfg"
cat >"$stock_cfg" <<CFG
[defaults]
collections_path = $root/collections
CFG

t_create=$(timed "$out/create.log" scripts/lab create)
t_first=$(timed "$out/first.log" ansible-playbook site.yml -i inventories/lab)
t_noop=$(timed "$out/noop-tuned.log" ansible-playbook site.yml -i inventories/lab)
t_stock=$(timed "$out/noop-stock.log" env ANSIBLE_CONFIG="$stock_cfg" ansible-playbook site.yml -i inventories/lab)

changed() { grep -E '^\S+ +: ok=' "$1" | grep -oE 'changed=[0-9]+' | awk -F= '{ n += $2 } END { print n }'; }
hosts=$(grep -cE '^\S+ +: ok=' "$out/first.log")

printf '\nKeel lab benchmark (%s hosts, %s, %s cores)\n' "$hosts" "${KEEL_LAB_RELEASE:-bookworm}" "$(nproc)"
printf '%-44s %10s %10s\n' "step" "seconds" "changed"
printf '%-44s %10.1f %10s\n' "lab creation (cached image)" "$t_create" "-"
printf '%-44s %10.1f %10s\n' "site.yml first converge" "$t_first" "$(changed "$out/first.log")"
printf '%-44s %10.1f %10s\n' "site.yml no-op re-run, Keel ansible.cfg" "$t_noop" "$(changed "$out/noop-tuned.log")"
printf '%-44s %10.1f %10s\n' "site.yml no-op re-run, stock settings" "$t_stock" "$(changed "$out/noop-stock.log")"
awk -v s="$t_stock" -v t="$t_noop" 'BEGIN { printf "no-op re-run: stock settings take %.2fx as long as Keel'"'"'s\n", s / t }'
printf 'logs: %s\n' "$out"

[ "${1:-}" = "--keep" ] || scripts/lab destroy >/dev/null 2>&1
