"""What one publisher process needs to know, resolved once from flags, env and config.

``Settings.build`` validates user input (root name, directory) and raises caterva errors, so
``run()`` fails with a clear message before anything binds or starts.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from caterva import config
from caterva.errors import BadRequest, NotFound
from caterva.mqtt import BrokerURL
from caterva.protocol.names import check_root
from caterva.protocol.topics import check_pub_id
from caterva.publisher.plainfiles import CHUNKSIZE as FRAME_CHUNKSIZE


@dataclass(frozen=True)
class Settings:
    name: str  # the root name
    directory: Path  # resolved: every served file must resolve inside it
    statedir: Path  # this root's own state: <statedir>/<name>
    broker: str
    url: str  # the REST URL announced to subscribers
    scan_interval: float = config.DEFAULTS["scan_interval"]  # with poll: between full scans
    rescan_interval: float = config.DEFAULTS["rescan_interval"]  # watching: the safety net
    poll: bool = False  # no filesystem events (NFS): scan every scan_interval
    open_files: int = config.DEFAULTS["open_files"]  # containers kept open (openfiles.py)
    frame_chunksize: int = FRAME_CHUNKSIZE
    pub_id: str | None = None  # None: the one the state store generated once

    @classmethod
    def build(
        cls,
        *,
        name: str,
        directory: str | os.PathLike,
        url: str,
        broker: str | None = None,
        statedir: str | os.PathLike | None = None,
        scan_interval: float | None = None,
        rescan_interval: float | None = None,
        poll: bool | None = None,
        open_files: int | None = None,
        frame_chunksize: int = FRAME_CHUNKSIZE,
        pub_id: str | None = None,
    ) -> Settings:
        check_root(name)
        path = Path(directory).expanduser()
        if not path.exists():
            raise NotFound(f"directory {os.fspath(directory)!r} does not exist")
        if not path.is_dir():
            raise BadRequest(f"{os.fspath(directory)!r} is not a directory")
        interval = float(config.setting("scan_interval", scan_interval))
        rescan = float(config.setting("rescan_interval", rescan_interval))
        for what, value in (("scan_interval", interval), ("rescan_interval", rescan)):
            if not value > 0:
                raise BadRequest(f"{what} must be positive, not {value}")
        opened = int(config.setting("open_files", open_files))
        if opened < 1:
            raise BadRequest(f"open_files must be at least 1, not {opened}")
        broker_url = config.setting("broker", broker)
        # a malformed URL is a usage error now, not a retry loop later
        username = BrokerURL.checked(broker_url).username
        pub_id = config.setting("pub_id", pub_id) or None
        if username and pub_id and pub_id != username:  # the broker's ACL is per username
            raise BadRequest(
                f"--pub-id {pub_id!r} differs from the MQTT username {username!r}: "
                "with broker auth a publisher may write only under its username"
            )
        pub_id = check_pub_id(pub_id or username) if (pub_id or username) else None
        # one subdirectory per root: two publishers sharing a statedir keep separate identities
        state = config.statedir(statedir, "publisher") / name
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(
            name=name,
            directory=path.resolve(),
            statedir=state,
            broker=broker_url,
            url=url,
            scan_interval=interval,
            rescan_interval=rescan,
            poll=bool(config.setting("poll", poll)),
            open_files=opened,
            frame_chunksize=frame_chunksize,
            pub_id=pub_id,
        )


def advertised_url(sock: socket.socket, scheme: str = "http") -> str:
    """The URL subscribers should use; a wildcard bind is announced under the host's name."""
    from caterva.service.runner import url_of

    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        return f"{scheme}://{socket.getfqdn()}:{port}"
    return url_of(sock, scheme)
