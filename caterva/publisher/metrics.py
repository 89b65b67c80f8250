"""The publisher's /metrics: read from its counters (stats.py, the announcer, the catalog)
when Prometheus scrapes, plus the one histogram that is observed as it happens (scans).
Every series is labelled with the root; none with a dataset path (README: Operations)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from caterva.publisher.announce import Announcer
from caterva.publisher.catalog import Catalog
from caterva.publisher.stats import Stats
from caterva.service import metrics

# a watched root's look at a few paths takes ms; a full scan of 100,000 datasets, seconds
SCAN_BUCKETS = (0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0, 60.0, 300.0)


class PublisherCollector(Collector):
    def __init__(self, catalog: Catalog, stats: Stats, announcer: Announcer) -> None:
        self.catalog, self.stats, self.announcer = catalog, stats, announcer
        self._bytes: tuple[str, int] = ("", 0)  # (manifest etag, bytes): summed once a version

    def _dataset_bytes(self) -> int:
        manifest = self.catalog.manifest
        if self._bytes[0] != manifest.etag:
            self._bytes = (manifest.etag, sum(info.size for info in manifest.datasets))
        return self._bytes[1]

    def collect(self) -> Iterator[Metric]:
        root = [self.catalog.name]

        def family(kind, name: str, doc: str, labels=(), values=((), 0)) -> Metric:
            metric = kind(name, doc, labels=["root", *labels])
            for extra, value in values:
                metric.add_metric([*root, *extra], value)
            return metric

        yield family(
            GaugeMetricFamily,
            "caterva_publisher_datasets",
            "Datasets published",
            values=[((), len(self.catalog.manifest.datasets))],
        )
        yield family(
            GaugeMetricFamily,
            "caterva_publisher_dataset_bytes",
            "Bytes of the published files",
            values=[((), self._dataset_bytes())],
        )
        classes, errors, routes = self.stats.for_metrics()
        yield family(
            CounterMetricFamily,
            "caterva_publisher_http_requests",
            "HTTP requests answered, by status class",
            ["code"],
            [((f"{c}xx",), n) for c, n in sorted(classes.items())],
        )
        yield family(
            CounterMetricFamily,
            "caterva_publisher_http_errors",
            "HTTP requests answered with a status of 400 or more",
            values=[((), errors)],
        )
        yield family(
            CounterMetricFamily,
            "caterva_publisher_served_chunks",
            "Chunks served, by route (chunk: one; chunks: batches)",
            ["route"],
            [((route,), n[0]) for route, n in routes.items()],
        )
        yield family(
            CounterMetricFamily,
            "caterva_publisher_served_bytes",
            "Compressed bytes of the chunks served, by route",
            ["route"],
            [((route,), n[1]) for route, n in routes.items()],
        )
        announcer = self.announcer
        yield family(
            CounterMetricFamily,
            "caterva_publisher_change_events",
            "Change events sent (acknowledged by the broker)",
            values=[((), announcer.sent)],
        )
        yield family(
            GaugeMetricFamily,
            "caterva_publisher_change_events_pending",
            "Change events waiting for the broker",
            values=[((), announcer.pending)],
        )
        last = announcer.last_change
        yield family(  # no sample before the first change
            GaugeMetricFamily,
            "caterva_publisher_last_change_timestamp_seconds",
            "When a scan last found a change (Unix time)",
            values=[((), last)] if last is not None else [],
        )
        yield family(
            GaugeMetricFamily,
            "caterva_publisher_broker_connected",
            "1 while the MQTT broker is connected",
            values=[((), int(announcer.bus.connected.is_set()))],
        )


def scans() -> Histogram:
    """How long each look at the directory takes: full (every file) or paths (the ones
    filesystem events named)."""
    return Histogram(
        "caterva_publisher_scan_seconds",
        "Duration of a look at the published directory",
        ["root", "kind"],
        registry=None,
        buckets=SCAN_BUCKETS,
    )


def registry(catalog: Catalog, stats: Stats, announcer: Announcer, scans: Histogram):
    return metrics.registry("publisher", [PublisherCollector(catalog, stats, announcer), scans])


router = APIRouter()


async def _registry(request: Request) -> CollectorRegistry:
    return request.state.metrics


@router.get(metrics.PATH, summary="Prometheus metrics", **metrics.DOC)
async def scrape(registry: Annotated[CollectorRegistry, Depends(_registry)]) -> Response:
    return metrics.answer(registry)
