#!/usr/bin/env python3
"""Soak and chaos run of the Redis scale-out (issue 20, part 4).

One command: `python3 bench/soak/scaleout.py --minutes 10`. Starts its own redis-server
(own port, own directory, append-only file fsynced at every write), two
`httpsd server-only` and two `httpsd worker-only` (4 loops each), all on 127.0.0.1, and for
`--minutes`:

- 8 steady clients poll 8 cached paths (Python and executable generators, cache time 2 s,
  so refreshes run all the time) alternately on both servers;
- 2 job clients ask for a new path every 0.2 s (a fresh `?n=<nonce>`: always a miss, so
  every one is a job through Redis to a worker); every generator run appends one line to
  a log file;
- every `--kill-every` s one worker process is SIGKILLed with its whole process group
  (Python pool and running generators) and restarted 2 s later;
- every `--redis-every` s Redis is stopped (SIGTERM), left down `--redis-down` s and
  restarted on the same port and directory.

At the end the chaos stops, and the run waits (up to 120 s) for every accepted job (200,
or 503 "no result yet": queued) to have run. Reports requests, non-200 of the steady
clients outside the Redis-down windows (goal 0), jobs lost (goal 0), duplicate runs per
job and per refresh, and the time from Redis's restart to the first job that completes.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import soaklib as S

STEADY = [f"/targets/steady/{kind}?x=v{i}" for kind in ("py", "exec") for i in range(4)]

PY_GEN = '''
import os, random, time
def generate_targets(**params):
    key = "{kind}:" + (params.get("n") or params.get("x") or "-")
    def note(phase):
        with open({log!r}, "a") as f:
            f.write("%s %s %.3f %d\\n" % (key, phase, time.time(), os.getpid()))
    note("start")
    # Jobs take a while, so that worker kills land in the middle of runs.
    time.sleep(random.uniform(0.2, 1.0) if params.get("n") else 0.05)
    note("done")
    return [{{"targets": ["10.0.0.1:9100"], "labels": {{"soak": key}}}}]
'''
EXEC_GEN = '''#!/bin/sh
key="{kind}:${{HTTPSD_PARAM_N:-${{HTTPSD_PARAM_X:--}}}}"
printf '%s start %s %s\\n' "$key" "$(date +%s.%N)" "$$" >> {log}
if [ -n "$HTTPSD_PARAM_N" ]; then sleep 0.5; fi
printf '%s done %s %s\\n' "$key" "$(date +%s.%N)" "$$" >> {log}
printf '[{{"labels":{{"soak":"%s"}},"targets":["10.0.0.1:9100"]}}]\\n' "$key"
'''


def write_tree(root: Path, runlog: Path) -> None:
    for group in ("steady", "job"):
        for kind in ("py", "exec"):
            d = root / group / kind
            d.mkdir(parents=True)
            k = f"{group}-{kind}"
            if kind == "py":
                (d / "gen.py").write_text(PY_GEN.format(kind=k, log=str(runlog)))
            else:
                (d / "gen").write_text(EXEC_GEN.format(kind=k, log=str(runlog)))
                (d / "gen").chmod(0o755)


class Cluster:
    """Redis, two servers and two workers; restarts what the chaos kills."""

    def __init__(self, out: Path, root: Path):
        self.out = out
        self.root = root
        self.httpsd = str(S.release_binary("httpsd"))
        self.redis_bin = S.common.require_tool("redis-server", "redis-server")
        self.redis_port = S.common.free_port()
        self.redis_dir = out / "redis"
        self.redis_dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.server_ports = [S.common.free_port(), S.common.free_port()]
        self.worker_ports = [S.common.free_port(), S.common.free_port()]
        self.redis = None
        self.workers = [None, None]
        self.servers = []
        self.starts = 0
        self.common = ["--redis-url", self.url, "--cache-time", "2", "--max-stale", "60", "--log-level", "30"]

    def start_redis(self) -> None:
        self.starts += 1
        self.redis = S.common.start(
            [self.redis_bin, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(self.redis_dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--protected-mode", "yes"], self.out / f"redis-{self.starts}.log")
        deadline = time.time() + 30
        import socket
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        S.fail("redis-server did not answer PING within 30 s")

    def stop_redis(self) -> None:
        self.redis.send_signal(signal.SIGTERM)
        self.redis.wait(timeout=30)

    def start_worker(self, i: int) -> None:
        n = sum(1 for p in self.out.glob(f"worker{i}-*.log"))
        self.workers[i] = S.common.start(
            [self.httpsd, "worker-only", str(self.root), "-h", "127.0.0.1", "-p", str(self.worker_ports[i]),
             "--num-workers", "4", "--heartbeat-timeout", "5", "--stale-job-check-interval", "5",
             "--max-run-time", "10"] + self.common, self.out / f"worker{i}-{n}.log")

    def kill_worker(self, i: int) -> None:
        # The whole group: the worker, its Python pool and any running generator, as when
        # a node or container dies.
        try:
            os.killpg(self.workers[i].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.workers[i].wait()

    def start(self) -> None:
        self.start_redis()
        for i in range(2):
            self.start_worker(i)
        for i, port in enumerate(self.server_ports):
            self.servers.append(S.common.start(
                [self.httpsd, "server-only", str(self.root), "-h", "127.0.0.1", "-p", str(port), "--wait", "5"]
                + self.common, self.out / f"server{i}.log"))


class Record:
    """Every request: (start, end, status, kind)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []
        self.jobs = {}  # nonce -> (status, accepted, body ok)
        self.samples = []

    def add(self, t0, t1, status, kind, sample=None):
        with self.lock:
            self.rows.append((t0, t1, status, kind))
            if sample and len(self.samples) < 20:
                self.samples.append(sample)


