#!/usr/bin/env python3
"""Test workers: real processes that write a multiprocess directory with the real
prometheus_client (multiprocess mode), covering every type, every gauge mode and nasty
label/help/value cases.

    workers.py DIR nasty N         N worker processes (run one after another), then exit
    workers.py DIR count N INCS    N processes in parallel, each incrementing a counter INCS times
    workers.py DIR hold N          N processes that write a little and sleep until stdin closes
"""
import os
import sys

d, scenario = sys.argv[1], sys.argv[2]
os.environ['PROMETHEUS_MULTIPROC_DIR'] = d
os.environ.pop('prometheus_multiproc_dir', None)

MODES = ['all', 'liveall', 'min', 'livemin', 'max', 'livemax', 'sum', 'livesum',
         'mostrecent', 'livemostrecent']


def nasty(idx):
    from prometheus_client import Counter, Gauge, Histogram, Summary
    c = Counter('req', 'Requests "quoted"\nnewline \\ backslash ü', ['path', 'code'], registry=None)
    c.labels('/ü"x', '200').inc(idx + 1)
    c.labels('back\\slash\nnew"line', '500').inc(0.5)
    c.labels('😀 astral', '201').inc(1e16 if idx == 0 else 1)
    c.labels('never', '0')  # created, never incremented
    big = Counter('big_things_total', 'Huge counts', registry=None)
    big.inc(2 ** 53 + (idx * 2))
    Counter('unlabelled', 'plain counter', registry=None).inc(3)
    h = Histogram('lat_seconds', 'Latency', ['method'], registry=None)
    for v in (0.001, 0.02, 0.3, 4.0, 50.0, idx * 0.1):
        h.labels('GET').observe(v)
    h.labels('POST')  # all-zero series
    # Label sets created in an order that differs between workers, some left at zero:
    # files whose keys interleave differently, and zero entries that come first.
    z = Counter('zeros', 'Mostly zero', ['k'], registry=None)
    order = ['a', 'b', 'c', 'd'] if idx % 2 == 0 else ['d', 'b', 'a']
    for k in order:
        z.labels(k).inc(0 if k in ('b', 'd') or idx == 0 else 0.25)
    h2 = Histogram('sizes', 'Custom buckets', buckets=(1, 1e3, 1e6, 1.5e7, float('inf')), registry=None)
    h2.observe(12345678)
    h2.observe(-5)
    s = Summary('payload_bytes', 'Payload', ['endpoint'], registry=None)
    s.labels('/a').observe(100 + idx)
    s.labels('/b').observe(0.1)
    for m in MODES:
        g = Gauge(f'g_{m}', f'gauge mode {m}', ['q'], registry=None, multiprocess_mode=m)
        if 'mostrecent' in m:
            g.labels('x').set(idx * 10 + 1)
            g.labels('never')  # never set: omitted
        else:
            g.labels('x').set(idx * 10 + 1)
            g.labels('neg').set(-0.0 if idx == 0 else -1.5)
    Gauge('g_specials', 'special values', ['v'], registry=None, multiprocess_mode='max')
    sp = Gauge('g_specials', 'special values', ['v'], registry=None, multiprocess_mode='max')
    sp.labels('nan').set(float('nan'))
    sp.labels('inf').set(float('inf'))
    sp.labels('ninf').set(float('-inf'))
    sp.labels('tiny').set(5e-324)
    sp.labels('big').set(1234567.0)
    Gauge('g_default', 'default mode', registry=None).set(idx)


def run_children(n, fn, parallel):
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fn(i)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
        if not parallel:
            _, st = os.waitpid(pid, 0)
            assert st == 0, 'worker failed'
    for p in pids if parallel else []:
        _, st = os.waitpid(p, 0)
        assert st == 0, 'worker failed'
    return pids


if scenario == 'nasty':
    import prometheus_client  # noqa: F401
    pids = run_children(int(sys.argv[3]), nasty, parallel=False)
    from prometheus_client.multiprocess import mark_process_dead
    if len(sys.argv) > 4 and sys.argv[4] == 'mark-dead':
        for p in pids:
            mark_process_dead(p, d)
    print(' '.join(map(str, pids)))
elif scenario == 'count':
    n, incs = int(sys.argv[3]), int(sys.argv[4])

    def count(idx):
        from prometheus_client import Counter, Histogram
        c = Counter('work_done', 'Work done', ['worker'], registry=None)
        h = Histogram('work_seconds', 'Work', registry=None)
        for i in range(incs):
            c.labels('all').inc()
            h.observe(0.01)
    import prometheus_client  # noqa: F401
    run_children(n, count, parallel=True)
    print('done', flush=True)
elif scenario == 'hold':
    n = int(sys.argv[3])
    import prometheus_client  # noqa: F401
    r, w = os.pipe()

    def hold(idx):
        os.close(w)
        from prometheus_client import Counter, Gauge
        Counter('held', 'held workers', registry=None).inc(idx + 1)
        Gauge('held_live', 'live gauge', registry=None, multiprocess_mode='livesum').set(1)
        Gauge('held_all', 'all gauge', registry=None).set(idx)
        os.write(1, f"{os.getpid()}\n".encode())
        os.read(r, 1)
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                hold(i)
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(r)
    sys.stdin.read()
    os.close(w)
    for p in pids:
        os.waitpid(p, 0)
elif scenario == 'reuse':
    # A process whose identifier is a (dead) pid that was already archived: the pid-reuse case.
    ident = int(sys.argv[3])
    from prometheus_client import values
    values.ValueClass = values.MultiProcessValue(lambda: ident)
    from prometheus_client import Counter
    Counter('req', 'Requests "quoted"\nnewline \\ backslash ü', ['path', 'code'], registry=None).labels('/ü"x', '200').inc(1000)
    Counter('reused', 'written under a reused pid', registry=None).inc(7)
else:
    sys.exit('unknown scenario ' + scenario)
