"""Helpers shared by the Python generators of this tree.

Files and directories whose name starts with `_` are never served, but the
generator root is on `sys.path`, so generators can `from _utils import inventory`.
"""

# In real life this would query a CMDB, a cloud API or DNS.
_HOSTS = {
    "us1": ["10.1.1.22", "10.1.1.23"],
    "eu1": ["10.2.1.22"],
}


def etcd_hosts(cluster):
    """The etcd hosts of `cluster` (all clusters when it is None)."""
    if cluster is None:
        return [h for hosts in _HOSTS.values() for h in hosts]
    if cluster not in _HOSTS:
        # Raise rather than return []: an error keeps Prometheus's previous targets.
        raise LookupError("unknown cluster %r" % cluster)
    return _HOSTS[cluster]
