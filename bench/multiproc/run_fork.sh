#!/usr/bin/env bash
# One command: throw-away venvs with prometheus-client==0.26.0 and with the postmates fork
# (from ../shared/oracles, beside the clone), release build, a 2,000-worker directory of
# each on /dev/shm, each read by its own Python collector and by us, Markdown table on stdout.
#
#   bench/multiproc/run_fork.sh              # 2,000 workers
#   PIDS=200 bench/multiproc/run_fork.sh     # quicker
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fork_src="${FORK_SRC:-$repo/../shared/oracles/postmates-prometheus-client}"
venv="${BENCH_VENV:-${TMPDIR:-/tmp}/mpe-bench-venv}"
fvenv="${BENCH_FORK_VENV:-${TMPDIR:-/tmp}/mpe-bench-fork-venv}"
root="${BENCH_ROOT:-/dev/shm/mpe-bench-fork}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
[ -x "$fvenv/bin/python" ] || python3 -m venv "$fvenv"
"$venv/bin/pip" install -q 'prometheus-client==0.26.0'
"$fvenv/bin/pip" install -q "$fork_src"
(cd "$repo" && cargo build --release -q -p multiproc-exporter)
target="${CARGO_TARGET_DIR:-$repo/target}"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(uname -sr)" >&2
trap 'rm -rf "$root"' EXIT
cd "$here"
"$venv/bin/python" "$here/fork_vs_upstream.py" --python "$venv/bin/python" \
  --python-fork "$fvenv/bin/python" --binary "$target/release/multiproc-exporter" \
  --pids "${PIDS:-2000}" --root "$root" --runs "${RUNS:-15}"
