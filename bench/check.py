#!/usr/bin/env python3
"""(c) `check` on a 2,000-generator tree, side by side with hyperfine.

The tree: 40 directories of 50 generators, a third each JSON, YAML and trivial Python,
all valid (so the original, which stops at the first exception, runs them all).
Compared: `httpsd check --python VENV/bin/python TREE` (release build, its runner cache
in bench/out/check/cache; a last row runs without one) and
`prometheus-http-sd check TREE` (3.0.6, throw-away venv VENV). Both run the generators
with the same interpreter: the original imports them into its own process, httpsd
into its Python workers started from VENV/bin/python. A third row shows httpsd with
its default `--python python3` (whatever that is on PATH; a pyenv shim, say, costs a
shell script per interpreter start). Both must exit 0 on this tree.

Usage: python3 bench/check.py [--rounds 5] [--runs 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import common as c

PY = '''
def generate_targets(**params):
    return [{{"targets": ["10.1.{d}.{f}:9100"], "labels": {{"src": "py"}}}}]
'''


def make_tree(root):
    shutil.rmtree(root, ignore_errors=True)
    for d in range(40):
        for f in range(50):
            rel = root / f"d{d:02}" / f"g{f:02}"
            rel.parent.mkdir(parents=True, exist_ok=True)
            kind = (d * 50 + f) % 3
            if kind == 0:
                c.write_json_tree(root, f"d{d:02}/g{f:02}.json",
                                  [{"targets": [f"10.0.{d}.{f}:9100", f"10.0.{d}.{f}:9101"], "labels": {"src": "json"}}])
            elif kind == 1:
                rel.with_suffix(".yaml").write_text(
                    f"- targets: ['10.2.{d}.{f}:9100']\n  labels:\n    src: yaml\n")
            else:
                rel.with_suffix(".py").write_text(PY.format(d=d, f=f))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="hyperfine rounds over all commands")
    ap.add_argument("--runs", type=int, default=3, help="runs of each command per round")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    c.require_tool("hyperfine")
    bins = c.build_release()
    v3 = c.venv("v3", c.ORIGINAL_V3)
    work = c.OUT / "check"
    tree = make_tree(work / "tree")
    ours = f"{bins['httpsd']} check --python {v3 / 'bin' / 'python'} {tree}"
    ours_path = f"{bins['httpsd']} check {tree}"
    orig = f"{v3 / 'bin' / 'prometheus-http-sd'} check {tree}"
    r = subprocess.run(ours.split(), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        if "not implemented" in r.stderr:
            c.not_landed("check, issue 5 / branch check", "httpsd check on a 2,000-generator tree")
        c.fail(f"httpsd check failed on a valid tree (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    r = subprocess.run(orig.split(), capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        c.fail(f"the original's check failed on the tree (exit {r.returncode}):\n{(r.stdout + r.stderr)[-2000:]}")
    python3 = shutil.which("python3") or "python3"
    # httpsd keeps its workers' compiled runner in $XDG_CACHE_HOME/httpsd: the bench
    # gives it its own (warm after the first run, like any second run on a machine);
    # the last row has none (a cache directory that cannot exist), as on a fresh CI
    # machine. The original ignores the variable.
    env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
    cold = f"env XDG_CACHE_HOME=/dev/null {ours}"
    commands = [("httpsd check", ours), ("prometheus-http-sd 3.0.6 check", orig),
                ("httpsd check, --python python3 on PATH", ours_path),
                ("httpsd check, no runner cache (fresh machine)", cold)]
    # Rounds of hyperfine over all commands, so that a noisy spell of the machine
    # falls on every command alike rather than on whichever ran then.
    times: dict[str, list[float]] = {name: [] for name, _ in commands}
    for r in range(a.rounds):
        out = work / f"hyperfine-{r}.json"
        cmd = ["hyperfine", "-N", "--warmup", "1", "--runs", str(a.runs), "--export-json", str(out)]
        for name, command in commands:
            cmd += ["-n", name, command]
        subprocess.run(cmd, check=True, env=env)
        for x in json.loads(out.read_text())["results"]:
            times[x["command"]].extend(x["times"])
    res = {name: {"median": statistics.median(t), "mean": statistics.fmean(t),
                  "stddev": statistics.stdev(t) if len(t) > 1 else 0.0, "min": min(t)}
           for name, t in times.items()}
    o = res["prometheus-http-sd 3.0.6 check"]["median"]
    rows = [[name, f"{x['median'] * 1000:,.0f} ms", f"{x['mean'] * 1000:,.0f} ± {x['stddev'] * 1000:,.0f} ms",
             f"{x['min'] * 1000:,.0f} ms", f"{o / x['median']:,.1f}x"] for name, x in res.items()]
    ratio = o / res["httpsd check"]["median"]
    text = c.table(["command", "median", "mean ± σ", "min", "speed-up vs original"], rows)
    text += "\n\nGoal (issue 5):\n\n" + c.table(["goal", "measured", "status"],
                                                [["≥ 10x faster than the original's check", f"{ratio:,.1f}x",
                                                  c.goal(ratio >= 10)]])
    text += (f"\n\n{a.rounds} rounds of `hyperfine -N --warmup 1 --runs {a.runs}` over the four commands "
             f"(medians of all {a.rounds * a.runs} runs of each) on a tree of 2,000 generators "
             "(667 JSON, 667 YAML, 666 Python) in 40 directories; all exit 0. `httpsd check` runs the "
             "generators with the original's interpreter (`--python` of its venv, like for like); the "
             f"third row uses the default `python3` on PATH ({python3}); the last one runs without "
             "httpsd's cache directory, so each worker start compiles the runner (a fresh machine's "
             "first run; `env` adds its own exec).")
    c.report("check on 2,000 generators", text, a.markdown, "python3 bench/check.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
