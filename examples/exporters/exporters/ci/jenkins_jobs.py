"""Jenkins job counts from Jenkins' JSON API (seed 003's Gauge exporter, rewritten).

Before, a script of its own: `start_http_server(9000)`, a module-level `Gauge` and a
`while True: get_metrics(); time.sleep(15)` loop, with no timeout on the API call.
Here httpsd calls `collect()` when a scrape needs it (at most once per `cache_time`
however many Prometheus servers scrape), under a deadline, and reports
`httpsd_exporter_up{exporter="ci/jenkins_jobs",file="ci/jenkins_jobs.py"} 0` when the
API cannot be read.

Where the API is: `JENKINS_URL` in httpsd's environment (e.g. `http://jenkins:8080`,
read as `$JENKINS_URL/api/json`). Without it, the stand-in document
`../_standin/jenkins.json` is read, so the example runs as is with no network;
`_standin/api.py` serves the same document over HTTP on loopback.
"""

import json
import os
import urllib.request
from collections import Counter

from prometheus_client.core import GaugeMetricFamily

STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "_standin", "jenkins.json")
# Well below httpsd's deadline, so a hung API is a clear error from here, not a kill.
TIMEOUT_SECONDS = 5.0


def api_url():
    base = os.environ.get("JENKINS_URL")
    if base:
        # `tree=` asks Jenkins for the two fields used, not every job's whole record.
        return base.rstrip("/") + "/api/json?tree=jobs[name,color]"
    return "file://" + os.path.normpath(STANDIN)


def collect(**params):
    """Yields the job count and the jobs per colour (blue, red, disabled, ...)."""
    with urllib.request.urlopen(api_url(), timeout=TIMEOUT_SECONDS) as resp:
        jobs = json.load(resp)["jobs"]
    count = GaugeMetricFamily("jenkins_jobs_count", "Number of Jenkins jobs")
    count.add_metric([], len(jobs))
    yield count
    by_color = GaugeMetricFamily("jenkins_jobs_by_color", "Jenkins jobs per status colour", labels=["color"])
    for color, n in sorted(Counter(job.get("color", "unknown") for job in jobs).items()):
        by_color.add_metric([color], n)
    yield by_color
