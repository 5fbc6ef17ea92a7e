"""System CPU and memory usage from /proc (seed 004's psutil exporter, rewritten).

Before: `start_http_server(9999)`, a `Gauge('system_usage', ..., ['resource_type'])`
set from `psutil.cpu_percent()` and `psutil.virtual_memory().percent` in a loop.
Here: no psutil (Linux's /proc has the same numbers), no loop and no port. This file
shows the second style httpsd accepts, seed 002's: a custom collector registered on
`prometheus_client.REGISTRY` at import, whose `collect()` runs on every scrape.

Besides the seed's percentages it exports the CPU time counter, which is what a
Prometheus query should use (`rate(system_cpu_seconds_total[5m])`): the CPU
percentage is measured since the previous run of this collector (the collector object
is kept with its module), so its window depends on how often it runs.
"""

import os

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# /proc/stat's first line: time spent in each mode by all CPUs, in clock ticks.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
IDLE_MODES = ("idle", "iowait")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds():
    """Seconds spent in each mode since boot, summed over CPUs."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    if fields[0] != "cpu":
        raise RuntimeError(f"unexpected first line of /proc/stat: {fields[:3]}")
    return {mode: int(v) / TICKS_PER_SECOND for mode, v in zip(CPU_MODES, fields[1:])}


def meminfo_bytes():
    """MemTotal and MemAvailable, in bytes."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, rest = line.split(":", 1)
            if key in ("MemTotal", "MemAvailable"):
                out[key] = int(rest.split()[0]) * 1024  # the file says kB, meaning KiB
    return out["MemTotal"], out["MemAvailable"]


class ProcCollector:
    """Reads /proc on each collection; remembers the previous CPU sample."""

    def __init__(self):
        self.previous = None

    def collect(self):
        cpu = cpu_seconds()
        total, available = meminfo_bytes()

        seconds = CounterMetricFamily("system_cpu_seconds", "CPU time spent in each mode, all CPUs", labels=["mode"])
        for mode, value in cpu.items():
            seconds.add_metric([mode], value)
        yield seconds

        memory = GaugeMetricFamily("system_memory_bytes", "Physical memory", labels=["state"])
        memory.add_metric(["total"], total)
        memory.add_metric(["available"], available)
        yield memory

        # CPU busy share since the previous collection (registering collects once, at import).
        before = self.previous or dict.fromkeys(cpu, 0.0)
        self.previous = cpu
        spent = {mode: cpu[mode] - before[mode] for mode in cpu}
        elapsed = sum(spent.values())
        busy = elapsed - sum(spent[m] for m in IDLE_MODES)
        usage = GaugeMetricFamily("system_usage", "Hold current system resource usage (percent)",
                                  labels=["resource_type"])
        usage.add_metric(["CPU"], 100.0 * busy / elapsed if elapsed > 0 else 0.0)
        usage.add_metric(["Memory"], 100.0 * (total - available) / total)
        yield usage


REGISTRY.register(ProcCollector())
