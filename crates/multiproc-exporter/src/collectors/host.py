# multiproc-exporter's collector host: the module its Python workers keep (python-pool's
# Import "kept" mode), one worker per collector file. collect(path) imports the collector
# once (its module state lives as long as the worker), then returns the OpenMetrics text
# of every collector registered on prometheus_client.REGISTRY plus the families of the
# module's own collect(), written by prometheus_client's own encoder, so that the Rust
# side reads what Python would serve. The worker's default collectors (process,
# platform, gc) describe the sidecar's worker, not the application: they are unregistered
# before the collector is imported.
import importlib.util
import os
import sys

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

for _default in (
    prometheus_client.PROCESS_COLLECTOR,
    prometheus_client.PLATFORM_COLLECTOR,
    prometheus_client.GC_COLLECTOR,
):
    try:
        REGISTRY.unregister(_default)
    except KeyError:
        pass

_modules = {}  # path -> module: imported once for the worker's life


def _import(path):
    module = _modules.get(path)
    if module is not None:
        return module
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: code that imports itself, pickles or
    # Django's app loading finds it.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _modules[path] = module
    return module


class _Families:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def collect(path):
    module = _import(path)
    families = list(REGISTRY.collect())
    own = getattr(module, "collect", None)
    if callable(own):
        families.extend(own())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode("utf-8")
