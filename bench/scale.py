#!/usr/bin/env python3
"""(g) Fleet scale: memory and time against the size of the tree (issue 19), side by side.

Static trees of 1k, 10k, 100k and 500k groups as one JSON file (one target and one
label per group), and 1,000,000 targets over 1,000 files (100 groups of 10 targets
each), served by
  - httpsd serve (release build),
  - the original prometheus-http-sd==3.0.6 serve (a throw-away venv; its cache is
    filled by its own dispatcher, `--cache-refresh-interval 1`),
each started fresh per size and run. Measured per size: time from start until the
path answers 200 with every group; peak RSS until then (VmHWM, process tree); steady
RSS 3 s after, with the path served once more; requests/s on the path (wrk, 4
connections, 3 s, 200 answers only).

Then a Python generator returning 1k..500k groups (one server, one cache entry per
size): time of the first (uncached) request end to end, Python's own part (import,
building the list and encoding it as JSON, as the worker timed it and httpsd logs it
at debug level), httpsd's part (the rest: end to end minus Python's own, per run),
of which the call's overhead (the result through the pipe) and the encoding (both
from the same log line), and httpsd's RSS before the run, at its peak and 3 s after
(the result cached).

Usage: python3 bench/scale.py [--runs 3] [--sizes 1000,10000,100000,500000] [--python-only] [--markdown FILE]

--python-only runs the Python generator table alone (no static trees, no original).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import common as c

FILES_1M = 1000  # files of the 1,000,000-target tree

GEN = '''
def generate_targets(**params):
    n = int(params.get("n", "1000"))
    return [{"targets": ["10.%d.%d.%d:9100" % (i >> 16 & 255, i >> 8 & 255, i & 255)],
             "labels": {"instance": "host-%07d" % i}} for i in range(n)]
'''

# httpsd's debug line for each Python generator run (cache/generators.rs).
RUN_LINE = re.compile(r"Python generator run.*?script_seconds=(?P<script>[0-9.e-]+) "
                      r"call_overhead_seconds=(?P<overhead>[0-9.e-]+) encode_seconds=(?P<encode>[0-9.e-]+)")


def one_file(root: Path, n: int) -> int:
    groups = [{"targets": [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:9100"],
               "labels": {"instance": f"host-{i:07}"}} for i in range(n)]
    p = root / "big" / "targets.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(groups))
    return p.stat().st_size


def many_files(root: Path) -> int:
    total = 0
    (root / "big").mkdir(parents=True)
    for f in range(FILES_1M):
        groups = [{"targets": [f"10.{f >> 8}.{f & 255}.{g}:{9100 + t}" for t in range(10)],
                   "labels": {"job": "node", "file": f"f{f:04}"}} for g in range(100)]
        p = root / "big" / f"f{f:04}.json"
        p.write_text(json.dumps(groups))
        total += p.stat().st_size
    return total


def hwm_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) of `pid` and its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += sum(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        except OSError:
            pass
        stack += c._children(p)
    return total


def reset_hwm(pid: int) -> None:
    # "5" resets the peak RSS (Linux >= 4.0); we own the process.
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def wait_written(cache: Path, deadline: float) -> None:
    """Waits until the original's cache file exists and has stopped growing: it rewrites
    the file in place, and a request that reads it half-written deletes it."""
    last = None
    while time.time() < deadline:
        try:
            sizes = tuple(sorted(f.stat().st_size for f in cache.iterdir()))
        except OSError:
            sizes = None
        if sizes and sizes == last:
            return
        last = sizes
        time.sleep(0.1)


def serve_once(cmd: list[str], port: int, path: str, groups: int, log: Path, rps: bool,
               cache: Path | None = None) -> dict:
    t0 = time.perf_counter()
    p = c.start(cmd, log)
    deadline = time.time() + 600
    first = True
    while True:
        if p.poll() is not None:
            c.fail(f"{cmd[0]} exited with {p.returncode} (see {log})")
        if cache is not None and not first:
            wait_written(cache, deadline)
        try:
            st, body = c.http_get(port, path, timeout=60)
            if st == 500 and b"more than the limit" in body:
                c.fail(f"{cmd[0]}: {body[:300]!r}")
            # The clock stops when the answer is in, before our own parsing of it.
            served = time.perf_counter() - t0
            if st == 200 and len(json.loads(body)) == groups:
                break
            first = False
        except OSError:
            pass
        if time.time() > deadline:
            c.fail(f"{cmd[0]} did not serve {path} within 600 s")
        time.sleep(0.02)
    peak = hwm_kib(p.pid)
    c.http_get(port, path, timeout=60)
    time.sleep(3)
    steady = c.rss_kib(p.pid)
    r = c.wrk(f"http://127.0.0.1:{port}{path}", connections=4, duration=3, timeout=30) if rps else None
    c.stop(p)
    return {"served": served, "peak": peak, "steady": steady, "rps": r["ok_rps"] if r else None,
            "body": len(body)}


def static_rows(a, bins, v3, work: Path) -> tuple[list, list]:
    sizes = [("%dk groups, 1 file" % (n // 1000), n, lambda root, n=n: one_file(root, n)) for n in a.sizes]
    sizes.append(("1M targets, 1,000 files", 100 * FILES_1M, many_files))
    rows, goals = [], []
    for label, groups, make in sizes:
        tree = work / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        size = make(tree)
        # Static files must have settled (200 ms) before httpsd loads them.
        time.sleep(0.5)
        res = {"httpsd": [], "original": []}
        for run in range(a.runs):
            port = c.free_port()
            # The 500k file (36 MiB) is past the default --max-file-size (32 MiB).
            res["httpsd"].append(serve_once([str(bins["httpsd"]), "serve", str(tree), "-p", str(port),
                                             "--max-file-size", str(1 << 30)],
                                            port, "/targets/big", groups, work / "httpsd.log", run == 0))
            if run < a.original_runs:
                cache = work / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir()
                port = c.free_port()
                res["original"].append(serve_once(
                    [str(v3 / "bin" / "prometheus-http-sd"), "serve", str(tree), "-p", str(port),
                     "--cache-dir", str(cache), "--cache-refresh-interval", "1"],
                    port, "/targets/big", groups, work / "original.log", run == 0, cache))
            c.log(f"{label} run {run + 1}: httpsd {res['httpsd'][-1]['served']:.2f} s, "
                  f"original {res['original'][-1]['served'] if res['original'] else float('nan'):.2f} s")
        m = {k: {f: c.median([r[f] for r in v]) for f in ("served", "peak", "steady")} for k, v in res.items()}
        ours, orig = m["httpsd"], m["original"]
        rows.append([label, f"{size / 2**20:.1f} MiB",
                     f"{ours['served']:.2f} s", f"{orig['served']:.2f} s",
                     c.fmt_mib(ours["peak"]), c.fmt_mib(orig["peak"]),
                     c.fmt_mib(ours["steady"]), c.fmt_mib(orig["steady"]),
                     f"{res['httpsd'][0]['rps']:,.1f}", f"{res['original'][0]['rps']:,.1f}"])
        base = 20 * 2**20
        goals.append([label,
                      c.goal(ours["steady"] * 1024 <= 3 * size + base),
                      c.goal(ours["peak"] * 1024 <= 5 * size + base),
                      c.goal(ours["peak"] < orig["peak"])])
        if groups == 500_000:
            goals[-1].append(f"{ours['served']:.2f} s {c.goal(ours['served'] <= 0.5)}")
        else:
            goals[-1].append("")
    return rows, goals


def python_rows(a, bins, work: Path) -> list:
    tree = work / "pytree"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "gen").mkdir(parents=True)
    gen = tree / "gen" / "gen.py"
    gen.write_text(GEN)
    port = c.free_port()
    log = work / "httpsd-py.log"
    p = c.start([str(bins["httpsd"]), "serve", str(tree), "-p", str(port)], log,
                env={"RUST_LOG": "info,httpsd::cache::generators=debug"})
    c.wait_status(port, "/targets/gen?n=1", proc=p)
    time.sleep(2)

    def timings(count: int) -> dict:
        """The run line number `count` (from 1) of httpsd's log (written in batches)."""
        deadline = time.time() + 30
        while time.time() < deadline:
            found = RUN_LINE.findall(log.read_text(errors="replace"))
            if len(found) >= count:
                return dict(zip(("script", "overhead", "encode"), map(float, found[count - 1])))
            time.sleep(0.05)
        c.fail(f"httpsd logged no run line number {count} in {log}")

    timings(1)  # the warm-up run's line, once it is written
    runs_logged = len(RUN_LINE.findall(log.read_text(errors="replace")))
    rows = []
    for n in a.sizes:
        e2e, own, ours, overhead, encode = [], [], [], [], []
        for run in range(a.runs):
            if run == 0:
                before = c.rss_kib(p.pid, tree=False)
                reset_hwm(p.pid)
            # A new parameter set each run: a cache miss, so the generator runs.
            t = time.perf_counter()
            st, body = c.http_get(port, f"/targets/gen?n={n}&run={run}", timeout=300)
            e2e.append(time.perf_counter() - t)
            if st != 200 or len(json.loads(body)) != n:
                c.fail(f"python generator n={n}: status {st}")
            runs_logged += 1
            logged = timings(runs_logged)
            own.append(logged["script"])
            ours.append(e2e[-1] - logged["script"])
            overhead.append(logged["overhead"])
            encode.append(logged["encode"])
            if run == 0:
                # The httpsd process alone (VmHWM of the workers is theirs).
                with open(f"/proc/{p.pid}/status") as f:
                    peak = sum(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
                time.sleep(3)
                after = c.rss_kib(p.pid, tree=False)
        own, ours = c.median(own), c.median(ours)
        c.log(f"python n={n}: e2e {c.median(e2e):.2f} s, python {own:.2f} s, httpsd {ours:.3f} s "
              f"(overhead {c.median(overhead):.3f} s, encode {c.median(encode):.3f} s), "
              f"before {before} after {after} KiB")
        rows.append([f"{n:,}", f"{c.median(e2e):.2f} s", f"{own:.2f} s", f"{ours:.3f} s",
                     f"{c.median(overhead):.3f} s", f"{c.median(encode):.3f} s",
                     c.fmt_mib(before), c.fmt_mib(peak), c.fmt_mib(after),
                     f"{(after - before) / 1024:+.0f} MiB (one result of {len(body) / 2**20:.1f} MiB cached)",
                     (f"{c.goal(ours <= 0.5)}, RSS {c.goal(after - before <= 50 * 1024)}" if n == 500_000 else "")])
    c.stop(p)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--original-runs", type=int, default=1, help="runs of the original per size (slow)")
    ap.add_argument("--sizes", default="1000,10000,100000,500000")
    ap.add_argument("--python-only", action="store_true",
                    help="only the Python generator table (no static trees, no original)")
    ap.add_argument("--markdown", help="also write the result as Markdown to this file")
    a = ap.parse_args()
    a.sizes = [int(x) for x in a.sizes.split(",")]
    a.original_runs = max(1, min(a.original_runs, a.runs))

    bins = c.build_release()
    work = c.OUT / "scale"
    work.mkdir(parents=True, exist_ok=True)
    python_intro = ("A Python generator returning that many groups (httpsd only; a new parameter set per run, "
                    "so each run is a cache miss):\n\n")

    def python_table() -> str:
        return c.table(["groups", "first request", "Python's own (worker's time)", "httpsd's part",
                        "of which call overhead", "encode", "httpsd RSS before",
                        "peak", "3 s after", "after - before", "goals: part ≤ 0.5 s, RSS back within 50 MiB"],
                       python_rows(a, bins, work))

    if a.python_only:
        body = python_intro + python_table() + (
            f"\n\nMedians of {a.runs} runs; RSS of the httpsd process alone, without its worker pool.")
        c.report("Fleet scale: a Python generator's result against its size", body, a.markdown,
                 "python3 bench/scale.py " + " ".join(sys.argv[1:]))
        return

    c.require_tool("wrk")
    v3 = c.venv("v3", c.ORIGINAL_V3)

    rows, goals = static_rows(a, bins, v3, work)
    body = c.table(["tree", "JSON", "served after: httpsd", "original", "peak RSS: httpsd", "original",
                    "steady RSS: httpsd", "original", "req/s: httpsd", "original"], rows)
    body += "\n\nGoals (issue 19): steady RSS ≤ 3x the files + 20 MiB, peak ≤ 5x + 20 MiB, peak below the " \
            "original's, 500k groups served within 0.5 s:\n\n"
    body += c.table(["tree", "steady ≤ 3x + 20 MiB", "peak ≤ 5x + 20 MiB", "peak < original", "500k ≤ 0.5 s"], goals)
    body += "\n\n" + python_intro + python_table()
    body += (f"\n\nMedians of {a.runs} runs for httpsd and {a.original_runs} for the original (a fresh process "
             f"per run); requests/s from the first run only. RSS includes child processes, except in the "
             f"Python table (the httpsd process alone, without its worker pool). \"served after\" counts "
             f"from the process start to the first 200 answer with every group (polled every 20 ms; the "
             f"original is asked once, then again each time its cache file has stopped growing for "
             f"100 ms, since it deletes a file read half-written). The original rewrites its cache "
             f"file while wrk runs (each request asks for a refresh): its requests/s count 200s only.")
    c.report("Fleet scale: memory and time against the tree's size", body, a.markdown,
             "python3 bench/scale.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
