#!/usr/bin/env python3
"""Print what the real prometheus_client 0.26 collector serves for a directory.

    oracle.py DIR text|openmetrics|sorted-text

`sorted-text` merges the files in sorted name order (what multiproc-exporter does), so
the output can be compared byte for byte; the others use MultiProcessCollector as is
(directory order).
"""
import glob
import os
import sys

d, mode = sys.argv[1], sys.argv[2]
os.environ.pop('PROMETHEUS_MULTIPROC_DIR', None)
os.environ.pop('prometheus_multiproc_dir', None)
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.openmetrics import exposition as om  # noqa: E402

reg = CollectorRegistry()
if mode == 'sorted-text':
    class Sorted:
        def collect(self):
            return MultiProcessCollector.merge(sorted(glob.glob(os.path.join(d, '*.db'))))
    reg.register(Sorted())
    out = generate_latest(reg)
else:
    MultiProcessCollector(reg, path=d)
    out = om.generate_latest(reg) if mode == 'openmetrics' else generate_latest(reg)
sys.stdout.buffer.write(out)
