#!/bin/sh
# Free and total space of the filesystem holding a path, from df (any program that
# prints exposition text on stdout is an exporter; this is script_exporter's job).
#
# Parameter: ?mount=/var arrives as $HTTPSD_PARAM_MOUNT (default /). It is passed to
# df as a path, never to a shell; a path df cannot stat makes df fail, the script exit
# non-zero and the exporter `httpsd_exporter_up 0`, with df's message in httpsd's log.
set -eu

path="${HTTPSD_PARAM_MOUNT:-/}"
# Captured first: a failing df in a pipeline would be hidden by awk's status (no
# pipefail in POSIX sh). -P: one line per filesystem; -k: sizes in KiB.
out=$(df -Pk -- "$path")

# The path goes through the environment: awk -v would interpret backslashes in it.
printf '%s\n' "$out" | HTTPSD_DISK_PATH="$path" awk '
# Label value escaping; "&&" doubles each backslash the same way in every awk.
function esc(s) { gsub(/\\/, "&&", s); gsub(/"/, "\\\"", s); gsub(/\n/, "\\n", s); return s }
NR == 2 {
    labels = sprintf("path=\"%s\",device=\"%s\",mount=\"%s\"", esc(ENVIRON["HTTPSD_DISK_PATH"]), esc($1), esc($6))
    print "# HELP disk_size_bytes Size of the filesystem."
    print "# TYPE disk_size_bytes gauge"
    printf "disk_size_bytes{%s} %.0f\n", labels, $2 * 1024
    print "# HELP disk_free_bytes Space available to unprivileged users."
    print "# TYPE disk_free_bytes gauge"
    printf "disk_free_bytes{%s} %.0f\n", labels, $4 * 1024
}'
