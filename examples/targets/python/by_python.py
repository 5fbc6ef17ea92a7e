"""Targets from Python: `curl 'http://127.0.0.1:8080/targets/python?cluster=us1'`."""

from prometheus_http_sd.targets import TargetList

from _utils import inventory


def generate_targets(**params) -> TargetList:
    # Query parameters arrive as keyword arguments (first value of a repeated key).
    cluster = params.get("cluster")
    return [
        {
            "targets": ["%s:2379" % host for host in inventory.etcd_hosts(cluster)],
            "labels": {"app": "etcd", "cluster": cluster or "all"},
        }
    ]


def test_generate_targets() -> TargetList:
    # Used by `httpsd check` instead of generate_targets (with no parameters).
    return generate_targets(cluster="us1")
