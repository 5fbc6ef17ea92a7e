#!/usr/bin/env python3
"""Soak and chaos run of multiproc-exporter with `--archive` (issue 20, part 4).

One command: `python3 bench/soak/multiproc.py --minutes 10`. For `--minutes`:

- a writer supervisor (real `prometheus_client` in multiprocess mode) forks `--rate`
  short-lived writer processes per second (default 30, at most 64 alive); each updates
  every metric type (Counter with and without labels, Gauge in the modes sum, min, max,
  mostrecent, livesum, liveall, all, Histogram, Summary), records its own totals as one
  line of a side file, and exits; half are `mark_process_dead`ed by the supervisor, the
  others just disappear (as crashed workers do);
- `multiproc-exporter --archive --archive-interval 5 --drop-dead-all-gauges` (so that
  the output stays bounded) serves the directory on 127.0.0.1 and is SIGKILLed every
  `--kill-every` s (default 60, give or take 20 %) and restarted at once;
- a scraper reads /metrics every 0.25 s and checks that no counter, histogram or summary
  sample ever decreased between consecutive scrapes.

At the end the writers stop (the supervisor stays alive, as an application's master
does: the archiver only acts while a writer of the directory is visible), every dead pid
is archived, and the served totals must equal
the writers' own totals (no loss, no double count) and the output of Python's
`MultiProcessCollector` on the same directory.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBS = [0.0625, 0.25, 0.75, 2.0, 10.0]  # dyadic: float sums are exact in any order
BUCKETS = [0.1, 0.5, 1.0, 5.0]


# ------------------------------------------------------------- the writers (child side)


def writers(side: Path, rate: float, seconds: float, seed: int) -> None:
    """Runs in its own process with PROMETHEUS_MULTIPROC_DIR set: forks the writers."""
    from prometheus_client import Counter, Gauge, Histogram, Summary, multiprocess

    random.seed(seed)
    requests = Counter("soak_requests", "requests", ["route"])
    events = Counter("soak_events", "events")
    gauges = {m: Gauge(f"soak_gauge_{m}", f"gauge {m}", ["kind"], multiprocess_mode=m)
              for m in ("sum", "min", "max", "mostrecent", "livesum", "liveall", "all")}
    hist = Histogram("soak_latency_seconds", "latency", ["route"], buckets=BUCKETS)
    summ = Summary("soak_size_bytes", "size", ["route"])
    fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    alive: set[int] = set()
    end = time.time() + seconds
    forked = 0

    def reap(block: bool) -> None:
        while alive:
            try:
                pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                alive.clear()
                return
            if pid == 0:
                return
            alive.discard(pid)
            if pid % 2 == 0:
                multiprocess.mark_process_dead(pid)

    def child(n_ops: int, life: float) -> None:
        tot = {"routes": {}, "events": 0, "hist": {}, "summ": {}, "gauge": {}}
        rnd = random.Random(os.getpid() ^ seed)
        for _ in range(n_ops):
            route = rnd.choice("abc")
            k = rnd.randint(1, 5)
            requests.labels(route).inc(k)
            tot["routes"][route] = tot["routes"].get(route, 0) + k
            events.inc()
            tot["events"] += 1
            v = rnd.choice(OBS)
            hist.labels(route).observe(v)
            h = tot["hist"].setdefault(route, {"count": 0, "sum": 0.0, "le": [0] * (len(BUCKETS) + 1)})
            h["count"] += 1
            h["sum"] += v
            h["le"][next((i for i, b in enumerate(BUCKETS) if v <= b), len(BUCKETS))] += 1
            summ.labels(route).observe(v * 8)
            s = tot["summ"].setdefault(route, {"count": 0, "sum": 0.0})
            s["count"] += 1
            s["sum"] += v * 8
            g = rnd.randint(-100, 100)
            for gauge in gauges.values():
                gauge.labels("x").set(g)
            tot["gauge"] = g
        time.sleep(life)
        tot["pid"] = os.getpid()
        # One write of one line with O_APPEND: lines of concurrent writers never mix.
        os.write(fd, (json.dumps(tot) + "\n").encode())

    t0 = time.time()
    while not stop[0] and time.time() < end:
        reap(False)
        # Fork on a schedule (not a fixed sleep), so the rate holds on a loaded machine.
        due = int((time.time() - t0) * rate) - forked
        for _ in range(min(due, 64 - len(alive))):
            n_ops = random.randint(5, 60)
            life = random.uniform(0.02, 0.5)
            pid = os.fork()
            if pid == 0:
                try:
                    child(n_ops, life)
                finally:
                    os._exit(0)
            alive.add(pid)
            forked += 1
        time.sleep(0.01)
    reap(True)
    # The supervisor stays alive (idle, its own files mapped), as an application's master
    # process does: the archiver only acts while some writer of the directory is visible.
    print(json.dumps({"forked": forked}), flush=True)
    while not stop[0]:
        time.sleep(0.1)


# ------------------------------------------------------------- the run (parent side)

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def parse(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def monotonic_key(k: str) -> bool:
    name = k.split("{")[0]
    if not name.startswith("soak_") or name.startswith("soak_gauge_"):
        return False
    return name.endswith(("_total", "_bucket", "_count", "_sum"))


def main() -> int:
    import soaklib as S

    def extra(ap):
        ap.add_argument("--rate", type=float, default=30, help="writer processes started per second (default 30)")
        ap.add_argument("--kill-every", type=float, default=60, help="seconds between exporter kills (default 60)")
    args = S.parse_args("multiproc", __doc__.split("\n\n")[0], extra)
    exporter = str(S.release_binary("multiproc-exporter"))
    d = args.out / "prom"
    d.mkdir()
    side = args.out / "totals.jsonl"
    port = S.common.free_port()
    ex_cmd = [exporter, str(d), "--listen", f"127.0.0.1:{port}", "--archive", "--archive-interval", "5",
              "--drop-dead-all-gauges"]
    starts = [0]

    def start_exporter():
        starts[0] += 1
        return S.common.start(ex_cmd, args.out / f"exporter-{starts[0]}.log")

    ex = start_exporter()
    S.common.wait_status(port, "/metrics", 200, timeout=60, proc=ex)
    seconds = args.minutes * 60
    env = {"PROMETHEUS_MULTIPROC_DIR": str(d)}
    sup = S.common.start([sys.executable, str(Path(__file__).resolve()), "--writers", str(side),
                          str(args.rate), str(seconds), str(args.seed)], args.out / "writers.log", env=env)
    S.log(f"writers started ({args.rate}/s); exporter on 127.0.0.1:{port}")

    stop = S.Stopper(seconds)
    state = {"scrapes": 0, "failed": 0, "decreases": [], "prev": {}, "kills": 0}

    def scraper():
        prev = {}
        while True:
            try:
                st, body = S.common.http_get(port, "/metrics", timeout=30)
            except OSError:
                st, body = -1, b""
            if st != 200:
                state["failed"] += 1
            else:
                state["scrapes"] += 1
                cur = parse(body.decode())
                for k, v in cur.items():
                    if monotonic_key(k) and k in prev and v < prev[k] and len(state["decreases"]) < 50:
                        state["decreases"].append(f"{k}: {prev[k]} -> {v} (scrape {state['scrapes']})")
                # A series that vanished would be a decrease to 0.
                for k, v in prev.items():
                    if monotonic_key(k) and k not in cur and v > 0 and len(state["decreases"]) < 50:
                        state["decreases"].append(f"{k}: {v} -> missing (scrape {state['scrapes']})")
                prev = {k: v for k, v in cur.items() if monotonic_key(k)} or prev
            if stop.event.is_set():
                return
            time.sleep(0.25)

    def killer():
        nonlocal ex
        every = min(args.kill_every, seconds / 3)
        while stop.sleep(every * random.uniform(0.8, 1.2)):
            os.kill(ex.pid, signal.SIGKILL)
            ex.wait()
            state["kills"] += 1
            ex = start_exporter()

    sc = S.thread(scraper)
    kt = S.thread(killer)
    while stop.sleep(1):
        if sup.poll() is not None:
            break
    kt.join(timeout=60)
    # The writers stop forking by themselves; the supervisor reaps them, says how many it
    # forked, and stays alive (see writers()). Every dead pid must be archived before the
    # final comparison.
    deadline = time.time() + 120
    while time.time() < deadline and '"forked"' not in (args.out / "writers.log").read_text():
        time.sleep(0.5)
    pid_file = re.compile(r"^(counter|histogram|summary|gauge_(min|max|sum|mostrecent|live\w+))_(\d+)\.db$")

    def dead_files():
        return sorted(p.name for p in d.iterdir()
                      if (m := pid_file.match(p.name)) and int(m.group(3)) != sup.pid)
    deadline = time.time() + 120
    while time.time() < deadline and dead_files():
        time.sleep(1)
    left = dead_files()
    time.sleep(1)
    stop.stop()
    sc.join(timeout=60)
    st, body = S.common.http_get(port, "/metrics", timeout=30)
    served = parse(body.decode()) if st == 200 else {}
    alive = ex.poll() is None and sup.poll() is None
    S.common.stop(ex)
    py = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom prometheus_client import CollectorRegistry, generate_latest, multiprocess\n"
        "r = CollectorRegistry()\nmultiprocess.MultiProcessCollector(r)\n"
        "sys.stdout.write(generate_latest(r).decode())\n")], env=dict(os.environ, **env),
        capture_output=True, text=True, timeout=300)
    python = parse(py.stdout)
    S.common.stop(sup)
    (args.out / "final-exporter.txt").write_bytes(body)
    (args.out / "final-python.txt").write_text(py.stdout + py.stderr)

    # The writers' own totals.
    exp: dict[str, float] = {}
    pids = 0
    gauge_vals = []
    for line in side.read_text().splitlines():
        t = json.loads(line)
        pids += 1
        exp["soak_events_total"] = exp.get("soak_events_total", 0) + t["events"]
        for r, n in t["routes"].items():
            k = f'soak_requests_total{{route="{r}"}}'
            exp[k] = exp.get(k, 0) + n
        for r, h in t["hist"].items():
            cum = 0
            for i, b in enumerate(BUCKETS + [float("inf")]):
                cum += h["le"][i]
                le = "+Inf" if b == float("inf") else repr(b)
                k = f'soak_latency_seconds_bucket{{le="{le}",route="{r}"}}'
                exp[k] = exp.get(k, 0) + cum
            for f in ("count", "sum"):
                k = f'soak_latency_seconds_{f}{{route="{r}"}}'
                exp[k] = exp.get(k, 0) + h[f]
        for r, s in t["summ"].items():
            for f in ("count", "sum"):
                k = f'soak_size_bytes_{f}{{route="{r}"}}'
                exp[k] = exp.get(k, 0) + s[f]
        if t["routes"]:
            gauge_vals.append(t["gauge"])
    if gauge_vals:
        exp['soak_gauge_sum{kind="x"}'] = float(sum(gauge_vals))
        exp['soak_gauge_min{kind="x"}'] = float(min(gauge_vals))
        exp['soak_gauge_max{kind="x"}'] = float(max(gauge_vals))

    def norm(k: str) -> str:
        # Label order and float spelling may differ between writers of the exposition.
        name, _, rest = k.partition("{")
        labels = sorted(x for x in re.findall(r'(\w+="[^"]*")', rest))
        labels = [re.sub(r'le="([^"]+)"', lambda m: f'le="{float(m.group(1))!r}"'
                         if m.group(1) != "+Inf" else 'le="+Inf"', x) for x in labels]
        return name + ("{" + ",".join(labels) + "}" if labels else "")

    served_n = {norm(k): v for k, v in served.items() if k.startswith("soak_")}
    python_n = {norm(k): v for k, v in python.items() if k.startswith("soak_")}
    exp_n = {norm(k): v for k, v in exp.items()}
    vs_writers = [f"{k}: writers {v}, served {served_n.get(k)}" for k, v in sorted(exp_n.items())
                  if served_n.get(k) != v]
    vs_python = [f"{k}: python {python_n.get(k)}, served {served_n.get(k)}"
                 for k in sorted(set(served_n) | set(python_n)) if served_n.get(k) != python_n.get(k)]
    writers_out = (args.out / "writers.log").read_text(errors="replace")
    forked = json.loads(writers_out.strip().splitlines()[-1])["forked"] if '"forked"' in writers_out else 0
    logs = "".join(p.read_text(errors="replace") for p in args.out.glob("exporter-*.log"))
    panics = logs.count("panicked")
    result = {
        "minutes": args.minutes, "seed": args.seed, "rate": args.rate, "writers_forked": forked,
        "writers_recorded": pids, "exporter_kills": state["kills"], "scrapes": state["scrapes"],
        "scrapes_failed": state["failed"], "decreases": state["decreases"], "not_archived_at_end": left,
        "mismatch_vs_writers": vs_writers[:50], "mismatch_vs_python": vs_python[:50],
        "series_compared": len(exp_n), "series_served": len(served_n), "python_stderr": py.stderr[-2000:],
        "exporter_alive_at_end": alive, "panics_in_logs": panics,
    }
    lines = [
        f"duration: {args.minutes} min, seed {args.seed}; {forked} writer processes forked "
        f"({forked / max(seconds, 1):.1f}/s), {pids} recorded their totals",
        f"exporter SIGKILLed and restarted {state['kills']} times; {state['scrapes']} scrapes "
        f"({state['failed']} failed while it was down or restarting)",
        f"decreases between consecutive scrapes: {len(state['decreases'])}",
        f"served vs writers' totals: {len(exp_n)} series compared, {len(vs_writers)} differ",
        f"served vs Python MultiProcessCollector: {len(served_n)} series, {len(vs_python)} differ",
        f"files of dead pids not archived at the end: {len(left)}",
        f"exporter alive at the end: {alive}; panics in logs: {panics}",
    ]
    for what in (state["decreases"][:5], vs_writers[:5], vs_python[:5]):
        if what:
            lines.append("  " + "\n  ".join(what))
    goals = [
        ("no crash, no panic", alive and panics == 0 and forked == pids),
        ("no counter ever decreased between consecutive scrapes", not state["decreases"]),
        ("served totals equal the writers' totals", bool(exp_n) and not vs_writers),
        ("served output equals Python's MultiProcessCollector", bool(served_n) and not vs_python),
    ]
    return S.finish(args.out, "multiproc-exporter soak", f"python3 bench/soak/multiproc.py --minutes {args.minutes:g}",
                    result, lines, goals)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--writers":
        writers(Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        raise SystemExit(0)
    sys.path.insert(0, str(HERE))
    raise SystemExit(main())
