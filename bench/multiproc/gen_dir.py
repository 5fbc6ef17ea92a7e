#!/usr/bin/env python3
"""Fill a prometheus_client multiprocess directory the way a churning gunicorn/celery
deployment does: N real forked worker processes (a few at a time) use the real client API,
exit, and get mark_process_dead() like gunicorn's child_exit hook. The last K workers stay
alive until stdin closes (or --alive-seconds pass) so that liveness is visible.

    gen_dir.py --dir /dev/shm/mp200 --pids 200 --alive 4 [--seed 7] [--obs 300] [--fork]

Per worker (about 50 families): 14 counters (4 labelled method x endpoint x status),
10 histograms with the default buckets (6 labelled endpoint x method), 3 labelled
summaries, 23 gauges over the modes all, liveall, livesum, max, min, sum, mostrecent and
livemostrecent. Prints `alive <pid> ...` once the alive workers are ready.

With --fork the Python running this must have the postmates fork installed: it reads
`prometheus_multiproc_dir`, and the gauges use its modes (`latest`, its default, in place of
upstream's sum/mostrecent/livemostrecent), so the directory is what the fork's users have.
"""
import argparse
import os
import random
import select
import sys
import time

PATHS = ['/users', '/orders', '/items', '/search', '/login', '/logout', '/health',
         '/cart', '/checkout', '/payments', '/static', '/admin']
GAUGE_MODES = [('all', 5), ('liveall', 2), ('livesum', 4), ('max', 2), ('min', 2),
               ('sum', 2), ('mostrecent', 3), ('livemostrecent', 3)]
FORK_GAUGE_MODES = [('all', 5), ('liveall', 2), ('livesum', 4), ('max', 2), ('min', 2),
                    ('latest', 8)]


def work(idx, seed, n_obs, gauge_modes):
    from prometheus_client import Counter, Gauge, Histogram, Summary
    rng = random.Random(seed * 7919 + idx)
    paths = rng.sample(PATHS, rng.randint(4, 8))
    reqs = [Counter(f'bench_requests_{i}', f'Requests, family {i}',
                    ['method', 'endpoint', 'status'], registry=None) for i in range(4)]
    events = [Counter(f'bench_events_{i}', f'Events {i}', registry=None) for i in range(10)]
    lat = [Histogram(f'bench_latency_seconds_{i}', f'Latency {i}', ['endpoint', 'method'],
                     registry=None) for i in range(6)]
    jobs = [Histogram(f'bench_job_seconds_{i}', f'Jobs {i}', registry=None) for i in range(4)]
    sizes = [Summary(f'bench_size_bytes_{i}', f'Sizes {i}', ['endpoint'], registry=None)
             for i in range(3)]
    for _ in range(n_obs):
        ep = rng.choice(paths)
        method = 'GET' if rng.random() < 0.7 else rng.choice(['POST', 'PUT', 'DELETE'])
        status = rng.choices(['200', '201', '404', '500'], [80, 8, 8, 4])[0]
        rng.choice(reqs).labels(method, ep, status).inc()
        rng.choice(lat).labels(ep, method).observe(rng.expovariate(20))
        if rng.random() < 0.3:
            rng.choice(events).inc(rng.randint(1, 4))
        if rng.random() < 0.2:
            rng.choice(jobs).observe(rng.expovariate(0.5))
        if rng.random() < 0.2:
            rng.choice(sizes).labels(ep).observe(rng.randint(64, 65536))
    for mode, n in gauge_modes:
        for i in range(n):
            labelled = i % 2 == 0
            g = Gauge(f'bench_gauge_{mode}_{i}', f'Gauge {mode} {i}', ['queue'] if labelled else [],
                      registry=None, multiprocess_mode=mode)
            for q in (['a', 'b', 'c'] if labelled else [None]):
                (g.labels(q) if q else g).set(rng.uniform(0, 100))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dir', required=True)
    ap.add_argument('--pids', type=int, required=True)
    ap.add_argument('--alive', type=int, default=0)
    ap.add_argument('--alive-seconds', type=float, default=3600)
    ap.add_argument('--parallel', type=int, default=8)
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--obs', type=int, default=300)
    ap.add_argument('--fork', action='store_true', help='write with the postmates fork')
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith('.db'):
            os.remove(os.path.join(d, f))
    # Before the first import (the client picks its value class at import time).
    os.environ['prometheus_multiproc_dir' if args.fork else 'PROMETHEUS_MULTIPROC_DIR'] = d
    modes = FORK_GAUGE_MODES if args.fork else GAUGE_MODES
    import prometheus_client  # noqa: F401  (preloaded, like gunicorn --preload)
    from prometheus_client.multiprocess import mark_process_dead

    release_r, release_w = os.pipe()
    running, alive = set(), []
    t0 = time.time()
    for idx in range(args.pids):
        stays = idx >= args.pids - args.alive
        while len(running) >= args.parallel:
            pid, _ = os.wait()
            running.discard(pid)
            mark_process_dead(pid, d)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(release_w)
                work(idx, args.seed, args.obs, modes)
                if stays:
                    select.select([release_r], [], [], args.alive_seconds)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        (alive.append if stays else running.add)(pid)
    while running:
        pid, _ = os.wait()
        running.discard(pid)
        mark_process_dead(pid, d)
    os.close(release_r)
    n_files = sum(1 for f in os.listdir(d) if f.endswith('.db'))
    print(f'generated {args.pids} workers, {n_files} files in {time.time() - t0:.1f} s',
          file=sys.stderr, flush=True)
    print('alive ' + ' '.join(map(str, alive)), flush=True)
    if alive:
        # Hold the alive workers until our stdin closes (or they time out).
        try:
            sys.stdin.read()
        finally:
            os.close(release_w)
            for p in alive:
                os.waitpid(p, 0)


if __name__ == '__main__':
    main()
