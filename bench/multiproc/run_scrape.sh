#!/usr/bin/env bash
# One command for issue 18's table: warm scrapes on 200 / 2,000 / 10,000 writers ever
# (8 alive), this tree's release binary against a base revision's (same output bytes
# checked), Python's generate_latest on 200 and 2,000.
#
#   bench/multiproc/run_scrape.sh                   # base = BASE_REV (default 8a42692)
#   BASE_BIN=/path/to/old/multiproc-exporter bench/multiproc/run_scrape.sh
#   SIZES=200,2000 RUNS=9 BENCH_ROOT=/dev/shm/x bench/multiproc/run_scrape.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
python="${BENCH_PYTHON:-python3}"
"$python" -c 'import prometheus_client' 2>/dev/null || {
  venv="${BENCH_VENV:-${TMPDIR:-/tmp}/mpe-bench-venv}"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'prometheus-client==0.26.0'
  python="$venv/bin/python"
}
(cd "$repo" && cargo build --release -q -p multiproc-exporter)
new="$(mktemp -d)/multiproc-exporter-new"
cp "$target/release/multiproc-exporter" "$new"
base="${BASE_BIN:-}"
if [ -z "$base" ]; then
  wt="$(mktemp -d)/base"
  git -C "$repo" worktree add -q --detach "$wt" "${BASE_REV:-8a42692}"
  (cd "$wt" && CARGO_TARGET_DIR="$target" cargo build --release -q -p multiproc-exporter)
  base="$(dirname "$new")/multiproc-exporter-base"
  cp "$target/release/multiproc-exporter" "$base"
  git -C "$repo" worktree remove --force "$wt"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$python" "$here/scrape.py" --binary "$new" --base "$base" --python "$python" \
  --sizes "${SIZES:-200,2000,10000}" --root "${BENCH_ROOT:-/dev/shm/mpe-scrape}" --runs "${RUNS:-7}"
