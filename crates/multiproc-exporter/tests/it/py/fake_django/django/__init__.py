"""A stand-in for the parts of Django that examples/multiproc-django uses, so that the
tests run the example's collector unchanged without Django installed: settings from
DJANGO_SETTINGS_MODULE, apps.ready/setup(), timezone.now() fixed, and models whose
`objects.all()` are the rows of the SLAAPP_ROWS environment variable (JSON)."""
VERSION = (0, 0, 0, "fake", 0)


def get_version():
    return "0.0-fake"


def setup():
    from django.apps import apps
    from django.conf import settings

    settings._load()
    apps.ready = True
