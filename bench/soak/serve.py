#!/usr/bin/env python3
"""Soak and chaos run of `httpsd serve` (issue 20, part 4).

One command: `python3 bench/soak/serve.py --minutes 10`. Starts the release `httpsd serve`
on 127.0.0.1 over a generated tree and, for `--minutes`:

- wrk (32 connections, keep-alive) polls every path whose generators are valid; its Lua
  script counts statuses per path (bench/soak/count.lua);
- a checker client validates every body against the set of valid versions (fresh
  connection every 10th request, so new clients are tested too);
- a writer per churned static file rewrites it every 100 ms (half by rename, half in
  place with open-truncate-write, one write in 7 stalling 300 ms after the truncation and
  one in 7 after half of the content), pausing 400 ms every fifth write so that new
  content is picked up (the report gives the age of what was served);
- a client polls the broken generators (crash, hang, garbage, `os._exit`, in Python and as
  executables): they must answer an error, never take the server down;
- a well-behaved client opens a new connection every 0.5 s (it must get a 200 despite
  the slowloris);
- a killer SIGKILLs a random Python worker (child of httpsd) every 1 to 4 s;
- a slowloris client holds `--slowloris` connections (default 1,100: more than the default
  connection limit of 1,000), each sending one header line every 5 s, reopened when closed.

Reports requests, non-200 on valid paths (goal 0), bodies that differ from every valid
version (goal 0), RSS and open descriptors of httpsd at start and end (growth < 10 %), p99.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import selectors
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import soaklib as S

HERE = Path(__file__).resolve().parent
CHURN_JSON = 8
CHURN_YAML = 2
PY_PARAMS = [f"v{i}" for i in range(8)]


def encode(groups) -> bytes:
    """httpsd's byte format: sorted keys, compact, ASCII."""
    return json.dumps(groups, sort_keys=True, separators=(",", ":")).encode()


def churn_groups(name: str, version: int):
    return [{"targets": [f"10.0.{version % 250}.{i}:9100" for i in range(1, 4)],
             "labels": {"soak": f"ok/churn/{name}", "version": str(version)}}]


def py_groups(x: str):
    return [{"targets": ["10.9.0.1:9100"], "labels": {"soak": "ok/py/good", "x": x}}]


def exec_groups(x: str):
    return [{"targets": ["10.9.1.1:9100"], "labels": {"soak": "ok/exec/good", "x": x}}]


STABLE = [{"targets": ["10.9.2.1:9100", "10.9.2.2:9100"], "labels": {"soak": "ok/stable"}}]

GOOD_PY = '''
def generate_targets(**params):
    x = params.get("x", "none")
    return [{"targets": ["10.9.0.1:9100"], "labels": {"soak": "ok/py/good", "x": x}}]
'''
GOOD_EXEC = '''#!/bin/sh
printf '[{"labels":{"soak":"ok/exec/good","x":"%s"},"targets":["10.9.1.1:9100"]}]\\n' "${HTTPSD_PARAM_X:-none}"
'''
BAD_PY = {
    "crash": "def generate_targets(**params):\n    raise RuntimeError('soak: crash')\n",
    "hang": "import time\ndef generate_targets(**params):\n    time.sleep(100000)\n",
    "garbage": "def generate_targets(**params):\n    return [{'targets': 5, 'labels': {'soak': 1}}]\n",
    "exit": "import os\ndef generate_targets(**params):\n    os._exit(3)\n",
}
BAD_EXEC = {
    "crash": "#!/bin/sh\necho boom >&2\nexit 1\n",
    "hang": "#!/bin/sh\nexec sleep 100000\n",
    "garbage": "#!/bin/sh\necho 'this is not json'\n",
    "exit": "#!/bin/sh\nprintf '[{\"targets\": [\"10.0.0.1:1\"'\nkill -9 $$\n",
}


