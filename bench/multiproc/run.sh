#!/usr/bin/env bash
# One command: throw-away venv with prometheus-client==0.26.0, release build, real
# multiprocess directories of 20/200/2,000 processes on /dev/shm, Python vs us side by
# side, Markdown table on stdout.
#
#   bench/multiproc/run.sh                 # all sizes (2,000 takes a few minutes)
#   SIZES=20,200 bench/multiproc/run.sh    # quicker
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${BENCH_VENV:-${TMPDIR:-/tmp}/mpe-bench-venv}"
root="${BENCH_ROOT:-/dev/shm/mpe-bench}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q 'prometheus-client==0.26.0'
(cd "$repo" && cargo build --release -q -p multiproc-exporter)
target="${CARGO_TARGET_DIR:-$repo/target}"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(uname -sr)" >&2
trap 'rm -rf "$root"' EXIT
"$venv/bin/python" "$here/bench.py" --python "$venv/bin/python" \
  --binary "$target/release/multiproc-exporter" --sizes "${SIZES:-20,200,2000}" \
  --root "$root" --runs "${RUNS:-15}"
