"""A download from a subscriber on this machine: it writes the file into ours (the subscriber's
side, and why this is safe, is caterva.subscriber.handoff).

``POST .../handoff/{path}`` answered a ticket, the file's size and ETag and the subscriber's
socket; this opens the target's part file, sends the ticket and its descriptor, follows the
progress messages and checks the end: the size written, and the frame header's own counts
(frame size, uncompressed bytes) against what the dataset's info says.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

from caterva import atomic
from caterva.client.placement import Placement
from caterva.client.transfer import Meter
from caterva.errors import DatasetChanged, ProtocolError, from_payload
from caterva.protocol.metadata import DatasetInfo

_SOCKET = re.compile(r"caterva-[0-9a-f]{16}")
_TICKET = re.compile(r"[0-9a-f]{32}")
MAX_MESSAGE = 64 << 10
WAIT = 120.0  # seconds between two messages: the subscriber may fetch an evicted chunk


def receive(answer: Any, info: DatasetInfo, target: Path, meter: Meter) -> Path | None:
    """The dataset's file written by the subscriber into ``target``; None when its socket is
    not reachable from here (another network namespace: a container), for /file to do it."""
    ticket, name, size = _checked(answer, info)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect("\0" + name)
        except OSError:
            return None
        sock.settimeout(WAIT)
        placed = Placement.of(target)
        fd = os.open(placed.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            atomic.allocate(fd, size)
            socket.send_fds(sock, [json.dumps({"ticket": ticket}).encode()], [fd])
            _follow(sock, info, size, meter)
            _check_file(fd, info, size)
        except BaseException:
            os.close(fd)
            placed.part.unlink(missing_ok=True)
            raise
        os.close(fd)
    placed.land()
    return placed.final


def _checked(answer: Any, info: DatasetInfo) -> tuple[str, str, int]:
    try:
        ticket, name, size, etag = (answer[k] for k in ("ticket", "socket", "size", "etag"))
    except (KeyError, TypeError):
        raise ProtocolError("the subscriber's handoff answer lacks a field") from None
    if etag != info.etag:
        raise DatasetChanged(f"{info.path} changed since its info was read: run it again")
    valid = isinstance(ticket, str) and _TICKET.fullmatch(ticket)
    valid = valid and isinstance(name, str) and _SOCKET.fullmatch(name)
    if not valid or type(size) is not int or size < 0:
        raise ProtocolError("the subscriber's handoff answer is malformed")
    return ticket, name, size


def _follow(sock: socket.socket, info: DatasetInfo, size: int, meter: Meter) -> None:
    """Progress messages until the last one: the size written, or the error."""
    shown = 0
    while True:
        try:
            message = sock.recv(MAX_MESSAGE)
        except TimeoutError:
            raise ProtocolError("the subscriber stopped writing the file") from None
        if not message:
            raise ProtocolError("the subscriber closed the handoff before the end")
        try:
            reply = json.loads(message)
        except ValueError:
            raise ProtocolError("the subscriber sent a malformed handoff message") from None
        if not isinstance(reply, dict):
            raise ProtocolError("the subscriber sent a malformed handoff message")
        if "error" in reply:
            status = reply.get("status")
            raise from_payload(reply, status if type(status) is int else 500)
        written = reply.get("written", reply.get("size"))
        if type(written) is not int or not 0 <= written <= size:
            raise ProtocolError("the subscriber sent a malformed handoff message")
        part = info.nbytes * written // size if size else 0
        meter.advance(part - shown)
        shown = part
        if "size" in reply:
            if written != size:
                raise ProtocolError(f"{info.path}: the subscriber wrote {written} of {size} bytes")
            return
        meter.check()


def _check_file(fd: int, info: DatasetInfo, size: int) -> None:
    """The file is as long as promised, and its frame header says what the info says."""
    head = os.pread(fd, 64, 0)
    if os.fstat(fd).st_size != size or len(head) < 64 or head[2:10] != b"b2frame\0":
        raise ProtocolError(f"the subscriber wrote {info.path} short or in an unknown frame")
    (frame_size,) = struct.unpack_from(">Q", head, 16)
    (nbytes,) = struct.unpack_from(">q", head, 30)
    if (frame_size, nbytes) != (size, info.nbytes):
        raise ProtocolError(f"the subscriber wrote {info.path} with wrong sizes")
