"""The subscriber's FastAPI dependencies: the parts of the running service (lifespan state,
see app.py) a route is given, and a checked root name. They are async: they do no I/O, and a
plain def would cost a thread hop per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from caterva.protocol.names import check_root
from caterva.subscriber.cache import Cache
from caterva.subscriber.events import Events
from caterva.subscriber.follower import Follower
from caterva.subscriber.pins import Pins
from caterva.subscriber.read import ReadPath


async def _follower(request: Request) -> Follower:
    return request.state.follower


async def _cache(request: Request) -> Cache:
    return request.state.cache


FollowerDep = Annotated[Follower, Depends(_follower)]


async def _read(request: Request) -> ReadPath:
    return request.state.read


async def _events(request: Request) -> Events:
    return request.state.events


async def _pins(request: Request) -> Pins:
    return request.state.pins


ReadDep = Annotated[ReadPath, Depends(_read)]
EventsDep = Annotated[Events, Depends(_events)]
CacheDep = Annotated[Cache, Depends(_cache)]
PinsDep = Annotated[Pins, Depends(_pins)]


async def _root(root: str) -> str:
    return check_root(root)


Root = Annotated[str, Depends(_root)]
