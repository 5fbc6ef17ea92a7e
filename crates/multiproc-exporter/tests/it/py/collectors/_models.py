"""A stand-in for seed 002's Django `Component` model: the same methods, fixed data."""
from datetime import datetime, timedelta, timezone

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Component:
    def __init__(self, name, labels, hour):
        self.name = name
        self.labels = labels
        self.hour = hour

    def get_labels(self):
        return dict(self.labels)

    def get_last_start_time(self, moment):
        return EPOCH + timedelta(hours=self.hour)

    def get_next_start_time(self, moment):
        return EPOCH + timedelta(days=1, hours=self.hour)

    def get_next_end_time(self, moment):
        return EPOCH + timedelta(days=1, hours=self.hour + 2)

    def in_window(self, moment):
        return self.hour == 0


class _Manager:
    def all(self):
        return [
            Component("billing-db", {"team": "payments", "tier": "1"}, 0),
            Component("search", {"team": "discovery", "tier": "2"}, 3),
        ]


Component.objects = _Manager()
