#!/usr/bin/env python3
"""(e) The Redis server path, side by side on the same Redis.

One redis-server on a free loopback port (no persistence). The 1,000-target path of
bench/static.py (100 groups of 10) is served by
  - httpsd server-only + httpsd worker-only (release build, database 1),
  - prometheus-http-sd==3.0.6 server-only + worker-only (throw-away venv, database 0),
both warm (their result is in Redis), measured with wrk at 32 connections, interleaved.

Usage: python3 bench/redis_path.py [--runs 3] [--duration 10] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

import common as c
import static

PATH = "/targets/static"


def warm(port: int, proc, timeout: float = 60) -> bytes:
    """Polls until the server answers 200 with a JSON list (the original answers a
    miss with 200 and an error object)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc.poll() is not None:
            c.fail(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            st, body = c.http_get(port, PATH, timeout=10)
            if st == 200 and isinstance(json.loads(body), list):
                return body
            last = (st, body[:200])
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.2)
    c.fail(f"127.0.0.1:{port}{PATH} never served the list (last: {last})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    c.require_tool("wrk")
    c.require_tool("redis-server")
    bins = c.build_release()
    r = subprocess.run([str(bins["httpsd"]), "server-only", "--help"], capture_output=True, text=True)
    if "--redis-url" not in r.stdout + r.stderr:
        c.not_landed("server-only/worker-only, issue 7 / branch redis", "the Redis server path")
    v3 = c.venv("v3", c.ORIGINAL_V3)
    work = c.OUT / "redis"
    shutil.rmtree(work, ignore_errors=True)
    tree = static.make_tree(work / "tree")

    rport = c.free_port()
    redis = c.start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no"], work / "redis.log")
    deadline = time.time() + 10
    while subprocess.run(["redis-cli", "-p", str(rport), "ping"], capture_output=True).returncode != 0:
        if time.time() > deadline or redis.poll() is not None:
            c.fail("redis-server did not start")
        time.sleep(0.1)

    servers = {}
    orig_cli = str(v3 / "bin" / "prometheus-http-sd")
    for name, cli, db in (("httpsd", str(bins["httpsd"]), 1), ("prometheus-http-sd 3.0.6", orig_cli, 0)):
        url = f"redis://127.0.0.1:{rport}/{db}"
        tag = "httpsd" if db == 1 else "original"
        wport = c.free_port()
        c.start([cli, "worker-only", str(tree), "--redis-url", url, "-h", "127.0.0.1", "-p", str(wport)],
                work / f"{tag}-worker.log")
        port = c.free_port()
        p = c.start([cli, "server-only", str(tree), "--redis-url", url, "-p", str(port)], work / f"{tag}-server.log")
        body = warm(port, p)
        groups = json.loads(body)
        assert sum(len(g["targets"]) for g in groups) == 1000, f"{name}: not 1000 targets"
        servers[name] = (p, port)

    time.sleep(1)
    idle = {n: c.rss_kib(p.pid) for n, (p, _) in servers.items()}
    results = {n: [] for n in servers}
    loaded = {n: 0 for n in servers}
    for run in range(a.runs):
        for name, (p, port) in servers.items():
            with c.RssSampler(p.pid) as s:
                r = c.wrk(f"http://127.0.0.1:{port}{PATH}", duration=a.duration)
            loaded[name] = max(loaded[name], s.max)
            results[name].append(r)
            c.log(f"run {run + 1} {name}: {r['rps']:.0f} req/s p99 {r['p99']:.2f} ms non-2xx {r['non2xx']}")
    med = {n: {k: c.median([r[k] for r in rs]) for k in ("ok_rps", "p50", "p99")} for n, rs in results.items()}
    orig = med["prometheus-http-sd 3.0.6"]["ok_rps"]
    rows = [[n, f"{m['ok_rps']:,.0f}", c.spread([r["ok_rps"] for r in results[n]]), c.fmt_ms(m["p50"]),
             c.fmt_ms(m["p99"]), c.fmt_mib(idle[n]), c.fmt_mib(loaded[n]), f"{m['ok_rps'] / orig:,.1f}x",
             sum(r["non2xx"] + r["errors"] for r in results[n])] for n, m in med.items()]
    ratio = med["httpsd"]["ok_rps"] / orig
    text = c.table(["server-only", "200s/s (median)", "run spread", "p50", "p99", "RSS idle", "RSS under load",
                    "vs original", "non-2xx + errors"], rows)
    text += "\n\nGoal (issue 7):\n\n" + c.table(["goal", "measured", "status"],
                                                [["≥ 50x the original's req/s", f"{ratio:,.1f}x", c.goal(ratio >= 50)]])
    text += (f"\n\n{a.runs} interleaved runs of `wrk -t2 -c32 -d{a.duration}s` per server on `{PATH}` "
             "(1,000 targets); one redis-server for both (databases 1 and 0), workers running; RSS is the "
             "server process only.")
    c.report("Redis server path", text, a.markdown, "python3 bench/redis_path.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
