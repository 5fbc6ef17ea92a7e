#!/usr/bin/env python3
"""Side by side, one run: scrape time of a 2,000-worker directory written by the postmates
fork (its `MultiProcessCollector` vs multiproc-exporter) and of one written by upstream
prometheus_client 0.26.0 (its `MultiProcessCollector` vs multiproc-exporter).

Run through ./run_fork.sh (it makes both venvs and builds the binary). Prints a Markdown table.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys

from bench import Exporter, dir_stats, ms, python_scrape

HERE = os.path.dirname(os.path.abspath(__file__))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--python', required=True, help='venv python with prometheus-client 0.26.0')
    ap.add_argument('--python-fork', required=True, help='venv python with the fork')
    ap.add_argument('--binary', required=True)
    ap.add_argument('--pids', type=int, default=2000)
    ap.add_argument('--alive', type=int, default=8)
    ap.add_argument('--root', default='/dev/shm/mpe-bench-fork')
    ap.add_argument('--runs', type=int, default=15)
    ap.add_argument('--py-runs', type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.root, exist_ok=True)
    rows = []
    for flavour, py in (('upstream 0.26.0', args.python), ('postmates fork', args.python_fork)):
        d = os.path.join(args.root, 'fork' if 'fork' in flavour else 'upstream')
        cmd = [py, os.path.join(HERE, 'gen_dir.py'), '--dir', d, '--pids', str(args.pids),
               '--alive', str(args.alive)] + (['--fork'] if 'fork' in flavour else [])
        gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        gen.stdout.readline()
        files, used = dir_stats(d)
        pyr = python_scrape(py, d, args.py_runs)
        exp = Exporter(args.binary, d)
        first, _ = exp.scrape()
        ours = statistics.median([exp.scrape()[0] for _ in range(args.runs)])
        exp.stop()
        gen.stdin.close()
        gen.wait()
        py_med = statistics.median(pyr['times'])
        rows.append((flavour, files, used, py_med, first, ours))
        shutil.rmtree(d, ignore_errors=True)
        print(f'# done {flavour}', file=sys.stderr, flush=True)
    print('| directory written by | processes | files | used MB | its own Python collector '
          '(median) | ours: first scrape | ours: scrape (median) | speed-up |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for flavour, files, used, py_med, first, ours in rows:
        print(f'| {flavour} | {args.pids:,} | {files:,} | {used / 1e6:.1f} | {ms(py_med)} ms '
              f'| {ms(first)} ms | {ms(ours)} ms | **{py_med / ours:.0f}x** |')


if __name__ == '__main__':
    main()
