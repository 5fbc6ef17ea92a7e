#!/usr/bin/env bash
# Runs the whole test suite, as CI does, on a fresh Debian machine with Rust and
# Python 3 present: installs what the tests need when it is missing (idempotent and
# quick when already there), checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages the integration tests start for real.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
command -v prometheus-node-exporter >/dev/null 2>&1 || missing+=(prometheus-node-exporter)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The real Python prometheus_client, the oracle of multiproc-exporter's and exposition's tests.
PROM_CLIENT=0.26.0
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('prometheus-client') != '$PROM_CLIENT')" 2>/dev/null; then
  echo "==> installing prometheus-client==$PROM_CLIENT"
  python3 -m pip install -q "prometheus-client==$PROM_CLIENT" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "prometheus-client==$PROM_CLIENT"
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace
