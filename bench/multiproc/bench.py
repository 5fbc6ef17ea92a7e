#!/usr/bin/env python3
"""Side-by-side benchmark: Python prometheus_client's generate_latest(MultiProcessCollector)
versus multiproc-exporter scrapes, on the same real multiprocess directories.

Run through ./run.sh (it makes the venv and builds the binary). Prints a Markdown table.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# The postmates fork's collector locks `lockfile` in the directory named by the environment
# (upstream ignores the lower-case variable when it reads with an explicit path).
PY_SCRAPE = r'''
import json, os, resource, sys, time
d, runs = sys.argv[1], int(sys.argv[2])
os.environ['prometheus_multiproc_dir'] = d
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
ts, out = [], b''
for _ in range(runs):
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=d)
    t0 = time.perf_counter()
    out = generate_latest(reg)
    ts.append(time.perf_counter() - t0)
print(json.dumps(dict(times=ts, bytes=len(out),
                      maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
'''


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def python_scrape(py, d, runs):
    out = subprocess.run([py, '-c', PY_SCRAPE, d, str(runs)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def dir_stats(d):
    files = [f for f in os.listdir(d) if f.endswith('.db')]
    used = 0
    for f in files:
        with open(os.path.join(d, f), 'rb') as fh:
            used += int.from_bytes(fh.read(4), 'little', signed=True)
    return len(files), used


class Exporter:
    def __init__(self, binary, d, extra=()):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, d, '--listen', f'127.0.0.1:{self.port}', *extra],
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url('/healthz'), timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('exporter did not start')

    def url(self, path):
        return f'http://127.0.0.1:{self.port}{path}'

    def scrape(self):
        t0 = time.perf_counter()
        body = urllib.request.urlopen(self.url('/metrics'), timeout=120).read()
        return time.perf_counter() - t0, body

    def peak_rss_kb(self):
        with open(f'/proc/{self.proc.pid}/status') as fh:
            for line in fh:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def wait_archived(d, dead, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = os.listdir(d)
        left = [n for n in names if n.endswith('.db') and not n.startswith('gauge_all_')
                and n.rsplit('_', 1)[-1][:-3] in dead]
        staging = os.path.join(d, '.mpe-staging')
        if not left and not os.path.exists(os.path.join(d, '.mpe-journal')) and \
                (not os.path.isdir(staging) or not os.listdir(staging)):
            return
        time.sleep(0.2)
    raise RuntimeError('archiving did not finish')


def ms(x):
    return f'{x * 1000:.1f}' if x < 10 else f'{x * 1000:.0f}'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--python', required=True, help='venv python with prometheus-client')
    ap.add_argument('--binary', required=True)
    ap.add_argument('--sizes', default='20,200,2000')
    ap.add_argument('--alive', type=int, default=8)
    ap.add_argument('--root', default='/dev/shm/mpe-bench')
    ap.add_argument('--runs', type=int, default=15)
    args = ap.parse_args()
    os.makedirs(args.root, exist_ok=True)
    rows = []
    for n in [int(x) for x in args.sizes.split(',')]:
        d = os.path.join(args.root, f'mp{n}')
        gen = subprocess.Popen([args.python, os.path.join(HERE, 'gen_dir.py'), '--dir', d,
                                '--pids', str(n), '--alive', str(args.alive)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = gen.stdout.readline().split()
        alive = set(line[1:])
        files, used = dir_stats(d)
        dead = {f.rsplit('_', 1)[-1][:-3] for f in os.listdir(d) if f.endswith('.db')} - alive
        py_runs = 3 if n >= 2000 else (5 if n >= 200 else 7)
        py = python_scrape(args.python, d, py_runs)
        py_med = statistics.median(py['times'])

        exp = Exporter(args.binary, d)
        first, _ = exp.scrape()
        ts = [exp.scrape()[0] for _ in range(args.runs)]
        rss = exp.peak_rss_kb()
        exp.stop()
        ours = statistics.median(ts)
        # Single-threaded, for the record of what the second core buys.
        exp1 = Exporter(args.binary, d, ['--threads', '1'])
        first1, _ = exp1.scrape()
        ts1 = statistics.median([exp1.scrape()[0] for _ in range(args.runs)])
        exp1.stop()

        results = {}
        for label, extra in (('archived', []), ('archived, dead `all` gauges dropped',
                                                 ['--drop-dead-all-gauges'])):
            da = d + '-arch'
            shutil.rmtree(da, ignore_errors=True)
            shutil.copytree(d, da)
            expa = Exporter(args.binary, da, ['--archive', '--archive-interval', '0.1', *extra])
            t0 = time.time()
            wait_archived(da, dead)
            arch_s = time.time() - t0
            expa.scrape()
            tsa = statistics.median([expa.scrape()[0] for _ in range(args.runs)])
            rssa = expa.peak_rss_kb()
            expa.stop()
            pya = python_scrape(args.python, da, py_runs)
            fa, _ = dir_stats(da)
            results[label] = (tsa, rssa, statistics.median(pya['times']), fa, arch_s)
            shutil.rmtree(da, ignore_errors=True)
        gen.stdin.close()
        gen.wait()
        rows.append((n, files, used, py_med, py['maxrss_kb'], first, ours, ts1, first1, rss,
                     results))
        print(f'# done {n}', file=sys.stderr, flush=True)

    print('| processes | files | used MB | Python `generate_latest` (median) | Python peak RSS '
          '| ours: first scrape | ours: scrape (median) | speed-up | ours: peak RSS '
          '| memory ratio | ours, 1 thread (first / median) |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for (n, files, used, py_med, py_rss, first, ours, ts1, first1, rss, _) in rows:
        print(f'| {n:,} | {files:,} | {used / 1e6:.1f} | {ms(py_med)} ms | {py_rss / 1024:.0f} MB '
              f'| {ms(first)} ms | {ms(ours)} ms | **{py_med / ours:.0f}x** | {rss / 1024:.1f} MB '
              f'| **{py_rss / rss:.0f}x** | {ms(first1)} / {ms(ts1)} ms |')
    print()
    print('| processes | after archiving | files left | archiving took | ours: scrape (median) '
          '| ours: peak RSS | Python `generate_latest` on the archived dir |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for (n, *_rest, results) in rows:
        for label, (tsa, rssa, pya, fa, arch_s) in results.items():
            print(f'| {n:,} | {label} | {fa:,} | {arch_s:.1f} s | {ms(tsa)} ms | {rssa / 1024:.1f} MB '
                  f'| {ms(pya)} ms |')


if __name__ == '__main__':
    main()
