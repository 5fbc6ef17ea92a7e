#!/usr/bin/env python3
"""Warm-scrape benchmark (issue 18): what a scrape costs when most writers are dead.

    scrape.py --binary NEW [--base OLD] [--python PY] [--sizes 200,2000,10000] [--root DIR]
              [--runs RUNS] [--starts STARTS]

For each size N (writers ever, 8 alive) it makes or reuses a directory, starts each binary
on it STARTS times, alternating with the base binary (first and second scrape of each
start: their medians, since one cold scrape is one noisy sample), scrapes /metrics RUNS times warm in the last start, and prints
one Markdown table: first scrape, second scrape (the one where dead writers' files settle
and their reduction is built), warm median, peak RSS (VmHWM), body size, and Python's `generate_latest` of a
`MultiProcessCollector` on the same directory (sizes up to --python-max). With --base it
also checks that both binaries serve the same bytes (SHA-256 of the body without our own
`multiproc_exporter_*` lines) and exits 1 when they differ.

Directories: 200 and 2,000 are made by gen_dir.py (real forked writers; the 8 alive ones
are held until this script ends). The 10,000 one is derived from the 2,000 one: its files
plus copies of the dead writers' files under fresh pids above pid_max (so proven dead),
which gives 10,000 writers ever in minutes instead of an hour of generation. A directory
with a `.alive` file whose pids are all alive is reused as it is.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import PY_SCRAPE, Exporter  # noqa: E402


def alive_pids(d):
    try:
        with open(os.path.join(d, '.alive')) as f:
            pids = [int(p) for p in f.read().split()[1:]]
    except (OSError, ValueError):
        return None
    return pids if pids and all(os.path.exists(f'/proc/{p}') for p in pids) else None


def generate(py, d, n, held):
    """Runs gen_dir.py; its alive writers live while its stdin (kept in `held`) is open."""
    gen = subprocess.Popen([py, os.path.join(HERE, 'gen_dir.py'), '--dir', d, '--pids', str(n),
                            '--alive', '8'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    line = gen.stdout.readline()
    held.append(gen)
    with open(os.path.join(d, '.alive'), 'w') as f:
        f.write(line)


def sparse_copy(a, b):
    """Copies the used part of a .db file and keeps its length sparse (like the client's
    truncate-then-mmap), so the copies cost tmpfs memory for what they use only."""
    if not a.endswith('.db'):
        return shutil.copyfile(a, b)
    with open(a, 'rb') as f:
        head = f.read(8)
        used = max(8, int.from_bytes(head[:4], 'little', signed=True))
        data = head + f.read(used - 8)
    with open(b, 'wb') as f:
        f.write(data)
        f.truncate(os.path.getsize(a))


def derive(src, d, n):
    """`src`'s files plus its dead writers' files copied under new pids up to n writers."""
    alive = set(alive_pids(src) or [])
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d, copy_function=sparse_copy)
    by_pid = {}
    for f in sorted(os.listdir(src)):
        if f.endswith('.db'):
            by_pid.setdefault(int(f.rsplit('_', 1)[1][:-3]), []).append(f)
    dead = sorted(p for p in by_pid if p not in alive)
    with open('/proc/sys/kernel/pid_max') as f:
        fake = int(f.read()) + 1
    for i in range(n - len(by_pid)):
        pid = dead[i % len(dead)]
        for f in by_pid[pid]:
            new = f.rsplit('_', 1)[0] + f'_{fake + i}.db'
            sparse_copy(os.path.join(src, f), os.path.join(d, new))


def cpu_seconds(pid):
    """utime + stime of a process: what a scrape costs, less sensitive than wall time to
    other load on a shared machine."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cold_scrapes(exp):
    """First scrape's wall and CPU time, second scrape's wall time, of a fresh start."""
    cpu0 = cpu_seconds(exp.proc.pid)
    first = exp.scrape()[0]
    cpu = cpu_seconds(exp.proc.pid) - cpu0
    return first, cpu, exp.scrape()[0]


def cold_start(binary, d):
    exp = Exporter(binary, d)
    try:
        return cold_scrapes(exp)
    finally:
        exp.stop()