def write_tree(root: Path) -> list[str]:
    """Writes the tree; returns the churned file names."""
    names = []
    for i in range(CHURN_JSON):
        names.append(f"j{i}")
    for i in range(CHURN_YAML):
        names.append(f"y{i}")
    for n in names:
        d = root / "ok" / "churn" / n
        d.mkdir(parents=True)
        write_churn_file(d / ("t.yaml" if n.startswith("y") else "t.json"), n, 0, rename=True)
    (root / "ok" / "stable").mkdir(parents=True)
    (root / "ok" / "stable" / "t.json").write_text(json.dumps(STABLE))
    (root / "ok" / "py" / "good").mkdir(parents=True)
    (root / "ok" / "py" / "good" / "gen.py").write_text(GOOD_PY)
    (root / "ok" / "exec" / "good").mkdir(parents=True)
    g = root / "ok" / "exec" / "good" / "gen"
    g.write_text(GOOD_EXEC)
    g.chmod(0o755)
    for kind, src in BAD_PY.items():
        d = root / "bad" / "py" / kind
        d.mkdir(parents=True)
        (d / "gen.py").write_text(src)
    for kind, src in BAD_EXEC.items():
        d = root / "bad" / "exec" / kind
        d.mkdir(parents=True)
        (d / "gen").write_text(src)
        (d / "gen").chmod(0o755)
    return names


def churn_bytes(path: Path, name: str, version: int) -> bytes:
    groups = churn_groups(name, version)
    if path.suffix == ".yaml":
        # Flow style under a comment: only a YAML parser reads it, and a truncated copy
        # is never a valid shorter document.
        return f"# version {version}\n{json.dumps(groups)}\n".encode()
    return (json.dumps(groups, indent=1) + "\n").encode()


def write_churn_file(path: Path, name: str, version: int, rename: bool) -> None:
    data = churn_bytes(path, name, version)
    if rename:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return
    # In place, as `echo ... > file` and many config tools do: truncate, then write. On a
    # loaded machine a writer stalls: one write in 7 stalls 300 ms after the truncation,
    # another 300 ms after half of the content (longer than the server's settle time).
    with open(path, "wb") as f:
        half = len(data) // 2
        if version % 7 == 3:
            f.flush()
            time.sleep(0.3)
        elif version % 7 == 5:
            f.write(data[:half])
            f.flush()
            time.sleep(0.3)
            f.write(data[half:])
            return
        f.write(data)


class Churn:
    """Rewrites every churned file every 100 ms; remembers the newest version of each."""

    def __init__(self, root: Path, names: list[str]):
        self.files = {}
        for i, n in enumerate(names):
            p = root / "ok" / "churn" / n / ("t.yaml" if n.startswith("y") else "t.json")
            self.files[n] = (p, i % 2 == 0)  # even: rename, odd: in place
        self.version = {n: 0 for n in names}
        self.written = {n: {0: time.time()} for n in names}  # version -> when its write started
        self.writes = 0

    def run(self, stop: S.Stopper) -> None:
        """One writer thread per file (a stalled writer must not hold the others)."""
        threads = [S.thread(self._one, n, stop) for n in self.files]
        for t in threads:
            t.join()

    def _one(self, n: str, stop: S.Stopper) -> None:
        p, rename = self.files[n]
        while stop.running():
            v = self.version[n] + 1
            # Published before the write starts: a reader may see it as soon as the
            # first byte lands.
            self.written[n][v] = time.time()
            self.version[n] = v
            write_churn_file(p, n, v, rename)
            self.writes += 1
            # One pause of 400 ms in 5: the file settles and the new content is picked up.
            stop.sleep(0.4 if v % 5 == 0 else 0.1)


class Checker:
    """Validates bodies of valid paths against the versions that were written."""

    def __init__(self, port: int, churn: Churn):
        self.port = port
        self.churn = churn
        self.requests = 0
        self.non200 = {}
        self.wrong = 0
        self.samples = []
        self.lat = []
        self.errors = 0
        self.lag = []  # seconds since a newer version of the served churned file was written

    def paths(self):
        out = [("/targets/ok/stable", lambda b: b == encode(STABLE))]
        for n in self.churn.files:
            out.append((f"/targets/ok/churn/{n}", self._churn_check(n)))
        for x in PY_PARAMS:
            out.append((f"/targets/ok/py/good?x={x}", lambda b, x=x: b == encode(py_groups(x))))
            out.append((f"/targets/ok/exec/good?x={x}", lambda b, x=x: b == encode(exec_groups(x))))
        return out

    def _churn_check(self, name):
        def check(body: bytes) -> bool:
            newest = self.churn.version[name]
            try:
                v = int(json.loads(body)[0]["labels"]["version"])
            except (ValueError, KeyError, IndexError, TypeError):
                return False
            if not (0 <= v <= newest and body == encode(churn_groups(name, v))):
                return False
            nxt = self.churn.written[name].get(v + 1)
            self.lag.append(time.time() - nxt if nxt is not None else 0.0)
            return True
        return check

    def note(self, what: str) -> None:
        if len(self.samples) < 10:
            self.samples.append(what[:300])

    def run(self, stop: S.Stopper) -> None:
        paths = self.paths()
        conn = None
        n = 0
        while stop.running():
            path, check = paths[n % len(paths)]
            n += 1
            if conn is None or n % 10 == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            t0 = time.time()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
            except OSError as e:
                self.errors += 1
                self.note(f"{path}: {e!r}")
                conn.close()
                conn = None
                stop.sleep(0.05)
                continue
            self.lat.append((time.time() - t0) * 1000)
            self.requests += 1
            if r.status != 200:
                self.non200[str(r.status)] = self.non200.get(str(r.status), 0) + 1
                self.note(f"{path}: {r.status} {body[:200]!r}")
            elif not check(body.rstrip(b"\n")):
                self.wrong += 1
                self.note(f"{path}: wrong body {body[:200]!r}")
        if conn is not None:
            conn.close()


