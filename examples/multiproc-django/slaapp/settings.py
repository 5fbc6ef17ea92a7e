"""Settings of the example Django project (seed 002's SLA application), trimmed to what
the collector needs: the sidecar's worker reads the same database as the app."""
import os

SECRET_KEY = "example-only"
INSTALLED_APPS = ["slaapp.components"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SLAAPP_DB", "/var/lib/slaapp/db.sqlite3"),
    }
}
USE_TZ = True
