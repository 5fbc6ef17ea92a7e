"""A health endpoint's status as an Enum and its latency as a Histogram (seed 003's
HITL exporter, rewritten).

Before: `start_http_server(9000)`, an `Enum` and a `Histogram` at module level, and a
`while True` loop probing `HITL_URL` every second with no timeout (it also never set
the state back to "healthy"). Here httpsd imports this module once and keeps it, so
the Enum and the Histogram live across scrapes exactly as in the long-running script:
each run of `collect()` probes once, observes the latency and sets the state, and every
scrape sees the same accumulated Histogram (one module's state is never split over
several Python workers). Probes happen when a scrape needs a run, i.e. at most once per
`cache_time`, instead of on a timer.

The metrics are created with `registry=None` and yielded by `collect()`; a failed probe
is a result (state "unhealthy"), not an error, so the exporter stays up.

Where the endpoint is: `HITL_URL` in httpsd's environment. Without it the stand-in
document `../_standin/health.json` is read (a readable file counts as healthy), so the
example runs as is; `_standin/api.py` serves `/health` over HTTP and can be told to fail.
"""

import os
import time
import urllib.error
import urllib.request

from prometheus_client import Enum, Histogram

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "_standin", "health.json")
TIMEOUT_SECONDS = 5.0

# Module-level, as in the seed: created at import, kept as long as httpsd keeps the module.
STATUS = Enum("hitl_psql_health_status", "PSQL connection health", states=["healthy", "unhealthy"], registry=None)
REQUEST_TIME = Histogram("hitl_psql_health_request_time", "PSQL connection response time (seconds)", registry=None)


def probe_url():
    return os.environ.get("HITL_URL") or "file://" + os.path.normpath(STANDIN)


def probe(url):
    """True when the endpoint answers 200 within the timeout (a file: when readable)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as resp:
            resp.read()
            # file:// responses carry no status; reading them succeeded.
            return resp.status in (None, 200)
    except (urllib.error.URLError, OSError):
        # HTTPError (a 500) is a URLError: the endpoint answered, and it is unhealthy.
        return False


def collect(**params):
    """Probes the endpoint once, then yields the Enum and the Histogram."""
    start = time.perf_counter()
    healthy = probe(probe_url())
    REQUEST_TIME.observe(time.perf_counter() - start)
    STATUS.state("healthy" if healthy else "unhealthy")
    yield from STATUS.collect()
    yield from REQUEST_TIME.collect()
