"""Service logs: one handler and one format for every record, ours and our libraries'.

    text (default)  2026-02-12T11:50:05.123Z INFO caterva.broker: listening on ...
    json            {"time": "2026-02-12T11:50:05.123Z", "level": "info", "logger": ...,
                     "message": ..., "exc": "Traceback ..." (only with one)}

One record is one line (a traceback, in text, follows on its own lines), never wrapped or
padded, times in UTC. uvicorn's loggers propagate here (caterva/service/runner.py passes no log
config of its own); its access log is off unless asked for.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
ACCESS = "uvicorn.access"
# chatty at INFO about their own workings: a service's operator wants ours
QUIET = ("amqtt", "transitions", "httpx", "httpcore", "uvicorn.error", "numexpr")


class _Text(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class _Json(_Text):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "text", access_log: bool = False) -> None:
    """Configure logging for a service process (``caterva bro|pub|sub``)."""
    from caterva.errors import BadRequest

    if level.lower() not in LEVELS:
        raise BadRequest(f"unknown log level {level!r}: use {', '.join(LEVELS)}")
    if fmt.lower() not in FORMATS:
        raise BadRequest(f"unknown log format {fmt!r}: use {' or '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    text = _Text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(_Json() if fmt.lower() == "json" else text)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn writes access records only when this logger has a handler (see access_enabled)
    access = logging.getLogger(ACCESS)
    access.setLevel(logging.INFO)
    access.propagate = access_log


def access_enabled() -> bool:
    return logging.getLogger(ACCESS).propagate


def size(n: int) -> str:
    """Bytes for a log message: ``512 B``, ``3.7 KiB``, ``10.0 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"