def get(conn_box: list, port: int, path: str) -> tuple[int, bytes]:
    if conn_box[0] is None:
        conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c = conn_box[0]
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        c.close()
        conn_box[0] = None
        raise


def steady_client(cl: Cluster, n: int, rec: Record, stop: S.Stopper) -> None:
    boxes = {p: [None] for p in cl.server_ports}
    i = n
    while stop.running():
        path = STEADY[i % len(STEADY)]
        port = cl.server_ports[i % 2]
        i += 1
        t0 = time.time()
        try:
            st, body = get(boxes[port], port, path)
            want = path.split("/")[3].split("?")[0]
            ok = st != 200 or f'"steady-{want}:{path.split("x=")[1]}"'.encode() in body
            if not ok:
                st = -2
            rec.add(t0, time.time(), st, "steady", None if st == 200 else f"{path} {st} {body[:150]!r}")
        except OSError as e:
            rec.add(t0, time.time(), -1, "steady", f"{path} {e!r}")
            stop.sleep(0.05)
        stop.sleep(0.02)


def job_client(cl: Cluster, n: int, rec: Record, stop: S.Stopper) -> None:
    i = n
    while stop.running():
        nonce = uuid.uuid4().hex[:16]
        kind = ("py", "exec")[i % 2]
        port = cl.server_ports[(i // 2) % 2]
        i += 1
        t0 = time.time()
        try:
            st, body = S.common.http_get(port, f"/targets/job/{kind}?n={nonce}", timeout=30)
        except OSError as e:
            rec.add(t0, time.time(), -1, "job", f"job {e!r}")
            stop.sleep(0.2)
            continue
        # Accepted: the job reached Redis (a result came back, or it is queued).
        accepted = st == 200 or (st == 503 and b"no result yet" in body)
        body_ok = st != 200 or f'"job-{kind}:{nonce}"'.encode() in body
        with rec.lock:
            rec.jobs[f"job-{kind}:{nonce}"] = (st, accepted, body_ok)
        rec.add(t0, time.time(), st if body_ok else -2, "job",
                None if st == 200 and body_ok else f"job {st} {body[:150]!r}")
        stop.sleep(0.2)


def probe_recovery(cl: Cluster, since: float, limit: float = 120) -> float | None:
    """Seconds from `since` until a brand-new job completes end to end (200)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        nonce = "probe" + uuid.uuid4().hex[:10]
        try:
            st, _ = S.common.http_get(cl.server_ports[0], f"/targets/job/py?n={nonce}", timeout=10)
            if st == 200:
                return time.time() - since
        except OSError:
            pass
        time.sleep(0.1)
    return None


def chaos(cl: Cluster, args, stop: S.Stopper, events: list, windows: list) -> None:
    t0 = time.time()
    seconds = args.minutes * 60
    next_kill = t0 + min(args.kill_every, seconds / 4)
    next_redis = t0 + min(args.redis_every, seconds / 2)
    while stop.running():
        now = time.time()
        if now >= next_kill:
            i = random.randrange(2)
            cl.kill_worker(i)
            events.append((round(now - t0, 1), f"worker {i} SIGKILLed"))
            stop.sleep(2)
            cl.start_worker(i)
            next_kill = now + args.kill_every
        elif now >= next_redis:
            down = time.time()
            cl.stop_redis()
            events.append((round(down - t0, 1), "redis stopped"))
            time.sleep(args.redis_down)
            cl.start_redis()
            up = time.time()
            events.append((round(up - t0, 1), "redis restarted"))
            rec = probe_recovery(cl, up)
            windows.append({"down": down, "up": up, "recovered_after_s": rec,
                            "end": up + (rec if rec is not None else 120)})
            next_redis = time.time() + args.redis_every
        else:
            stop.sleep(min(next_kill, next_redis) - now)


def read_runs(runlog: Path, phase: str = "done") -> dict[str, list[float]]:
    """Generator runs per key that reached `phase` (start or done), with their times."""
    runs: dict[str, list[float]] = {}
    if runlog.exists():
        for line in runlog.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[1] == phase:
                runs.setdefault(parts[0], []).append(float(parts[2]))
    return runs


def main() -> int:
    def extra(ap):
        ap.add_argument("--kill-every", type=float, default=20, help="seconds between worker kills (default 20)")
        ap.add_argument("--redis-every", type=float, default=90,
                        help="seconds between Redis restarts (default 90)")
        ap.add_argument("--redis-down", type=float, default=5, help="seconds Redis stays down (default 5)")
    args = S.parse_args("scaleout", __doc__.split("\n\n")[0], extra)
    root = args.out / "tree"
    runlog = args.out / "runs.log"
    write_tree(root, runlog)
    cl = Cluster(args.out, root)
    cl.start()
    for port in cl.server_ports:
        for p in STEADY:
            S.common.wait_status(port, p, 200, timeout=60)
    S.log("both servers answer every steady path; chaos starts")
    rec = Record()
    seconds = args.minutes * 60
    stop = S.Stopper(seconds)
    events, windows = [], []
    threads = [S.thread(steady_client, cl, n, rec, stop) for n in range(8)]
    threads += [S.thread(job_client, cl, n, rec, stop) for n in range(2)]
    chaos_t = S.thread(chaos, cl, args, stop, events, windows)
    t_start = time.time()
    while stop.sleep(1):
        pass
    for t in threads:
        t.join(timeout=60)
    chaos_t.join(timeout=200)
    # Everything back up for the drain.
    for i in range(2):
        if cl.workers[i].poll() is not None:
            cl.start_worker(i)
    accepted = {k for k, (st, acc, _) in rec.jobs.items() if acc}
    S.log(f"chaos over; waiting for {len(accepted)} accepted jobs to have run")
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = read_runs(runlog)
        missing = [k for k in accepted if k not in runs]
        if not missing:
            break
        time.sleep(1)
    runs = read_runs(runlog)
    starts = read_runs(runlog, "start")
    interrupted = sum(len(v) for v in starts.values()) - sum(len(v) for v in runs.values())
    lost = sorted(k for k in accepted if k not in runs)
    alive = all(p.poll() is None for p in cl.servers) and all(w.poll() is None for w in cl.workers)
    logs = "".join(p.read_text(errors="replace") for p in args.out.glob("*.log") if p.name != "runs.log")
    panics = logs.count("panicked")

    def in_window(t0, t1):
        return any(t0 <= w["end"] and t1 >= w["down"] for w in windows)

    steady = [r for r in rec.rows if r[3] == "steady"]
    steady_bad_out = [r for r in steady if r[2] != 200 and not in_window(r[0], r[1])]
    steady_bad_in = [r for r in steady if r[2] != 200 and in_window(r[0], r[1])]
    jobs = [r for r in rec.rows if r[3] == "job"]
    jobs_bad_out = [r for r in jobs if r[2] != 200 and not in_window(r[0], r[1])]
    job_status = {}
    for r in jobs:
        job_status[str(r[2])] = job_status.get(str(r[2]), 0) + 1
    dup_jobs = {k: len(runs[k]) for k in accepted if len(runs.get(k, [])) > 1}
    wrong_bodies = sum(1 for r in rec.rows if r[2] == -2)
    # Steady entries: a refresh is due every 2 s (cache time); two runs of one entry less
    # than 1 s apart are a duplicate run of the same refresh.
    steady_runs = steady_dups = 0
    for k, ts in runs.items():
        if k.startswith("steady-"):
            ts = sorted(ts)
            steady_runs += len(ts)
            steady_dups += sum(1 for a, b in zip(ts, ts[1:]) if b - a < 1.0)
    recov = [w["recovered_after_s"] for w in windows]
    lat = [(r[1] - r[0]) * 1000 for r in steady if r[2] == 200]
    result = {
        "minutes": args.minutes, "seed": args.seed, "events": events,
        "redis_windows": [{k: (round(v - t_start, 2) if k in ("down", "up", "end") else v) for k, v in w.items()}
                          for w in windows],
        "steady": {"requests": len(steady), "non200_outside_windows": len(steady_bad_out),
                   "non200_inside_windows": len(steady_bad_in), "p99_ms": S.percentile(lat, 99)},
        "jobs": {"requests": len(jobs), "statuses": job_status, "non200_outside_windows": len(jobs_bad_out), "accepted": len(accepted), "lost": lost,
                 "duplicates": dup_jobs, "wrong_bodies": wrong_bodies},
        "runs_interrupted": interrupted, "steady_refresh_runs": steady_runs, "steady_duplicate_runs": steady_dups,
        "recovery_seconds": recov, "all_alive_at_end": alive, "panics_in_logs": panics,
        "samples": rec.samples,
    }
    lines = [
        f"duration: {args.minutes} min, seed {args.seed}; worker kills every {args.kill_every:g} s, Redis restarts "
        f"every {args.redis_every:g} s ({args.redis_down:g} s down)",
        "events: " + "; ".join(f"{t} s {e}" for t, e in events),
        f"steady clients: {len(steady)} requests, non-200 outside Redis-down windows {len(steady_bad_out)}, "
        f"inside {len(steady_bad_in)}, p99 {result['steady']['p99_ms']:.1f} ms",
        f"jobs (new path each): {len(jobs)} requests {job_status}, accepted {len(accepted)}, lost {len(lost)}, "
        f"completed more than once {len(dup_jobs)} (max {max(dup_jobs.values(), default=1)} runs)",
        f"jobs answered non-200 outside the Redis-down windows (503 after --wait while a killed worker's job "
        f"waits for recovery): {len(jobs_bad_out)}",
        f"generator runs started but never finished (killed with their worker): {interrupted}",
        f"steady refreshes: {steady_runs} runs, {steady_dups} duplicate runs (< 1 s after the previous run)",
        f"bodies that were another path's: {wrong_bodies}",
        f"time from Redis restart to the first new job answered 200: {recov} s",
        f"all processes alive at the end: {alive}; panics in logs: {panics}",
    ]
    if rec.samples:
        lines.append("samples: " + json.dumps(rec.samples[:8]))
    goals = [
        ("no crash, no panic", alive and panics == 0),
        ("0 non-200 of the steady clients outside the Redis-down windows", not steady_bad_out),
        ("0 jobs lost", not lost),
        ("0 bodies of another path", wrong_bodies == 0),
        ("recovered after every Redis restart", all(r is not None for r in recov)),
    ]
    code = S.finish(args.out, "httpsd scale-out soak", f"python3 bench/soak/scaleout.py --minutes {args.minutes:g}",
                    result, lines, goals)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
