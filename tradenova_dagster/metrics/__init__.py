"""Metrics: the MetricsTracker, daily reports and charts.

``MetricsTracker`` is loaded on first access (PEP 562), so that importing the store —
which every part of the system does — does not also import the tracker's analytics,
and nothing here imports matplotlib (only ``report`` and ``charts`` do).
"""

__all__ = ["MetricsTracker"]


def __getattr__(name: str):
    if name == "MetricsTracker":
        from tradenova_dagster.metrics.tracker import MetricsTracker

        return MetricsTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
