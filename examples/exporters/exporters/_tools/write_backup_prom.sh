#!/bin/sh
# How a cron job writes backup/last_run.prom (node_exporter's textfile convention):
# write a temporary file in the same directory, then rename it over the real one, so
# httpsd never reads a half-written file. The temporary name starts with "." and is
# therefore ignored by httpsd. `_tools/` itself is ignored too (leading "_").
#
#   usage: _tools/write_backup_prom.sh DATABASE DURATION_SECONDS SIZE_BYTES
set -eu
dir="$(cd "$(dirname "$0")/../backup" && pwd)"
db="$1" duration="$2" size="$3"
tmp="$dir/.last_run.prom.$$"
trap 'rm -f "$tmp"' EXIT
cat > "$tmp" <<PROM
# HELP backup_last_success_timestamp_seconds When the nightly backup last succeeded (Unix time).
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds{database="$db"} $(date +%s)
# HELP backup_duration_seconds How long the last backup took.
# TYPE backup_duration_seconds gauge
backup_duration_seconds{database="$db"} $duration
# HELP backup_size_bytes Size of the last backup.
# TYPE backup_size_bytes gauge
backup_size_bytes{database="$db"} $size
PROM
mv "$tmp" "$dir/last_run.prom"
