#!/usr/bin/env python3
"""Interleaved cold starts of several exporter binaries on one directory:

    ab.py [--starts N] DIR BINARY...

For each of N rounds, starts every BINARY in turn on DIR (a free loopback port), waits
for /healthz, and measures the first scrape (wall time, and the process's CPU time
during it from /proc/<pid>/stat), the second scrape, and the peak RSS (VmHWM). Prints
the median of each per binary. Alternating the binaries spreads this machine's drift
over all of them: a difference of a few percent is only trusted from such a run.
Reuse one directory made by gen_dir.py (with live writers, or the scans re-read
everything), and give binaries copied at the same moment: a file written recently is
mapped with more resident code, up to 0.8 MB of peak RSS (docs/benchmarks-multiproc.md).
"""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import Exporter  # noqa: E402
from scrape import cold_scrapes  # noqa: E402


def one_start(binary, d):
    exp = Exporter(binary, d)
    try:
        first, cpu, second = cold_scrapes(exp)
        return first * 1e3, cpu * 1e3, second * 1e3, exp.peak_rss_kb() / 1024
    finally:
        exp.stop()


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