def poll_bad(port: int, stop: S.Stopper, out: dict) -> None:
    """Polls the broken generators: each must answer an error (5xx), promptly enough."""
    paths = [f"/targets/bad/{lang}/{k}" for lang in ("py", "exec") for k in BAD_PY]
    n = 0
    while stop.running():
        p = paths[n % len(paths)]
        n += 1
        try:
            st, _ = S.common.http_get(port, p, timeout=60)
            key = f"{p} {st}"
        except OSError as e:
            key = f"{p} {type(e).__name__}"
        out[key] = out.get(key, 0) + 1
        stop.sleep(0.2)


def new_clients(port: int, stop: S.Stopper, out: dict) -> None:
    """A well-behaved client on a new connection every 0.5 s: it must get in despite the
    slowloris (time to a complete 200, connection included)."""
    out.update(requests=0, failed=0, lat_ms=[], samples=[])
    while stop.sleep(0.5):
        t0 = time.time()
        try:
            st, _ = S.common.http_get(port, "/targets/ok/stable", timeout=10)
        except OSError as e:
            st = repr(e)
        out["requests"] += 1
        if st == 200:
            out["lat_ms"].append((time.time() - t0) * 1000)
        else:
            out["failed"] += 1
            if len(out["samples"]) < 5:
                out["samples"].append(f"new client: {st}")


def kill_workers(pid: int, stop: S.Stopper, out: dict) -> None:
    """SIGKILLs a random Python worker of httpsd every 1 to 4 s."""
    while stop.sleep(random.uniform(1, 4)):
        workers = [c for c in S.children(pid) if any("<httpsd-runner>" in a for a in S.cmdline(c))]
        if not workers:
            out["none_found"] = out.get("none_found", 0) + 1
            continue
        try:
            os.kill(random.choice(workers), signal.SIGKILL)
            out["killed"] = out.get("killed", 0) + 1
        except ProcessLookupError:
            pass


def slowloris(port: int, count: int, stop: S.Stopper, out: dict) -> None:
    """Holds `count` connections that never finish their headers (one line every 5 s)."""
    sel = selectors.DefaultSelector()
    socks: dict[socket.socket, float] = {}
    out.update(opened=0, closed_by_server=0, max_open=0)

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", port))
            socks[s] = 0.0
            sel.register(s, selectors.EVENT_READ)
            out["opened"] += 1
        except OSError:
            s.close()

    def drop(s):
        sel.unregister(s)
        socks.pop(s, None)
        s.close()

    while stop.running():
        # Reopen what the server closed, at most 200 a round (a bounded loop).
        for _ in range(min(200, count - len(socks))):
            open_one()
        out["max_open"] = max(out["max_open"], len(socks))
        now = time.time()
        for s, last in list(socks.items()):
            if now - last >= 5:
                line = b"GET /targets/ok/stable HTTP/1.1\r\nHost: x\r\n" if last == 0 else b"X-Soak: 1\r\n"
                try:
                    s.send(line)
                    socks[s] = now
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    out["closed_by_server"] += 1
                    drop(s)
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                out["closed_by_server"] += 1
                drop(s)
    for s in list(socks):
        drop(s)


