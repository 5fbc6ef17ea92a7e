#!/usr/bin/env python3
"""The cost of the extras at 200 live workers: scrape time of the plain sidecar vs with
two cached collectors (one cheap, one that sleeps 2 s) and --process-metrics; and whether
the sleeping collector delays scrapes once its result is cached.

    extras.py --binary target/release/multiproc-exporter --python VENV/bin/python [--pids 200]

Prints a Markdown table on stdout (median and max of --runs scrapes after a warm-up).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import free_port  # noqa: E402

CHEAP = """from prometheus_client.core import GaugeMetricFamily
def collect():
    g = GaugeMetricFamily('bench_component_up', 'Components', labels=['component'])
    for i in range(50):
        g.add_metric(['c%d' % i], 1)
    yield g
"""
SLEEPY = """import time
from prometheus_client.core import GaugeMetricFamily
def collect():
    time.sleep(2)
    yield GaugeMetricFamily('bench_slow_query', 'A slow database query', value=1)
"""


class Exporter:
    def __init__(self, binary, d, extra):
        self.port = free_port()
        self.p = subprocess.Popen([binary, d, '--listen', f'127.0.0.1:{self.port}', *extra],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url('/healthz'), timeout=5).read()
                return
            except OSError:
                if time.time() > deadline or self.p.poll() is not None:
                    raise
                time.sleep(0.05)

    def url(self, path):
        return f'http://127.0.0.1:{self.port}{path}'

    def scrape_ms(self):
        t = time.perf_counter()
        body = urllib.request.urlopen(self.url('/metrics'), timeout=60).read()
        return (time.perf_counter() - t) * 1000, body

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=60)


def series(binary, d, extra, runs, pause=0.0):
    e = Exporter(binary, d, extra)
    try:
        first, body = e.scrape_ms()
        times = []
        for _ in range(runs):
            if pause:
                time.sleep(pause)
            ms, body = e.scrape_ms()
            times.append(ms)
        return first, times, body
    finally:
        e.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary', required=True)
    ap.add_argument('--python', default=sys.executable)
    ap.add_argument('--pids', type=int, default=200)
    ap.add_argument('--runs', type=int, default=30)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix='mpe-extras-', dir='/dev/shm' if os.path.isdir('/dev/shm') else None)
    gen = None
    try:
        d = os.path.join(root, 'dir')
        cols = os.path.join(root, 'collectors')
        os.makedirs(d)
        os.makedirs(cols)
        with open(os.path.join(cols, 'cheap.py'), 'w') as f:
            f.write(CHEAP)
        with open(os.path.join(cols, 'sleepy.py'), 'w') as f:
            f.write(SLEEPY)
        # Every worker stays alive (a 200-worker gunicorn): process metrics for each.
        gen = subprocess.Popen([args.python, os.path.join(HERE, 'gen_dir.py'), '--dir', d,
                                '--pids', str(args.pids), '--alive', str(args.pids)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = gen.stdout.readline()
        assert line.startswith('alive'), line
        rows = []
        plain = series(args.binary, d, [], args.runs)
        extras = ['--collector', cols, '--python', args.python, '--collector-cache-seconds',
                  '30', '--process-metrics']
        full = series(args.binary, d, extras, args.runs)
        assert b'bench_slow_query' in full[2] and b'process_open_fds{pid=' in full[2]
        # Cache shorter than the pauses: every scrape finds an expired result.
        swr = series(args.binary, d, ['--collector', cols, '--python', args.python,
                                      '--collector-cache-seconds', '0.5'], 10, pause=0.7)
        for name, (first, times, body) in [
            (f'plain, {args.pids} live workers', plain),
            ('+ 2 collectors (cache 30 s, one sleeps 2 s) + --process-metrics', full),
            ('2 collectors, cache 0.5 s, a scrape every 0.7 s (always expired)', swr),
        ]:
            rows.append(f'| {name} | {first:.1f} | {statistics.median(times):.1f} | '
                        f'{max(times):.1f} | {len(body)} |')
        ratio = statistics.median(full[1]) / statistics.median(plain[1])
        print('| scrape | first (ms) | median (ms) | max (ms) | body (B) |')
        print('| --- | ---: | ---: | ---: | ---: |')
        print('\n'.join(rows))
        print(f'\nmedian with extras / plain: {ratio:.2f}')
    finally:
        if gen is not None:
            gen.stdin.close()
            gen.wait(timeout=120)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
