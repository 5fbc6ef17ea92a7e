#!/usr/bin/env python3
"""(d) Time from a file change to the new targets being served, side by side.

A path of 10 JSON files is served by httpsd serve (release build) and by
prometheus-http-sd==3.0.6 serve (throw-away venv, warm cache). For each sample, one
file is replaced (write to a temporary name, then rename, as editors and config
management do) with a new target; a client polls each server every 5 ms until the new
target shows. The original regenerates a requested path once per
--cache-refresh-interval (default 60 s; the script uses a shorter one so that it ends
in bounded time: the original's median is about half its interval).

Usage: python3 bench/reload.py [--samples 7] [--original-interval 10] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import threading
import time

import common as c

PATH = "/targets/reload"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--original-interval", type=int, default=10,
                    help="the original's --cache-refresh-interval (its default is 60)")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    bins = c.build_release()
    v3 = c.venv("v3", c.ORIGINAL_V3)
    work = c.OUT / "reload"
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "tree"
    for f in range(10):
        c.write_json_tree(tree, f"reload/f{f}.json", [{"targets": [f"10.0.0.{f}:9100"], "labels": {"n": "0"}}])
    (work / "cache").mkdir()

    servers = {}
    port = c.free_port()
    p = c.start([str(bins["httpsd"]), "serve", str(tree), "-p", str(port)], work / "httpsd.log")
    c.wait_status(port, PATH, proc=p)
    servers["httpsd"] = port
    port = c.free_port()
    p = c.start([str(v3 / "bin" / "prometheus-http-sd"), "serve", str(tree), "-p", str(port), "--cache-dir",
                 str(work / "cache"), "--cache-refresh-interval", str(a.original_interval)], work / "original.log")
    c.wait_status(port, PATH, proc=p, timeout=a.original_interval * 3 + 30)
    servers["prometheus-http-sd 3.0.6"] = port

    limit = a.original_interval * 2 + 10
    samples = {n: [] for n in servers}
    for i in range(1, a.samples + 1):
        # A random phase against the original's refresh loop, so samples are independent.
        time.sleep(random.uniform(0.2, a.original_interval))
        marker = f"10.9.{i}.1:9100".encode()
        results = {}

        def poll(name, port, t0):
            while time.monotonic() - t0 < limit:
                try:
                    st, body = c.http_get(port, PATH, timeout=5)
                    if st == 200 and marker in body:
                        results[name] = time.monotonic() - t0
                        return
                except OSError:
                    pass
                time.sleep(0.005)

        tmp = tree / "reload" / ".f3.json.tmp"
        tmp.write_text(f'[{{"targets": ["{marker.decode()}"], "labels": {{"n": "{i}"}}}}]')
        t0 = time.monotonic()
        tmp.rename(tree / "reload" / "f3.json")
        threads = [threading.Thread(target=poll, args=(n, port, t0)) for n, port in servers.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in servers:
            samples[n].append(results.get(n))
            c.log(f"sample {i} {n}: " + (f"{results[n] * 1000:.0f} ms" if n in results else f"not seen in {limit}s"))

    def cell(xs):
        return [x for x in xs if x is not None]

    rows = []
    orig = c.median(cell(samples["prometheus-http-sd 3.0.6"]))
    for n, xs in samples.items():
        s = cell(xs)
        rows.append([n, c.fmt_ms(c.median(s) * 1000), c.fmt_ms(min(s) * 1000) if s else "n/a",
                     c.fmt_ms(max(s) * 1000) if s else "n/a", f"{len(xs) - len(s)}", f"{orig / c.median(s):,.0f}x"])
    text = c.table(["server", "median", "min", "max", "never seen", "faster than original"], rows)
    text += (f"\n\n{a.samples} samples; atomic rename of one of 10 JSON files of the path; 5 ms polling. "
             f"The original ran with `--cache-refresh-interval {a.original_interval}`; with its default (60 s) "
             f"expect a median near 30 s. httpsd: file watcher plus a 1 s rescan fallback. "
             f"Prometheus adds its own `refresh_interval` on top of either.")
    c.report("Time from a file change to the new targets", text, a.markdown,
             "python3 bench/reload.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
