"""``GET /v1/status``: the subscriber at a glance, what ``caterva status`` shows: its broker
links, each followed root (chosen source, hops, sources online, last event, freshness lag,
in sync or not), and the cache against its budget with its hit rate. The same figures as
/metrics (metrics.py), as one JSON object a person's tool can read."""

from __future__ import annotations

from fastapi import APIRouter, Request

from caterva.protocol import rest
from caterva.service.auth import require_every

router = APIRouter(prefix=rest.API)


def cache_status(cache) -> dict:
    stats = cache.stats
    hits, misses = stats["hits"], stats["misses"]
    return {
        "used": cache.used,
        "budget": cache.budget,
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "evicted": stats["evicted"],
        "passed_through": stats["passed_through"],
        "fetched_bytes": stats["fetched_bytes"],
    }


def root_status(root: str, follower, freshness, now: float) -> dict:
    directory = follower.directory
    best = directory.choose(root)
    offers = directory.offers(root)
    last = freshness.last_event.get(root)
    return {
        "root": root,
        "datasets": len(follower.datasets[root]),
        "source": best.url if best else None,
        "source_id": best.pub_id if best else None,
        "hops": len(best.announcement.hops) if best else None,
        "sources_online": sum(o.online for o in offers),
        "sources": len(offers),
        # the chosen source announces the version held (None: no source to compare with)
        "in_sync": best.announcement.manifest_etag == follower.etags[root] if best else None,
        "last_event_age": max(0.0, now - last) if last is not None else None,
        "lag": freshness.lag.get(root),
        "events": freshness.events[root],
        "gaps": freshness.gaps[root],
        "resyncs": freshness.resyncs[root],
        "problem": follower.problems.get(root),
    }


@router.get(
    "/status",
    summary="Health, broker links, followed roots' freshness, cache use",
    description="With --auth: for users granted every followed root (403 otherwise).",
)
async def status(request: Request) -> dict:
    state = request.state
    follower, freshness = state.follower, state.freshness
    require_every(request, follower.etags)  # it sums every followed root
    now = freshness.clock()
    mirror = state.mirror
    return {
        "status": "ok",
        "brokers": [
            {"url": str(bus.url), "connected": bus.connected.is_set()} for bus in state.buses
        ],
        "mirror": {"pub_id": mirror.pub_id, "url": mirror.url} if mirror else None,
        "cache": cache_status(state.cache),
        "roots": [root_status(root, follower, freshness, now) for root in sorted(follower.etags)],
    }
