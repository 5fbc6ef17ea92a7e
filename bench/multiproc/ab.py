#!/usr/bin/env python3
"""Interleaved cold starts of several exporter binaries on one directory:

    ab.py [--starts N] DIR BINARY...

For each of N rounds, starts every BINARY in turn on DIR (a free loopback port), waits
for /healthz, and measures the first scrape (wall time, and the process's CPU time
during it from /proc/<pid>/stat), the second scrape, and the peak RSS (VmHWM). Prints
the median of each per binary. Alternating the binaries spreads this machine's drift
over all of them: a difference of a few percent is only trusted from such a run.
Reuse one directory made by gen_dir.py (with live writers, or the scans re-read
everything: see docs/benchmarks-multiproc.md).
"""
import argparse
import os
import socket
import statistics
import subprocess
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def one_start(binary, d):
    port = free_port()
    p = subprocess.Popen([binary, d, '--listen', f'127.0.0.1:{port}'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(base + '/healthz', timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or p.poll() is not None:
                    raise SystemExit(f'{binary} did not come up')
                time.sleep(0.05)

        def scrape():
            t = time.perf_counter()
            urllib.request.urlopen(base + '/metrics', timeout=60).read()
            return time.perf_counter() - t

        c0 = cpu_seconds(p.pid)
        first = scrape()
        cpu = cpu_seconds(p.pid) - c0
        second = scrape()
        hwm = next(l for l in open(f'/proc/{p.pid}/status') if l.startswith('VmHWM'))
        return first * 1e3, cpu * 1e3, second * 1e3, int(hwm.split()[1]) / 1024
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--starts', type=int, default=9)
    ap.add_argument('dir')
    ap.add_argument('binaries', nargs='+')
    a = ap.parse_args()
    runs = {b: [] for b in a.binaries}
    for _ in range(a.starts):
        for b in a.binaries:
            runs[b].append(one_start(b, a.dir))
    print(f'{"binary":40s} {"first":>8s} {"cpu":>8s} {"second":>8s} {"peak RSS":>9s}')
    for b, v in runs.items():
        m = [statistics.median(x[i] for x in v) for i in range(4)]
        print(f'{b:40s} {m[0]:6.0f}ms {m[1]:6.0f}ms {m[2]:6.0f}ms {m[3]:7.1f}MB')


if __name__ == '__main__':
    main()
