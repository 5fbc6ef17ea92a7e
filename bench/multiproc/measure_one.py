#!/usr/bin/env python3
"""Peak memory and scrape time of one exporter binary on one existing directory:

    measure_one.py BINARY DIR [exporter args...]

Starts BINARY on DIR listening on a free loopback port, waits for /healthz, scrapes
/metrics 6 times (one cold, then 5), prints the first and the median-of-5 time, a hash of
the body without our own multiproc_exporter_* lines (to compare output bytes between
builds), and VmHWM/VmRSS from /proc/<pid>/status. Reuse one directory made by gen_dir.py.
"""
import hashlib
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


def main():
    binary, d, *extra = sys.argv[1:]
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([binary, d, '--listen', f'127.0.0.1:{port}', *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=5).read()
                break
            except OSError:
                if time.time() > deadline or p.poll() is not None:
                    raise
                time.sleep(0.05)
        times = []
        for _ in range(6):
            t = time.perf_counter()
            body = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=60).read()
            times.append((time.perf_counter() - t) * 1000)
        stable = b'\n'.join(l for l in body.split(b'\n') if b'multiproc_exporter_' not in l)
        with open(f'/proc/{p.pid}/status') as f:
            mem = {l.split(':')[0]: l.split()[1] for l in f if l.startswith(('VmHWM', 'VmRSS'))}
        print(f'first {times[0]:.1f} ms, median of 5 {statistics.median(times[1:]):.1f} ms, '
              f'body {len(body)} B, sha256 {hashlib.sha256(stable).hexdigest()[:16]}, '
              f'VmHWM {int(mem["VmHWM"]) / 1024:.1f} MB, VmRSS {int(mem["VmRSS"]) / 1024:.1f} MB')
    finally:
        p.terminate()
        p.wait(timeout=60)


if __name__ == '__main__':
    main()
