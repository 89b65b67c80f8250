"""The publisher's routes beside the source API (caterva.service.source_api, served from the
catalog by source.py): its counters and its health, and the dependency that counts each
request by the route it reached.

Dependencies are ``async def``: they do no I/O, and a plain one would cost a thread hop each.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from caterva.protocol import rest
from caterva.publisher.catalog import Catalog
from caterva.publisher.stats import Stats

router = APIRouter(prefix=rest.API)


async def _catalog(request: Request) -> Catalog:
    return request.state.catalog


async def _stats(request: Request) -> Stats:
    return request.state.stats


async def count(request: Request) -> None:
    """Count a request to a source route by its route's name (manifest, chunk, ...); both
    batches count as "chunks"."""
    name = request.scope["route"].name
    request.state.stats.endpoint("chunks" if name == "many_chunks" else name)


CatalogDep = Annotated[Catalog, Depends(_catalog)]
StatsDep = Annotated[Stats, Depends(_stats)]


@router.get("/stats", summary="Serving counters", description="See caterva.publisher.stats.")
def counters(request: Request, stats: StatsDep) -> dict[str, Any]:
    stats.endpoint("stats")
    return {"root": request.state.settings.name, **stats.snapshot()}


@router.get("/health", summary="Liveness and broker connection")
def health(request: Request, catalog: CatalogDep, stats: StatsDep) -> JSONResponse:
    stats.endpoint("health")
    announcer = request.state.announcer
    return JSONResponse(
        {
            "status": "ok",
            "root": request.state.settings.name,
            "pub_id": announcer.pub_id,
            "session": announcer.session,
            "key": announcer.key,
            "broker_connected": announcer.bus.connected.is_set(),
            "datasets": len(catalog.manifest.datasets),
        }
    )
