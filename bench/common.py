"""Shared helpers of the side-by-side benchmarks (stdlib only).

Each bench script installs what it compares against into a throw-away venv under
bench/out/venvs/, builds our binaries in release mode, starts every server on
loopback (port 0 or a free port), measures, prints a table, and optionally writes it
as Markdown. Every process started here is killed by its PID when the script ends.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
ORIGINAL_V3 = "prometheus-http-sd==3.0.6"
ORIGINAL_V1 = "prometheus-http-sd==1.3.16"

_started: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> "NoReturn":  # noqa: F821
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(2)


def not_landed(feature: str, what: str) -> None:
    """Says clearly that a comparison cannot run yet, and exits 3."""
    print(f"NOT MEASURED: not measured yet: feature not landed ({feature}): {what}", flush=True)
    sys.exit(3)


# ---------------------------------------------------------------- tools and builds


def require_tool(name: str, apt: str | None = None) -> str:
    path = shutil.which(name)
    if not path:
        fail(f"`{name}` is required: apt-get install -y {apt or name}")
    return path


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def build_release(examples: tuple[str, ...] = (), bins: tuple[str, ...] = ("httpsd",)) -> dict[str, Path]:
    """Builds our binaries (and examples) in release mode; returns their paths."""
    # Always the same set of targets: building the example enables dev-dependencies,
    # whose features change the library's build, and alternating sets rebuild it.
    examples = tuple(sorted(set(examples) | {"ceiling"}))
    cmd = ["cargo", "build", "--release", "-p", "httpsd"]
    for b in bins:
        cmd += ["--bin", b]
    for e in examples:
        cmd += ["--example", e]
    log("building: " + " ".join(cmd))
    subprocess.run(cmd, cwd=REPO, check=True)
    rel = target_dir() / "release"
    out = {b: rel / b for b in bins}
    out.update({e: rel / "examples" / e for e in examples})
    for name, p in out.items():
        if not p.exists():
            fail(f"build did not produce {p}")
    return out


def venv(name: str, requirement: str, extra: tuple[str, ...] = ()) -> Path:
    """A throw-away venv under bench/out/venvs/NAME with `requirement` installed."""
    d = OUT / "venvs" / name
    marker = d / ".installed"
    want = " ".join((requirement,) + extra)
    if marker.exists() and marker.read_text() == want:
        return d
    if d.exists():
        shutil.rmtree(d)
    log(f"creating venv {d} with {want}")
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
    subprocess.run([str(d / "bin" / "pip"), "install", "-q", requirement, *extra], check=True)
    marker.write_text(want)
    return d


def binary_feature(binary: Path, args: list[str], needle: str) -> bool:
    """True when `binary args` (a --help) mentions `needle`: how scripts detect
    whether a feature has landed."""
    try:
        r = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return needle in (r.stdout + r.stderr)


# ---------------------------------------------------------------- processes


def _cleanup() -> None:
    for p in _started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in _started:
        while p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def start(cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Starts `cmd` in its own process group (so its children die with it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    f = open(log_path, "wb")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=full_env, cwd=cwd, start_new_session=True)
    _started.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 30, headers: dict | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_status(port: int, path: str, want: int = 200, timeout: float = 60, proc: subprocess.Popen | None = None,
                headers: dict | None = None) -> bytes:
    """Polls until GET path answers `want`; returns the body."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            fail(f"process {proc.args[0]} exited with {proc.returncode} while waiting for {path}")
        try:
            st, body = http_get(port, path, timeout=10, headers=headers)
            if st == want:
                return body
            last = (st, body[:200])
        except OSError as e:
            last = e
        time.sleep(0.1)
    fail(f"127.0.0.1:{port}{path} did not answer {want} within {timeout}s (last: {last})")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def rss_kib(pid: int, tree: bool = True) -> int:
    """Resident memory (VmRSS) of `pid`, plus its descendants when `tree`."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
        if tree:
            stack += _children(p)
    return total


class RssSampler:
    """Samples the max RSS of a process tree every 100 ms in a thread."""

    def __init__(self, pid: int, tree: bool = True):
        self.pid, self.tree, self.max, self._stop = pid, tree, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max = max(self.max, rss_kib(self.pid, self.tree))
            self._stop.wait(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()


# ---------------------------------------------------------------- wrk


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, connections: int = 32, duration: int = 10, threads: int = 2, timeout: int = 10) -> dict:
    """Runs wrk with --latency; returns req/s, p50/p99 ms, requests, non-2xx, errors."""
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration}s",
           f"--timeout={timeout}s", "--latency", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = r.stdout
    if r.returncode != 0:
        fail(f"wrk failed: {r.stderr}\n{out}")
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
           "requests": int(re.search(r"(\d+) requests in", out).group(1)),
           "non2xx": 0, "errors": 0, "raw": out}
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[key] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    # Throughput of successful answers only: a fast 500 is not a served target list.
    res["ok_rps"] = res["rps"] * (res["requests"] - res["non2xx"]) / max(res["requests"], 1)
    return res


def latency_and_throughput(configs, runs: int, duration: int) -> dict:
    """Interleaved runs of wrk at 1 connection (latency) and 32 (throughput) for each
    (key, port, path) of `configs`; returns {key: {"lat": [...], "thr": [...]}}."""
    res = {key: {"lat": [], "thr": []} for key, _, _ in configs}
    for run in range(runs):
        for key, port, path in configs:
            lat = wrk(f"http://127.0.0.1:{port}{path}", connections=1, threads=1, duration=duration)
            thr = wrk(f"http://127.0.0.1:{port}{path}", connections=32, duration=duration)
            res[key]["lat"].append(lat)
            res[key]["thr"].append(thr)
            log(f"run {run + 1} {key}: c=1 p50 {lat['p50']:.3f} ms; c=32 {thr['rps']:.0f} req/s; "
                f"non-2xx {lat['non2xx'] + thr['non2xx']}, errors {lat['errors'] + thr['errors']}")
    return res


def run_median(res: dict, key: str, kind: str, field: str) -> float:
    """Median of `field` over the runs of `res[key][kind]` (see latency_and_throughput)."""
    return median([r[field] for r in res[key][kind]])


# ---------------------------------------------------------------- reporting


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def spread(xs) -> str:
    """min-max as a percentage of the median: the noise of a measurement."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return "n/a"
    m = statistics.median(xs)
    return f"±{(max(xs) - min(xs)) / 2 / m * 100:.0f}%" if m else "n/a"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} MiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average at start {load[0]:.2f}")


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


def goal(ok: bool) -> str:
    return "met" if ok else "**NOT MET**"


def report(title: str, body: str, markdown: str | None, command: str) -> None:
    """Prints the result and, with --markdown FILE, writes it as a Markdown section."""
    text = (f"### {title}\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"{machine()}.\n\nCommand: `{command}`\n\n{body}\n")
    print(text)
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(text)
        log(f"wrote {markdown}")


def fmt_ms(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:.2f} ms" if x < 100 else f"{x:.0f} ms"


def fmt_mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def write_json_tree(root: Path, rel: str, groups) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(groups))
