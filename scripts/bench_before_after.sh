#!/usr/bin/env bash
# Runs the same benchmark set on an earlier revision and on the work tree, one after the
# other in one sitting, so a change's speed can be compared (each bench already alternates
# websession with its peers; compare the printed ratios).
#   scripts/bench_before_after.sh REV [OUT_DIR]
# Also counts CPU instructions per memory WSGI request with callgrind (deterministic where
# wall-clock timings on a shared machine are not), if valgrind is installed.
set -euo pipefail
rev=${1:?usage: scripts/bench_before_after.sh REV [OUT_DIR]}
out=${2:-bench/results/before-after}
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv/bin/python
before=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$before" >/dev/null 2>&1 || true' EXIT
git -C "$root" worktree add --detach --force "$before" "$rev" >/dev/null
mkdir -p "$out"

run() {  # run TREE LABEL
  local tree=$1 label=$2
  (
    cd "$tree"
    export PYTHONPATH=$tree/src:$tree
    "$py" -m bench --rounds 7 --requests 10000
    for only in file cookie sqlite; do "$py" -m bench.storage_bench --rounds 5 --only "$only"; done
    "$py" -m bench.redis_bench --quick
    "$py" -m bench.sql_bench --quick --skip-gc
  ) > "$out/$label.txt" 2>&1
  echo "$label: $out/$label.txt"
}

instructions() {  # instructions TREE: per memory WSGI request, 2,500 minus 500 requests
  local tree=$1 n total=()
  for n in 500 2500; do
    total+=("$(cd "$tree" && PYTHONHASHSEED=0 PYTHONPATH=$tree/src:$tree valgrind \
      --tool=callgrind --callgrind-out-file=/dev/null "$py" -c \
      "from bench.wsgi import websession_peer, run_wsgi; run_wsgi(websession_peer(), $n)" \
      2>&1 | awk '/Collected/ {gsub(",", "", $4); print $4}')")
  done
  echo $(( (total[1] - total[0]) / 2000 ))
}

run "$before" before
run "$root" after
if command -v valgrind >/dev/null; then
  echo "instructions per memory WSGI request: before $(instructions "$before"), after $(instructions "$root")"
fi
