"""Prometheus export of a manager's counters (``pip install 'websession[metrics]'``).

::

    from prometheus_client import start_http_server
    from websession.metrics import register_prometheus

    register_prometheus(manager)            # into prometheus_client's default registry
    start_http_server(9100)

The collector reads :meth:`Manager.stats` when Prometheus scrapes, so exporting costs the
requests nothing beyond the counting the engine always does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import MissingDependencyError

if TYPE_CHECKING:
    from ._manager import Manager

__all__ = ["SessionCollector", "register_prometheus"]

#: Counter name (after ``websession_``) and help text, per key of ``Manager.stats()``.
_COUNTERS = {
    "loads": ("session_loads", "Sessions read from the store"),
    "saves": ("session_saves", "Changed sessions written (compare-and-set updates that won)"),
    "refreshes": ("session_refreshes", "Idle deadlines moved without rewriting the data"),
    "conflicts": ("session_conflicts", "Compare-and-set updates that lost a race"),
    "retries": ("session_retries", "Saves re-applied and tried again after a conflict"),
    "unavailable": ("store_unavailable", "Store calls that failed: store unreachable"),
    "created": ("sessions_created", "New sessions stored"),
    "regenerated": ("sessions_regenerated", "Sessions moved to a new ID"),
    "destroyed": ("sessions_destroyed", "Sessions deleted on purpose"),
    "expired": ("sessions_expired", "Expired sessions removed by GC"),
}


#: A provider's own counters and gauges (``Manager.stats()`` has them when it keeps them).
_PROVIDER_COUNTERS = {
    "cache_hits": "Session reads served by the client-side cache",
    "cache_misses": "Session reads the client-side cache sent to the store",
    "cache_invalidations": "Invalidations the client-side cache received",
    "cache_evictions": "Entries the client-side cache dropped",
    "cache_resets": "Times the client-side cache was flushed (tracking lost or re-established)",
}
_PROVIDER_GAUGES = {
    "cache_entries": "Records in the client-side cache",
    "cache_bytes": "Bytes held by the client-side cache",
}


def _prometheus() -> Any:
    try:
        from prometheus_client import core
    except ImportError as exc:
        raise MissingDependencyError("metrics", "metrics", "prometheus_client",
                                     kind="exporter") from exc
    return core


class SessionCollector:
    """A Prometheus collector over one manager's counters, labelled by ``manager``."""

    def __init__(self, manager: Manager, name: str = "default") -> None:
        self.manager = manager
        self.name = name

    def collect(self) -> Iterator[Any]:
        """The counters as Prometheus metric families (called on each scrape)."""
        core = _prometheus()
        stats = self.manager.stats()
        for key, (metric, text) in _COUNTERS.items():
            family = core.CounterMetricFamily(f"websession_{metric}", text, labels=["manager"])
            family.add_metric([self.name], stats[key])
            yield family
        for key, text in _PROVIDER_COUNTERS.items():
            if key in stats:
                family = core.CounterMetricFamily(f"websession_{key}", text, labels=["manager"])
                family.add_metric([self.name], stats[key])
                yield family
        for key, text in _PROVIDER_GAUGES.items():
            if key in stats:
                gauge = core.GaugeMetricFamily(f"websession_{key}", text, labels=["manager"])
                gauge.add_metric([self.name], stats[key])
                yield gauge
        for kind, count in (("load", "loads"), ("write", "writes")):
            latency = core.SummaryMetricFamily(
                f"websession_store_{kind}_seconds",
                f"Time spent in store {kind}s (a session's read; a release's writes)",
                labels=["manager"])
            latency.add_metric([self.name], stats[count], stats[f"{kind}_seconds"])
            yield latency


def register_prometheus(manager: Manager, registry: Any = None,
                        name: str = "default") -> SessionCollector:
    """Export ``manager``'s counters through ``registry`` (default: prometheus_client's
    global one); ``name`` labels them when a process runs several managers."""
    core = _prometheus()
    collector = SessionCollector(manager, name)
    (core.REGISTRY if registry is None else registry).register(collector)
    return collector
