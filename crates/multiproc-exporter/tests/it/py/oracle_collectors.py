#!/usr/bin/env python3
"""What Python itself serves for one collector file in one process (its REGISTRY without
the default collectors, plus the module's collect()):

    oracle_collectors.py FORMAT FILE      FORMAT: text | openmetrics
"""
import importlib.util
import os
import sys

import prometheus_client
from prometheus_client import REGISTRY

fmt, path = sys.argv[1], sys.argv[2]
for c in (prometheus_client.PROCESS_COLLECTOR, prometheus_client.PLATFORM_COLLECTOR,
          prometheus_client.GC_COLLECTOR):
    REGISTRY.unregister(c)
sys.path.append(os.path.dirname(path))
spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


class Own:
    def collect(self):
        return module.collect() if callable(getattr(module, "collect", None)) else []


REGISTRY.register(Own())
if fmt == "openmetrics":
    from prometheus_client.openmetrics.exposition import generate_latest
else:
    from prometheus_client import generate_latest
sys.stdout.write(generate_latest(REGISTRY).decode())
