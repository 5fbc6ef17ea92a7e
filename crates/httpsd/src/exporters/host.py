# httpsd's exporter host: runs one `.py` exporter in a Python worker and returns its
# metrics as OpenMetrics text (which keeps exemplars, units and `_created`), for httpsd
# to parse, validate and re-encode. Provided to the workers as the module
# `_httpsd_exporter` (see exporters/python.rs); the pool calls `host(path, load, params)`.
#
# An exporter either defines `collect(**params)` yielding metric families, or registers
# collectors on prometheus_client.REGISTRY at import (Counter(...), REGISTRY.register(
# MyCollector())). Registrations made while the module is imported go to a registry of
# its own, so two exporters (or an edited module imported again) never collide on the
# process-wide REGISTRY, and a module's collectors are exactly its own.

from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.registry import REGISTRY, CollectorRegistry

_modules = {}  # path -> (module, its registry)


class _Families:
    def __init__(self, families):
        self._families = families

    def collect(self):
        return self._families


def _import(load):
    own = CollectorRegistry(auto_describe=True)
    REGISTRY.register = own.register
    REGISTRY.unregister = own.unregister
    try:
        return load(), own
    finally:
        del REGISTRY.register
        del REGISTRY.unregister


def host(path, load, params):
    module, own = _import(load)
    known = _modules.get(path)
    if known is not None and known[0] is module:
        own = known[1]  # kept module: its registry from the import
    else:
        _modules[path] = (module, own)
    collect = getattr(module, "collect", None)
    if callable(collect):
        source = _Families(list(collect(**params)))
    elif own._collector_to_names:
        source = own
    else:
        raise ValueError(
            "the exporter defines no collect(**params) function and registers no "
            "collector on prometheus_client.REGISTRY at import"
        )
    return generate_latest(source).decode("utf-8")
