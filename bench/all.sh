#!/usr/bin/env bash
# Runs every side-by-side benchmark of bench/ in sequence and collects the Markdown
# results under bench/out/results/ (one file per comparison, plus all.md).
# Usage: bench/all.sh            (about 15 minutes on a 2-core machine)
# A comparison whose feature has not landed prints "NOT MEASURED ... feature not
# landed" and the others still run.
set -u
cd "$(dirname "$0")/.."
R=bench/out/results
mkdir -p $R
: > $R/all.md
for s in static python_gen check reload redis_path slow_gen scale exporters; do
  echo "=== $s" >&2
  if python3 "bench/$s.py" --markdown "$R/$s.md" > "$R/$s.txt"; then
    cat "$R/$s.md" >> $R/all.md
  else
    rc=$?
    { echo "### bench/$s.py"; echo; grep -h "NOT MEASURED" "$R/$s.txt" || echo "FAILED with exit code $rc (see $R/$s.txt)"; echo; } >> $R/all.md
  fi
  cat "$R/$s.txt"
done
echo "results: bench/out/results/all.md" >&2
