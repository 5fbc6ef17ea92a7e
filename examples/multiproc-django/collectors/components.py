"""Seed 002's ComponentCollector, run by multiproc-exporter beside a gunicorn app in
multiprocess mode:

    multiproc-exporter /run/slaapp/prom \
        --collector examples/multiproc-django/collectors \
        --python /srv/slaapp/venv/bin/python --collector-cache-seconds 10

The sidecar's worker imports this module once and keeps it, so there is no need for
seed 002's registration dance (post_migrate and connection_created hooks, a global
"registered once" flag in AppConfig.ready): the module registers at import, and the app
itself never runs a collector. django.setup() is guarded so that the module also works
when something already set Django up.
"""
import os
import sys

# The project root (where slaapp/ lives) on sys.path, and its settings.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaapp.settings")

import django  # noqa: E402
from django.apps import apps  # noqa: E402

if not apps.ready:
    django.setup()

from django.utils import timezone  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
from prometheus_client.core import (  # noqa: E402
    GaugeMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
)

from slaapp.components.models import Component  # noqa: E402

SERVICE_WINDOW_LAST_START_METRIC = 'service_window_last_start'
SERVICE_WINDOW_LAST_START_DOC = 'Last start time of the service window'
SERVICE_WINDOW_LAST_END_METRIC = 'service_window_last_end'
SERVICE_WINDOW_LAST_END_DOC = 'Last end time of the service window'
SERVICE_WINDOW_NEXT_START_METRIC = 'service_window_next_start'
SERVICE_WINDOW_NEXT_START_DOC = 'Next start time of the service window'
SERVICE_WINDOW_NEXT_END_METRIC = 'service_window_next_end'
SERVICE_WINDOW_NEXT_END_DOC = 'Next end time of the service window'
SERVICE_WINDOW_IN_WINDOW_METRIC = 'service_window_in_window'
SERVICE_WINDOW_IN_WINDOW_DOC = 'Is the service window active (1 for yes, 0 for no)'


class ComponentCollector(object):
    def collect(self):
        moment = timezone.now()
        components = Component.objects.all()
        metrics = {}

        for component in components:
            labels = component.get_labels()
            prefix = component.name.replace('-', '_') + "_"
            metrics[component.name] = {
                'last_start': GaugeMetricFamily(''.join((prefix, SERVICE_WINDOW_LAST_START_METRIC)),
                                                SERVICE_WINDOW_LAST_START_DOC, labels=labels.keys()),
                'last_end': GaugeMetricFamily(''.join((prefix, SERVICE_WINDOW_LAST_END_METRIC)),
                                              SERVICE_WINDOW_LAST_END_DOC, labels=labels.keys()),
                'next_start': GaugeMetricFamily(''.join((prefix, SERVICE_WINDOW_NEXT_START_METRIC)),
                                                SERVICE_WINDOW_NEXT_START_DOC, labels=labels.keys()),
                'next_end': GaugeMetricFamily(''.join((prefix, SERVICE_WINDOW_NEXT_END_METRIC)),
                                              SERVICE_WINDOW_NEXT_END_DOC, labels=labels.keys()),
                'in_window': GaugeMetricFamily(''.join((prefix, SERVICE_WINDOW_IN_WINDOW_METRIC)),
                                               SERVICE_WINDOW_IN_WINDOW_DOC, labels=labels.keys()),
            }
            m = metrics[component.name]
            m['last_start'].add_metric(labels=labels.values(),
                                       value=component.get_last_start_time(moment).timestamp())
            m['last_end'].add_metric(labels=labels.values(),
                                     value=component.get_next_end_time(moment).timestamp())
            m['next_start'].add_metric(labels=labels.values(),
                                       value=component.get_next_start_time(moment).timestamp())
            m['next_end'].add_metric(labels=labels.values(),
                                     value=component.get_next_end_time(moment).timestamp())
            m['in_window'].add_metric(labels=labels.values(),
                                      value=int(component.in_window(moment)))
        for comp in metrics.keys():
            for metric in metrics[comp].values():
                yield metric


# Once, at import: the worker keeps this module for its life.
REGISTRY.register(ComponentCollector())


def collect():
    """Info and Enum, which multiprocess mode cannot serve, from application state."""
    from django.conf import settings

    yield InfoMetricFamily(
        "slaapp_build", "Build of the SLA application",
        value={"version": getattr(settings, "VERSION", "dev"), "django": django.get_version()},
    )
    yield StateSetMetricFamily(
        "slaapp_maintenance", "Whether the application is in maintenance mode",
        value={"on": os.path.exists("/run/slaapp/maintenance"), "off": not os.path.exists("/run/slaapp/maintenance")},
    )
