"""Seed 002's Component model, reduced to the fields and methods the collector uses."""
from datetime import timedelta

from django.db import models


class Component(models.Model):
    name = models.CharField(max_length=100, unique=True)
    team = models.CharField(max_length=100)
    window_start_hour = models.PositiveSmallIntegerField(default=0)
    window_hours = models.PositiveSmallIntegerField(default=2)

    class Meta:
        app_label = "components"

    def get_labels(self):
        return {"component": self.name, "team": self.team}

    def _start(self, moment, days):
        day = moment.replace(hour=self.window_start_hour, minute=0, second=0, microsecond=0)
        return day + timedelta(days=days)

    def get_last_start_time(self, moment):
        start = self._start(moment, 0)
        return start if start <= moment else start - timedelta(days=1)

    def get_next_start_time(self, moment):
        return self.get_last_start_time(moment) + timedelta(days=1)

    def get_next_end_time(self, moment):
        end = self.get_last_start_time(moment) + timedelta(hours=self.window_hours)
        return end if end > moment else end + timedelta(days=1)

    def in_window(self, moment):
        last = self.get_last_start_time(moment)
        return last <= moment < last + timedelta(hours=self.window_hours)
