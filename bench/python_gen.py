#!/usr/bin/env python3
"""(b) Python generator per-call latency with caching off, side by side in one run.

A trivial Python generator (one group, one target, a label from a query parameter)
served by
  - httpsd serve --cache-type None (release build; its Python worker pool),
  - the original prometheus-http-sd==1.3.16 serve --cache-type None (the last
    version that ran generators inside the request), from a throw-away venv.
Latency: wrk with 1 connection (p50/p99). Throughput: wrk with 32 connections.
The pool overhead is our 1-connection p50 minus the generator's own time (measured
in-process: load the module and call generate_targets, as the original does per call;
and the call alone). A static one-target path on httpsd gives the HTTP-only baseline.

Usage: python3 bench/python_gen.py [--runs 3] [--duration 10] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys

import common as c

GEN = '''
def generate_targets(**params):
    return [{"targets": ["127.0.0.1:9100"], "labels": {"env": params.get("env", "none")}}]
'''
PROBE = '''
import time
def generate_targets(**params):
    return [{"targets": ["127.0.0.1:9100"], "labels": {"t": str(time.monotonic_ns())}}]
'''
PATH = "/targets/py?env=prod"

OWN_TIME = r'''
import importlib.machinery, statistics, sys, time
path = sys.argv[1]
def load():
    return importlib.machinery.SourceFileLoader("mymodule", path).load_module()
m = load()
def per(f, n):
    xs = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            f()
        xs.append((time.perf_counter() - t) / n)
    return statistics.median(xs) * 1e3
call = per(lambda: m.generate_targets(env="prod"), 20000)
both = per(lambda: load().generate_targets(env="prod"), 500)
print(call, both)
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    c.require_tool("wrk")
    bins = c.build_release()
    v1 = c.venv("v1", c.ORIGINAL_V1)
    work = c.OUT / "python"
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "tree"
    (tree / "py").mkdir(parents=True)
    (tree / "probe").mkdir()
    (tree / "py" / "gen.py").write_text(GEN)
    (tree / "probe" / "probe.py").write_text(PROBE)
    c.write_json_tree(tree, "static/one.json", [{"targets": ["127.0.0.1:9100"], "labels": {"env": "prod"}}])

    port = c.free_port()
    p = c.start([str(bins["httpsd"]), "serve", str(tree), "-p", str(port), "--cache-type", "None",
                 "--python", sys.executable], work / "httpsd.log")
    c.wait_status(port, "/targets/static", proc=p)
    st, body = c.http_get(port, PATH)
    if st != 200:
        c.not_landed("Python generators, issue 3 / branch py",
                      f"httpsd answered {st} for a Python generator: {body[:200]!r}")
    st2, body2 = c.http_get(port, "/targets/probe")
    if st2 != 200 or body2 == c.http_get(port, "/targets/probe")[1]:
        c.not_landed("--cache-type None, issue 4 / branch cache",
                     "two calls of a generator returning a timestamp gave the same body: caching is not off")
    ours = (p, port)

    port = c.free_port()
    p = c.start([str(v1 / "bin" / "prometheus-http-sd"), "serve", str(tree), "-p", str(port),
                 "--cache-type", "None"], work / "original.log")
    c.wait_status(port, PATH, proc=p)
    orig = (p, port)
    assert json.loads(c.http_get(orig[1], PATH)[1]) == json.loads(body), "different answers"

    own = subprocess.run([sys.executable, "-c", OWN_TIME, str(tree / "py" / "gen.py")], capture_output=True,
                         text=True, check=True).stdout.split()
    call_ms, load_call_ms = float(own[0]), float(own[1])

    res = c.latency_and_throughput([("httpsd", ours[1], PATH), ("orig", orig[1], PATH),
                                    ("static", ours[1], "/targets/static")], a.runs, a.duration)

    def m(key, kind, field):
        return c.run_median(res, key, kind, field)

    o_rps, h_rps = m("orig", "thr", "ok_rps"), m("httpsd", "thr", "ok_rps")
    rows = []
    for key, name in (("httpsd", "httpsd (--cache-type None)"), ("orig", "prometheus-http-sd 1.3.16 (--cache-type None)"),
                      ("static", "httpsd, static one-target path (HTTP baseline)")):
        bad = sum(r["non2xx"] + r["errors"] for kind in ("lat", "thr") for r in res[key][kind])
        rows.append([name, c.fmt_ms(m(key, "lat", "p50")), c.fmt_ms(m(key, "lat", "p99")),
                     f"{m(key, 'thr', 'ok_rps'):,.0f}", c.spread([r["rps"] for r in res[key]["thr"]]),
                     f"{m(key, 'thr', 'p99'):.2f} ms", f"{m(key, 'thr', 'ok_rps') / o_rps:,.1f}x", bad])
    text = c.table(["server", "p50 (1 conn)", "p99 (1 conn)", "200s/s (32 conn)", "run spread", "p99 (32 conn)",
                    "vs original", "non-2xx + errors"], rows)
    h_p50 = m("httpsd", "lat", "p50")
    overhead = h_p50 - call_ms
    text += (f"\n\nGenerator's own time (in-process, median): call {call_ms * 1000:.1f} µs; "
             f"load module + call (what 1.3.16 does per request) {load_call_ms * 1000:.0f} µs.\n"
             f"Per-call overhead (HTTP round trip, 1-connection p50, minus the script's own call): "
             f"**{overhead:.3f} ms**. HTTP alone (static one-target path) is {m('static', 'lat', 'p50'):.3f} ms, "
             f"so the pool's share (pipe round trip to a Python worker, JSON, validation) is "
             f"{h_p50 - m('static', 'lat', 'p50') - call_ms:.3f} ms.")
    g = [["median latency < 2 ms", c.fmt_ms(h_p50), c.goal(h_p50 < 2)],
         ["req/s ≥ 20x 1.3.16", f"{h_rps / o_rps:,.1f}x", c.goal(h_rps >= 20 * o_rps)]]
    text += "\n\nGoals (issue 3):\n\n" + c.table(["goal", "measured", "status"], g)
    text += (f"\n\n{a.runs} interleaved runs of `wrk -t1 -c1 -d{a.duration}s` and `wrk -t2 -c32 -d{a.duration}s` "
             f"on `{PATH}`; wrk shares the 2 cores with the servers.")
    c.report("Python generator, cache off", text, a.markdown, "python3 bench/python_gen.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
