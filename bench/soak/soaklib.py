"""Shared helpers of the soak and chaos runs (stdlib only).

Each run is one command with `--minutes N`, listens on loopback only, stops by itself,
and kills only the processes it started (by PID, through bench/common.py). It writes
`result.json` and `report.txt` under bench/out/soak/<name>/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402  (bench/common.py: process start/stop, ports, machine)

REPO = common.REPO
log = common.log
fail = common.fail


def parse_args(name: str, doc: str, extra=None) -> argparse.Namespace:
    """The options every run shares: `--minutes`, `--seed`, `--out`."""
    ap = argparse.ArgumentParser(prog=f"bench/soak/{name}.py", description=doc)
    ap.add_argument("--minutes", type=float, default=10, help="how long the chaos lasts (default 10)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    ap.add_argument("--out", type=Path, default=common.OUT / "soak" / name, help="output directory")
    if extra:
        extra(ap)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int(time.time())
    random.seed(args.seed)
    if args.out.exists():
        import shutil
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    return args


def release_binary(name: str) -> Path:
    """The release binary `name`; fails with the build command when it is missing."""
    p = common.target_dir() / "release" / name
    if not p.exists():
        fail(f"{p} is missing: nice cargo build --release -p httpsd -p multiproc-exporter")
    return p


def proc_stats(pid: int) -> dict:
    """RSS (KiB), open descriptors and threads of one process."""
    rss = threads = 0
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {"rss_kib": 0, "fds": 0, "threads": 0}
    return {"rss_kib": rss, "fds": fds, "threads": threads}


def children(pid: int) -> list[int]:
    """Direct children of `pid` (all its threads)."""
    return common._children(pid)


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


class Stopper:
    """A deadline shared by the chaos threads: `sleep` returns False once it has passed."""

    def __init__(self, seconds: float):
        self.end = time.time() + seconds
        self.event = threading.Event()

    def sleep(self, s: float) -> bool:
        s = min(s, max(0.0, self.end - time.time()))
        if self.event.wait(s):
            return False
        return time.time() < self.end

    def running(self) -> bool:
        return not self.event.is_set() and time.time() < self.end

    def stop(self) -> None:
        self.event.set()


def thread(target, *a, **kw) -> threading.Thread:
    t = threading.Thread(target=target, args=a, kwargs=kw, daemon=True)
    t.start()
    return t


def finish(out: Path, title: str, command: str, result: dict, lines: list[str], goals: list[tuple[str, bool]]) -> int:
    """Writes result.json and report.txt, prints the report; exit status 1 if a goal was missed."""
    result = dict(result)
    result["command"] = command
    result["machine"] = common.machine()
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    result["goals"] = {g: ok for g, ok in goals}
    (out / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    text = [f"# {title}", "", f"command: {command}", f"machine: {result['machine']}",
            f"date: {result['date']}", ""] + lines + [""]
    text += [f"goal {'MET   ' if ok else 'MISSED'}: {g}" for g, ok in goals]
    report = "\n".join(text) + "\n"
    (out / "report.txt").write_text(report)
    print(report, flush=True)
    log(f"written {out / 'result.json'} and {out / 'report.txt'}")
    return 0 if all(ok for _, ok in goals) else 1
