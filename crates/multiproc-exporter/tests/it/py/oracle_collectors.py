#!/usr/bin/env python3
"""What Python itself serves for monitoring.py in one process (its REGISTRY without the
default collectors, plus its collect()): `oracle_collectors.py FORMAT` (text|openmetrics)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "collectors"))
import prometheus_client  # noqa: E402
from prometheus_client import REGISTRY, CollectorRegistry  # noqa: E402

for c in (prometheus_client.PROCESS_COLLECTOR, prometheus_client.PLATFORM_COLLECTOR,
          prometheus_client.GC_COLLECTOR):
    REGISTRY.unregister(c)
import monitoring  # noqa: E402


class Own:
    def collect(self):
        return monitoring.collect()


REGISTRY.register(Own())
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.exposition import generate_latest
else:
    from prometheus_client import generate_latest
sys.stdout.write(generate_latest(REGISTRY).decode())
