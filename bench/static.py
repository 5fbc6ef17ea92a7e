#!/usr/bin/env python3
"""(a) Static path serving, side by side in one run.

A 1,000-target path (100 groups of 10 targets, in 5 JSON and 5 YAML files) served by
  - httpsd serve (release build),
  - the original prometheus-http-sd==3.0.6 serve with a warm cache (installed into a
    throw-away venv; its first request is a 500 "cache miss" until its dispatcher ran,
    so it is warmed first),
  - the ceiling: a bare hyper server returning the same bytes from memory
    (crates/httpsd/examples/ceiling.rs),
measured with wrk at 32 connections, interleaved, several runs; medians reported.

Usage: python3 bench/static.py [--runs 3] [--duration 10] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

import common as c

PATH = "/targets/static"


def make_tree(root):
    if root.exists():
        shutil.rmtree(root)
    n = 0
    for f in range(10):
        groups = []
        for g in range(10):
            gi = f * 10 + g
            groups.append({
                "targets": [f"10.{gi // 256}.{gi % 256}.{t}:9100" for t in range(10)],
                "labels": {"job": "node", "group": f"g{gi:03}", "dc": "eu-west-1"},
            })
            n += 10
        rel = f"static/f{f:02}"
        if f % 2 == 0:
            c.write_json_tree(root, rel + ".json", groups)
        else:
            lines = []
            for grp in groups:
                lines.append("- targets:")
                lines += [f"    - '{t}'" for t in grp["targets"]]
                lines.append("  labels:")
                lines += [f"    {k}: {v}" for k, v in grp["labels"].items()]
            (root / (rel + ".yaml")).write_text("\n".join(lines) + "\n")
    assert n == 1000
    return root


def canon(body: bytes):
    groups = json.loads(body)
    return sorted(json.dumps(g, sort_keys=True) for g in groups)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--refresh", type=int, default=0,
                    help="the original's --cache-refresh-interval while measured (default: one hour, so that "
                         "no pass runs; with e.g. 5, see its in-place cache rewrites fail requests)")
    ap.add_argument("--markdown", help="also write the result as Markdown to this file")
    a = ap.parse_args()

    c.require_tool("wrk")
    bins = c.build_release(examples=("ceiling",))
    v3 = c.venv("v3", c.ORIGINAL_V3)
    work = c.OUT / "static"
    tree = make_tree(work / "tree")
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)

    servers = {}
    # ours
    port = c.free_port()
    p = c.start([str(bins["httpsd"]), "serve", str(tree), "-p", str(port)], work / "httpsd.log")
    ours_body = c.wait_status(port, PATH, proc=p)
    servers["httpsd"] = (p, port)
    groups = json.loads(ours_body)
    assert len(groups) == 100 and sum(len(g["targets"]) for g in groups) == 1000, "ours: not 1000 targets"
    # ceiling: the same bytes
    body_file = work / "body.json"
    body_file.write_bytes(ours_body)
    port = c.free_port()
    p = c.start([str(bins["ceiling"]), f"127.0.0.1:{port}", str(body_file)], work / "ceiling.log")
    assert c.wait_status(port, PATH, proc=p) == ours_body
    servers["ceiling (bare hyper)"] = (p, port)
    # The original, warmed by itself: a first instance with a 1 s refresh interval
    # writes the cache file; the measured instance reads it with refresh and expiry at
    # one hour, so no refresh pass rewrites the file during the measurement (it writes
    # in place, and requests that read a half-written file get a 500; see --refresh).
    orig_cli = str(v3 / "bin" / "prometheus-http-sd")
    for attempt in range(3):
        port = c.free_port()
        p = c.start([orig_cli, "serve", str(tree), "-p", str(port), "--cache-dir", str(cache),
                     "--cache-refresh-interval", "1"], work / "original-warmup.log")
        t0 = time.time()
        c.wait_status(port, PATH, proc=p, timeout=60)
        c.log(f"original warm after {time.time() - t0:.1f}s")
        c.stop(p)
        # Stopped mid-rewrite, it would leave a truncated file: check, else warm again.
        try:
            if all(json.loads(f.read_text())["results"] for f in cache.iterdir()):
                break
        except (ValueError, KeyError):
            c.log("the original left a truncated cache file; warming again")
    port = c.free_port()
    refresh = str(a.refresh) if a.refresh else "3600"
    p = c.start([orig_cli, "serve", str(tree), "-p", str(port), "--cache-dir", str(cache),
                 "--cache-refresh-interval", refresh, "-m", "3600"], work / "original.log")
    orig_body = c.wait_status(port, PATH, proc=p, timeout=30)
    servers["prometheus-http-sd 3.0.6"] = (p, port)
    same = canon(orig_body) == canon(ours_body)
    c.log(f"same groups as the original: {same}; byte-identical: {orig_body == ours_body}")

    time.sleep(1)
    idle = {name: c.rss_kib(p.pid) for name, (p, _) in servers.items()}
    ours_pid = servers["httpsd"][0].pid
    ours_alone_idle = c.rss_kib(ours_pid, tree=False)
    ours_alone_loaded = 0
    results = {name: [] for name in servers}
    loaded = {name: 0 for name in servers}
    for run in range(a.runs):
        for name, (p, port) in servers.items():
            with c.RssSampler(p.pid) as s, c.RssSampler(p.pid, tree=False) as alone:
                r = c.wrk(f"http://127.0.0.1:{port}{PATH}", connections=a.connections, duration=a.duration)
            loaded[name] = max(loaded[name], s.max)
            if p.pid == ours_pid:
                ours_alone_loaded = max(ours_alone_loaded, alone.max)
            results[name].append(r)
            c.log(f"run {run + 1}/{a.runs} {name}: {r['rps']:.0f} req/s p50 {r['p50']:.2f} ms "
                  f"p99 {r['p99']:.2f} ms non-2xx {r['non2xx']} errors {r['errors']}")

    med = {n: {k: c.median([r[k] for r in rs]) for k in ("rps", "ok_rps", "p50", "p99")}
           for n, rs in results.items()}
    orig = med["prometheus-http-sd 3.0.6"]["ok_rps"]
    ceil = med["ceiling (bare hyper)"]["ok_rps"]
    rows = []
    for name in ("httpsd", "prometheus-http-sd 3.0.6", "ceiling (bare hyper)"):
        m = med[name]
        bad = sum(r["non2xx"] + r["errors"] for r in results[name])
        rows.append([name, f"{m['ok_rps']:,.0f}", c.spread([r["ok_rps"] for r in results[name]]),
                     c.fmt_ms(m["p50"]), c.fmt_ms(m["p99"]), c.fmt_mib(idle[name]), c.fmt_mib(loaded[name]),
                     f"{m['ok_rps'] / orig:,.1f}x", f"{m['ok_rps'] / ceil:.0%}", bad])
    body = c.table(["server", "200s/s (median)", "run spread", "p50", "p99", "RSS idle", "RSS under load (max)",
                    "vs original", "of ceiling", "non-2xx + socket errors"], rows)
    ours = med["httpsd"]
    g = [["requests/s ≥ 100x the original", f"{ours['ok_rps'] / orig:,.0f}x", c.goal(ours["ok_rps"] >= 100 * orig)],
         ["p99 < 10 ms at 32 connections", c.fmt_ms(ours["p99"]), c.goal(ours["p99"] < 10)],
         ["RSS < 20 MB, httpsd process (idle / under load)",
          f"{c.fmt_mib(ours_alone_idle)} / {c.fmt_mib(ours_alone_loaded)}",
          c.goal(max(ours_alone_idle, ours_alone_loaded) * 1024 < 20_000_000)],
         ["RSS < 20 MB, with its Python worker pool (idle / under load)",
          f"{c.fmt_mib(idle['httpsd'])} / {c.fmt_mib(loaded['httpsd'])}",
          c.goal(max(idle["httpsd"], loaded["httpsd"]) * 1024 < 20_000_000)]]
    body += "\n\nGoals (issue 2):\n\n" + c.table(["goal", "measured", "status"], g)
    body += (f"\n\n{a.runs} interleaved runs of `wrk -t2 -c{a.connections} -d{a.duration}s --latency` per server "
             f"on `{PATH}` ({len(ours_body)} bytes, 100 groups, 1,000 targets, 5 JSON + 5 YAML files); "
             f"wrk shares the 2 cores with the server. RSS columns include child processes (httpsd "
             f"keeps no Python worker while the tree has no Python generator). The original's cache was warmed by itself (an instance with "
             f"`--cache-refresh-interval 1`), then measured with `--cache-dir` and "
             f"`--cache-refresh-interval {refresh} -m 3600`; throughput counts 200 answers only. "
             f"Same groups as the original: {'yes' if same else 'NO'}"
             f"{' (byte-identical)' if orig_body == ours_body else ' (the original orders groups by completion)'}.")
    c.report("Static path serving (1,000 targets)", body, a.markdown, "python3 bench/static.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
