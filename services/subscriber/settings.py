from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SubscriberSettings:
    broker: str
    host: str
    port: int
    statedir: Path
    cache_size: int