def main() -> int:
    def extra(ap):
        ap.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
        ap.add_argument("--slowloris", type=int, default=1100, help="slowloris connections (default 1100)")
        ap.add_argument("--httpsd-arg", action="append", default=[],
                        help="extra httpsd serve argument (repeatable), e.g. --httpsd-arg=--header-timeout=5")
    args = S.parse_args("serve", __doc__.split("\n\n")[0], extra)
    httpsd = S.release_binary("httpsd")
    S.common.require_tool("wrk")
    root = args.out / "tree"
    names = write_tree(root)
    port = S.common.free_port()
    cmd = [str(httpsd), "serve", str(root), "-h", "127.0.0.1", "-p", str(port),
           "--max-run-time", "3", "--cache-opt", "cache_time=2", "--cache-opt", "timeout=10",
           "--cache-refresh-interval", "1", "--log-level", "30"] + args.httpsd_arg
    S.log("starting: " + " ".join(cmd))
    proc = S.common.start(cmd, args.out / "httpsd.log")
    churn = Churn(root, names)
    checker = Checker(port, churn)
    good = [p for p, _ in checker.paths()]
    for p in good:
        S.common.wait_status(port, p, 200, timeout=60, proc=proc)
    S.log("all valid paths answer 200; chaos starts")

    seconds = args.minutes * 60
    stop = S.Stopper(seconds + 5)
    bad, kills, loris, fresh = {}, {}, {}, {}
    threads = [S.thread(churn.run, stop), S.thread(checker.run, stop), S.thread(poll_bad, port, stop, bad),
               S.thread(kill_workers, proc.pid, stop, kills),
               S.thread(slowloris, port, args.slowloris, stop, loris), S.thread(new_clients, port, stop, fresh)]
    timeline = []
    wrk_out = args.out / "wrk.json"
    wrk = subprocess.Popen(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{int(seconds)}s",
                            "--timeout", "10s", "-s", str(HERE / "count.lua"), f"http://127.0.0.1:{port}", "--"]
                           + good, stdout=open(args.out / "wrk.txt", "wb"), stderr=subprocess.STDOUT,
                           env=dict(os.environ, SOAK_WRK_OUT=str(wrk_out)), start_new_session=True)
    S.common._started.append(wrk)
    t0 = time.time()
    time.sleep(min(10, seconds / 6))
    # Sampled every 2 s. Descriptors and RSS move with in-flight runs (pipes of Python
    # workers and executables, reconnecting clients): start and end are the medians of the
    # first and the last tenth of the samples (at least 3 each), not single samples.
    while wrk.poll() is None and proc.poll() is None and time.time() - t0 < seconds - 2:
        st = S.proc_stats(proc.pid)
        st["t"] = round(time.time() - t0, 1)
        timeline.append(st)
        time.sleep(2)
    k = max(3, len(timeline) // 10)

    def med(rows, key):
        return int(statistics.median(r[key] for r in rows)) if rows else 0
    start_stats = {key: med(timeline[:k], key) for key in ("rss_kib", "fds", "threads")}
    end_stats = {key: med(timeline[-k:], key) for key in ("rss_kib", "fds", "threads")}
    S.log(f"start: {start_stats}, end: {end_stats}")
    try:
        wrk.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        S.common.stop(wrk)
    stop.stop()
    for t in threads:
        t.join(timeout=30)
    crashed = proc.poll() is not None
    alive_after = not crashed
    S.common.stop(proc)
    log_text = (args.out / "httpsd.log").read_text(errors="replace")
    panics = log_text.count("panicked")

    w = json.loads(wrk_out.read_text()) if wrk_out.exists() else {"requests": 0, "errors": {}, "non200": {},
                                                                  "ok": {}, "badbody": 0, "samples": [],
                                                                  "latency_ms": {}}
    # count.lua writes every table as an object: its list of samples too.
    if isinstance(w["samples"], dict):
        w["samples"] = list(w["samples"].values())
    wrk_non200 = sum(w["non200"].values())
    wrk_sock = sum(w["errors"].get(k, 0) for k in ("connect", "read", "write", "timeout"))
    chk_non200 = sum(checker.non200.values())
    growth = {k: (end_stats[k] - start_stats[k]) / start_stats[k] * 100 if start_stats[k] else 0.0
              for k in ("rss_kib", "fds")}
    result = {
        "minutes": args.minutes, "seed": args.seed, "slowloris": args.slowloris, "connections": args.connections,
        "httpsd_cmd": cmd, "wrk": w, "checker": {
            "requests": checker.requests, "non200": checker.non200, "wrong_bodies": checker.wrong,
            "socket_errors": checker.errors, "samples": checker.samples,
            "p50_ms": S.percentile(checker.lat, 50), "p99_ms": S.percentile(checker.lat, 99),
            "churn_lag_s": {"p50": S.percentile(checker.lag, 50), "p99": S.percentile(checker.lag, 99),
                            "max": max(checker.lag, default=0.0)}},
        "new_clients": {"requests": fresh.get("requests", 0), "failed": fresh.get("failed", 0),
                        "p99_ms": S.percentile(fresh.get("lat_ms", []), 99),
                        "max_ms": max(fresh.get("lat_ms", []), default=0.0), "samples": fresh.get("samples", [])},
        "bad_paths": bad, "worker_kills": kills, "slowloris_stats": loris, "churn_writes": churn.writes,
        "httpsd_start": start_stats, "httpsd_end": end_stats, "growth_percent": growth, "timeline": timeline,
        "httpsd_alive_at_end": alive_after, "panics_in_log": panics,
    }
    lat = w.get("latency_ms", {})
    lines = [
        f"duration: {args.minutes} min, seed {args.seed}; wrk {args.connections} connections; "
        f"slowloris {args.slowloris} (max open {loris.get('max_open')}, closed by server "
        f"{loris.get('closed_by_server')})",
        f"wrk: {w['requests']} requests, non-200 {wrk_non200} {w['non200']}, socket errors {w['errors']}, "
        f"200 without a valid shape {w['badbody']}",
        f"wrk latency: p50 {lat.get('p50', 0):.2f} ms, p99 {lat.get('p99', 0):.2f} ms, "
        f"p99.9 {lat.get('p999', 0):.2f} ms, max {lat.get('max', 0):.1f} ms",
        f"checker: {checker.requests} requests, non-200 {chk_non200} {checker.non200}, wrong bodies "
        f"{checker.wrong}, socket errors {checker.errors}, p99 {result['checker']['p99_ms']:.2f} ms",
        f"new clients (a new connection every 0.5 s): {fresh.get('requests', 0)} requests, "
        f"{fresh.get('failed', 0)} failed or timed out (10 s), p99 {result['new_clients']['p99_ms']:.1f} ms, "
        f"max {result['new_clients']['max_ms']:.1f} ms",
        f"churn: {churn.writes} file rewrites; age of the served version (time since a newer one was written): "
        f"p50 {S.percentile(checker.lag, 50):.2f} s, p99 {S.percentile(checker.lag, 99):.2f} s, "
        f"max {max(checker.lag, default=0.0):.2f} s",
        f"Python workers SIGKILLed: {kills.get('killed', 0)}",
        f"broken generators polled: {sum(bad.values())} requests, answers: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(bad.items())),
        f"httpsd (medians of the first and last {k} samples, every 2 s) start: RSS {start_stats['rss_kib']} KiB, "
        f"fds {start_stats['fds']}; end: RSS "
        f"{end_stats['rss_kib']} KiB, fds {end_stats['fds']} (growth RSS {growth['rss_kib']:+.1f} %, "
        f"fds {growth['fds']:+.1f} %)",
        f"httpsd alive at the end: {alive_after}; panics in its log: {panics}",
    ]
    if w["samples"] or checker.samples:
        lines.append("samples: " + json.dumps(w["samples"][:5] + checker.samples[:5]))
    goals = [
        ("httpsd alive, no panic", alive_after and panics == 0),
        ("0 non-200 (and 0 socket errors) on valid paths",
         wrk_non200 + chk_non200 + wrk_sock + checker.errors + fresh.get("failed", 0) == 0),
        ("0 bodies that differ from a valid version", checker.wrong + w["badbody"] == 0),
        ("RSS and fds growth < 10 %", growth["rss_kib"] < 10 and growth["fds"] < 10),
        ("broken generators answered errors only", all(" 200" not in k for k in bad)),
    ]
    return S.finish(args.out, "httpsd serve soak", f"python3 bench/soak/serve.py --minutes {args.minutes:g}",
                    result, lines, goals)


if __name__ == "__main__":
    raise SystemExit(main())
