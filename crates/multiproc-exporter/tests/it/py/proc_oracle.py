#!/usr/bin/env python3
"""Python's own ProcessCollector for each pid given: prints `name{pid="P"} value` lines,
the oracle of --process-metrics."""
import sys

from prometheus_client import ProcessCollector

for pid in sys.argv[1:]:
    for fam in ProcessCollector(pid=lambda p=pid: p, registry=None).collect():
        for s in fam.samples:
            print('%s{pid="%s"} %r' % (s.name, pid, s.value))