def measure(binary, d, runs, colds):
    """`colds`: cold_start() results of other starts of `binary` (one start is one sample
    of the cold scrapes, a noisy one: the table gives their medians)."""
    exp = Exporter(binary, d)
    try:
        colds = colds + [cold_scrapes(exp)]
        times = [colds[-1][0], colds[-1][2]]
        body = exp.scrape()[1]
        cpu0 = cpu_seconds(exp.proc.pid)
        for _ in range(runs):
            t, body = exp.scrape()
            times.append(t)
        cpu = (cpu_seconds(exp.proc.pid) - cpu0) / runs
        rss = exp.peak_rss_kb()
    finally:
        exp.stop()
    stable = b'\n'.join(line for line in body.split(b'\n') if b'multiproc_exporter_' not in line)
    return dict(first=statistics.median(c[0] for c in colds),
                first_cpu=statistics.median(c[1] for c in colds),
                second=statistics.median(c[2] for c in colds),
                warm=statistics.median(times[2:]), cpu=cpu,
                rss_kb=rss, bytes=len(body), sha=hashlib.sha256(stable).hexdigest())


def ms(x):
    return f'{x * 1000:.1f}' if x < 10 else f'{x * 1000:.0f}'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary', required=True)
    ap.add_argument('--base', help='binary of the previous version, for the output check')
    ap.add_argument('--python', default=sys.executable, help='python with prometheus-client')
    ap.add_argument('--sizes', default='200,2000,10000')
    ap.add_argument('--python-max', type=int, default=2000)
    ap.add_argument('--root', default='/dev/shm/mpe-scrape')
    ap.add_argument('--runs', type=int, default=7)
    ap.add_argument('--starts', type=int, default=5,
                    help='fresh starts per binary and size (first and second scrape: median)')
    args = ap.parse_args()
    os.makedirs(args.root, exist_ok=True)
    held, rows, same = [], [], True
    try:
        for n in [int(x) for x in args.sizes.split(',')]:
            d = os.path.join(args.root, f'mp{n}')
            if alive_pids(d) is None:
                if n > 2000:
                    src = os.path.join(args.root, 'mp2000')
                    if alive_pids(src) is None:
                        generate(args.python, src, 2000, held)
                    derive(src, d, n)
                else:
                    generate(args.python, d, n, held)
            files = sum(1 for f in os.listdir(d) if f.endswith('.db'))
            # Starts of both binaries alternate, so that a change of the machine's load
            # weighs on both alike.
            colds = {b: [] for b in (args.binary, args.base) if b}
            for _ in range(args.starts - 1):
                for b in colds:
                    colds[b].append(cold_start(b, d))
            new = measure(args.binary, d, args.runs, colds[args.binary])
            base = measure(args.base, d, args.runs, colds[args.base]) if args.base else None
            if base and base['sha'] != new['sha']:
                same = False
            py = None
            if n <= args.python_max:
                out = subprocess.run([args.python, '-c', PY_SCRAPE, d, '1'], check=True,
                                     capture_output=True, text=True).stdout
                py = json.loads(out)
            rows.append((n, files, new, base, py))
            print(f'# done {n}: {json.dumps([new, base, py])}', file=sys.stderr, flush=True)
    finally:
        for g in held:
            g.stdin.close()
            g.wait()
    print(f'| writers ever | files | binary | first scrape (median of {args.starts} starts) '
          f'| first scrape CPU (median) | second scrape (median) | warm scrape (median of {args.runs}) | warm scrape CPU (mean) | peak RSS | body | same output as base | Python `generate_latest` '
          '| Python peak RSS |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for n, files, new, base, py in rows:
        for label, r in (('base', base), ('new', new)):
            if r is None:
                continue
            check = '' if base is None else ('yes' if base['sha'] == new['sha'] else '**NO**')
            pyt = f'{ms(py["times"][0])} ms' if py else '-'
            pyr = f'{py["maxrss_kb"] / 1024:.0f} MB' if py else '-'
            print(f'| {n:,} | {files:,} | {label} | {ms(r["first"])} ms | {ms(r["first_cpu"])} ms '
                  f'| {ms(r["second"])} ms '
                  f'| {ms(r["warm"])} ms | {ms(r["cpu"])} ms | {r["rss_kb"] / 1024:.1f} MB | {r["bytes"] / 1e6:.2f} MB '
                  f'| {check} | {pyt} | {pyr} |')
    sys.exit(0 if same else 1)


if __name__ == '__main__':
    main()
