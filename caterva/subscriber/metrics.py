"""The subscriber's /metrics: read from the counters the running parts keep (the cache's,
the read path's, freshness.py's, the directory's) when Prometheus scrapes; only the upstream
request latency is observed as it happens (two httpx hooks per request to a source).

Labels are the followed root, the source's pub_id and a broker's index (0: our own), never a
dataset path nor a broker URL (which may hold a password). Sources are named by what peers
announce, so at most MAX_SOURCES of them are shown by name; the rest add up as "other".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from caterva.mqtt import Bus
from caterva.service import metrics
from caterva.service.auth import require_every
from caterva.subscriber.cache import Cache
from caterva.subscriber.follower import Follower
from caterva.subscriber.freshness import Freshness
from caterva.subscriber.read import ReadPath

MAX_SOURCES = 50  # sources shown by name per root and metric
# from a loopback batch (ms) to a slow source across the world
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CACHE = (  # cache.stats key, metric, help (all counted in chunks)
    ("hits", "caterva_subscriber_cache_hits", "Chunks read from the cache"),
    ("misses", "caterva_subscriber_cache_misses", "Chunks not in the cache, fetched"),
    ("evicted", "caterva_subscriber_cache_evictions", "Chunks evicted to make room"),
    (
        "passed_through",
        "caterva_subscriber_cache_passthroughs",
        "Fetched chunks handed to their reader uncached (no room without evicting in use)",
    ),
)


def upstream_latency() -> Histogram:
    return Histogram(
        "caterva_subscriber_upstream_request_seconds",
        "Time from a request to a source until its answer's headers",
        registry=None,
        buckets=LATENCY_BUCKETS,
    )


def timing_hooks(histogram: Histogram) -> dict[str, list]:
    """httpx event hooks that time every request to a source into ``histogram``."""

    async def sent(request: httpx.Request) -> None:
        request.extensions["caterva_sent"] = time.perf_counter()

    async def answered(response: httpx.Response) -> None:
        sent_at = response.request.extensions.get("caterva_sent")
        if sent_at is not None:
            histogram.observe(time.perf_counter() - sent_at)

    return {"request": [sent], "response": [answered]}


def _by_source(counts: dict[tuple[str, str], int]) -> list[tuple[tuple[str, str], int]]:
    """(root, source) -> n, with only the MAX_SOURCES biggest sources of a root by name."""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    shown: Counter[str] = Counter()
    out: Counter[tuple[str, str]] = Counter()
    for (root, source), n in ranked:
        shown[root] += 1
        out[(root, source if shown[root] <= MAX_SOURCES else "other")] += n
    return sorted(out.items())


class SubscriberCollector(Collector):
    def __init__(
        self,
        cache: Cache,
        follower: Follower,
        read: ReadPath,
        freshness: Freshness,
        buses: Sequence[Bus],
    ) -> None:
        self.cache, self.follower, self.read = cache, follower, read
        self.freshness, self.buses = freshness, buses

    def collect(self) -> Iterator[Metric]:
        cache = self.cache
        for name, value, doc in (
            ("caterva_subscriber_cache_used_bytes", cache.used, "Bytes the chunk cache holds"),
            ("caterva_subscriber_cache_budget_bytes", cache.budget, "The cache's byte budget"),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        for key, name, doc in CACHE:
            yield CounterMetricFamily(name, doc, value=cache.stats[key])
        connected = GaugeMetricFamily(
            "caterva_subscriber_broker_connected",
            "1 while the link to a broker is up (0: our own, then as given)",
            labels=["broker"],
        )
        for i, bus in enumerate(self.buses):
            connected.add_metric([str(i)], int(bus.connected.is_set()))
        yield connected
        yield from self._sources()
        yield from self._roots()

    def _sources(self) -> Iterator[Metric]:
        read = self.read
        for name, doc, counts in (
            ("caterva_subscriber_fetched_chunks", "Chunks fetched from a source", read.fetched),
            (
                "caterva_subscriber_fetched_bytes",
                "Compressed bytes fetched from a source",
                read.fetched_bytes,
            ),
            (
                "caterva_subscriber_digest_failures",
                "Reads of a source that sent a chunk failing its digest",
                read.digest_failures,
            ),
        ):
            metric = CounterMetricFamily(name, doc, labels=["root", "source"])
            for labels, n in _by_source(counts):
                metric.add_metric(list(labels), n)
            yield metric

    def _roots(self) -> Iterator[Metric]:
        """Per followed root: its sources, its events, how fresh it is."""
        follower, fresh = self.follower, self.freshness
        directory = follower.directory
        now = fresh.clock()

        def gauge(name: str, doc: str, labels=("root",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["root"])

        datasets = gauge("caterva_subscriber_datasets", "Datasets of a followed root")
        online = gauge("caterva_subscriber_sources_online", "Sources of a root online now")
        hops = gauge("caterva_subscriber_source_hops", "Hops from the origin to the chosen source")
        chosen = gauge(
            "caterva_subscriber_source_chosen",
            "1 for the source a root is read from",
            ["root", "source"],
        )
        behind = gauge(
            "caterva_subscriber_out_of_sync",
            "1 while the chosen source announces another version than the one held",
        )
        age = gauge(
            "caterva_subscriber_last_event_age_seconds", "Seconds since a root's last change event"
        )
        lag = gauge(
            "caterva_subscriber_freshness_lag_seconds",
            "From the origin seeing a change to this subscriber holding it (the last one applied)",
        )
        events = counter("caterva_subscriber_change_events", "Change events heard")
        gaps = counter("caterva_subscriber_sequence_gaps", "Change events missed (seq gaps)")
        resyncs = counter("caterva_subscriber_resyncs", "Resyncs that moved a root on")
        for root, etag in sorted(follower.etags.items()):
            offers = directory.offers(root)
            best = directory.choose(root)
            datasets.add_metric([root], len(follower.datasets[root]))
            online.add_metric([root], sum(o.online for o in offers))
            if best is not None:
                hops.add_metric([root], len(best.announcement.hops))
                chosen.add_metric([root, best.pub_id], 1)
                behind.add_metric([root], int(best.announcement.manifest_etag != etag))
            if root in fresh.last_event:
                age.add_metric([root], max(0.0, now - fresh.last_event[root]))
            if root in fresh.lag:
                lag.add_metric([root], fresh.lag[root])
            events.add_metric([root], fresh.events[root])
            gaps.add_metric([root], fresh.gaps[root])
            resyncs.add_metric([root], fresh.resyncs[root])
        yield from (datasets, online, hops, chosen, behind, age, lag, events, gaps, resyncs)


def registry(collector: SubscriberCollector, latency: Histogram) -> CollectorRegistry:
    return metrics.registry("subscriber", [collector, latency])


router = APIRouter()


async def _registry(request: Request) -> CollectorRegistry:
    return request.state.metrics


@router.get(
    metrics.PATH,
    summary="Prometheus metrics",
    description="With --auth: for users granted every followed root (403 otherwise), or "
    "without auth on the --metrics address.",
    **metrics.DOC,
)
async def scrape(
    request: Request, registry: Annotated[CollectorRegistry, Depends(_registry)]
) -> Response:
    require_every(request, request.state.follower.etags)  # the counters sum every root
    return metrics.answer(registry)
