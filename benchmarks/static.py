"""The baseline: a plain static file server, ``python -m benchmarks.static DIR``.

Starlette's FileResponse under uvicorn with the same HTTP stack the caterva services use, so the
ratio measures what caterva adds on top of serving a file. It binds a free loopback port and
prints its ready line like the caterva services do (caterva/child.py).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from caterva.child import ready_line


def app_for(directory: Path) -> Starlette:
    root = directory.resolve()

    async def serve(request):
        target = (root / request.path_params["path"]).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return Response(status_code=404)
        return FileResponse(target)

    return Starlette(routes=[Route("/{path:path}", serve)])


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # Nagle off
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(ready_line("static", f"http://127.0.0.1:{sock.getsockname()[1]}"), flush=True)
    config = uvicorn.Config(app_for(Path(sys.argv[1])), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
