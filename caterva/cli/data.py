"""Commands that read data: show (values of a selection) and download (whole files).

``show`` imports numpy (through the client) when it runs; nothing here imports it at module
import, so registering these commands costs the catalog commands nothing.
"""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from caterva.cli import render
from caterva.cli.options import (
    CaFile,
    Json,
    Sub,
    connect,
    display,
    emit,
    err,
    on_terminal,
    plain,
    width,
)
from caterva.cli.render import literal
from caterva.errors import (
    BadRequest,
    BadSelection,
    CatervaError,
    NotSupported,
    TargetExists,
    UnknownDataset,
)
from caterva.protocol import printing, rest

if TYPE_CHECKING:
    from caterva.client.calls import Printed

PREVIEW = 4096  # bytes of a plain file or frame `show` prints when no selection is given


def split_selection(target: str) -> tuple[str, str | None]:
    """'root/path[0:10, ::2]' -> ('root/path', '0:10, ::2'); no brackets -> (target, None).

    The selection is the last balanced [...] group ('a[[1, 2]]' -> 'a', '[1, 2]', which
    selection.parse refuses clearly), so a path that itself ends in [...] is written with an
    explicit selection: 'root/a[1][...]'.
    """
    target = target.strip()
    if not target.endswith("]"):
        return target, None
    depth = 0
    for at in range(len(target) - 1, -1, -1):
        depth += {"]": 1, "[": -1}.get(target[at], 0)
        if depth == 0:
            return target[:at], target[at + 1 : -1]
    return target, None  # unbalanced: a path of its own, or a mistake `show` reports


def _unclosed(target: str) -> bool:
    """Does ``target`` end in a '[' never closed (``a.b2nd[0:4``)? Asked only when no dataset
    has that name: a path may hold brackets ("[draft] notes.txt")."""
    return target.rfind("[") > target.rfind("]")


def show(
    target: Annotated[
        str,
        typer.Argument(
            metavar="ROOT/PATH[SEL]",
            help="A dataset and a numpy-style selection, e.g. 'example/a.b2nd[0:5, ::-40]'.",
        ),
    ],
    field: Annotated[
        Optional[str],
        typer.Option("--field", metavar="NAME", help="One field of a structured dtype."),
    ] = None,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Print the values of a selection (plain files: text, or a hex dump).

    \b
    Examples:
      caterva show 'example/images/terrain.b2nd[0:4, ::100]'
      caterva show example/README.txt --json
    """
    from caterva.cli import values  # rich's renderables: only for show
    from caterva.protocol import selection

    address, sel = split_selection(target)
    if sel is not None and not sel.strip():
        raise BadSelection(
            f"empty selection in {literal(target)}: give one, e.g. [0:10], or [...] for all of it"
        )
    # a bad selection fails here; brackets kept, so parse sees a[[1, 2]] as the list it is
    key = selection.parse(f"[{sel}]") if sel is not None else None
    with connect(sub, ca_file) as client:
        try:
            ds = client.dataset(address)
        except UnknownDataset:
            if sel is None and _unclosed(address):
                raise BadSelection(
                    f"unclosed '[' in {literal(target)}: write "
                    "ROOT/PATH[SELECTION], e.g. 'example/a.b2nd[0:4]'"
                ) from None
            raise
        if field is not None:
            ds = ds[field]
        as_bytes = ds.kind != "b2nd"  # frames and plain files read as their bytes
        if key is None:
            if as_bytes:
                key = (slice(0, PREVIEW),)
            elif ds.nbytes > rest.NPY_MAX:  # the most a subscriber decodes at once
                raise BadRequest(
                    f"{literal(address)} holds {render.size_text(ds.nbytes)}: "
                    f"give a selection, e.g. '{literal(address)}[0:10]'"
                )
            else:
                key = (Ellipsis,)
        if as_bytes or as_json:
            value = ds[key]
        else:
            printed = _printed(ds, key, width())
    shown = selection.format(key)
    if as_bytes:
        _show_bytes(ds, sel is None, shown, _offset(key, ds.shape), value, as_json)
    elif as_json:
        import numpy as np

        emit(
            {
                "address": ds.address,
                "selection": shown,
                "field": field,
                "dtype": values.numpy_dtype_json(np.asarray(value).dtype),
                "shape": list(np.shape(value)),
                "data": values.json_value(value),
            }
        )
    else:
        title = values.array_title(ds.address, shown, field, printed.dtype, printed.shape)
        display(values.array_view(title, printed.text, plain()))


def _printed(ds, key, width: int) -> "Printed":
    """``ds[key]`` as numpy prints it: by the subscriber, so that neither the values (all of
    them, for the few printed of a big selection) nor numpy (~40 ms) come here; by this
    process when the subscriber declines (too many values to print)."""
    from caterva.cli import values  # rich's renderables: only for show

    try:
        return ds._printed(key, min(width, printing.MAX_WIDTH))
    except NotSupported:
        value = ds[key]
    import numpy as np

    from caterva.client.calls import Printed

    value = np.asarray(value)
    return Printed(values.numpy_dtype_json(value.dtype), value.shape, printing.text(value, width))


def _offset(key, shape) -> int:
    """Where a contiguous byte range starts, for hex dump addresses (0 when it is not one)."""
    from caterva.protocol import selection

    (item,) = selection.normalize(key, shape)
    if isinstance(item, int):
        return item
    return item.start if item.step == 1 else 0


def _show_bytes(ds, preview: bool, shown: str, offset: int, value, as_json: bool) -> None:
    import numpy as np

    from caterva.cli import values

    data = np.atleast_1d(value).astype(np.uint8).tobytes()
    total = ds.nbytes if preview else len(data)
    if as_json:
        emit(
            {
                "address": ds.address,
                "selection": shown,
                "kind": ds.kind,
                "bytes": len(data),
                "total": ds.nbytes,
                **values.bytes_json(data),
            }
        )
    else:
        title = f"{ds.address}[{shown}]  {ds.kind}, {len(data):,} of {ds.nbytes:,} bytes"
        display(values.bytes_view(title, data, total, offset, plain()))


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr while the block runs; nothing when disabled."""
    if not enabled:
        yield None
        return
    progress = render.download_progress(err())
    with progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def download(
    target: Annotated[
        str, typer.Argument(metavar="ROOT[/PATH]", help="A dataset, or a whole root.")
    ],
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            metavar="DEST",
            help="File or directory to write, or - for standard output (a dataset only) "
            "[default: ./NAME, or ./ROOT for a root]. A symlink is followed, a FIFO or "
            "device written into; its directory must exist.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "--overwrite",
            "-f",
            help="Replace files that exist already (refused without it).",
        ),
    ] = False,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Download a dataset as a file (Blosc2, or a plain file's bytes), or a root as a tree.

    \b
    Examples:
      caterva download example/images/terrain.b2nd            # ./terrain.b2nd
      caterva download example -o ~/data/example --force     # the whole root
      caterva download example/README.txt -o - | less
    """
    from caterva.protocol.names import split_address

    root, path = split_address(target)
    to_stdout = output is not None and str(output) == "-"
    if to_stdout and (path is None or as_json):
        raise BadRequest(
            "`-o -` writes one dataset to standard output: not a root, nor with --json"
            if path is None
            else "`-o -` and --json both use standard output: choose one"
        )
    with connect(sub, ca_file) as client:
        # a bar only for a person watching: on a terminal, and not when piped or logged
        with _progress(f"{literal(target)} (uncompressed)", enabled=on_terminal()) as report:
            try:
                if to_stdout:
                    return _to_stdout(client, target, report)
                # the datasets come from the download's own listing: the root is listed once
                dest, infos = client._download(target, output, report, force)
            except TargetExists as exc:
                exc.message += " (--force replaces it)"
                raise
            except CatervaError:
                raise  # some are OSErrors too (UnknownDataset is a FileNotFoundError)
            except OSError as exc:
                raise CatervaError(
                    f"cannot write {exc.filename or output}: {exc.strerror or exc}"
                ) from exc
    if path is not None:
        size = dest.stat().st_size if dest.is_file() else None  # a FIFO, a device: unknown
        if as_json:
            emit({"address": target, "dest": str(dest), "bytes": size})
        else:
            told = f" ({render.size_text(size)})" if size is not None else ""
            display(f"saved {literal(target)} to {literal(dest)}{told}")
        return
    files = [
        {"path": i.path, "dest": str(dest / i.path), "bytes": (dest / i.path).stat().st_size}
        for i in infos
        if (dest / i.path).is_file()
    ]
    total = sum(f["bytes"] for f in files)
    if as_json:
        emit({"root": root, "dest": str(dest), "files": files, "bytes": total})
    else:
        display(
            f"saved {render.plural(len(files), 'dataset')} of {root} to {literal(dest)}/ "
            f"({render.size_text(total)})"
        )


def _to_stdout(client, target: str, report) -> None:
    """``-o -``: the whole verified file, then its bytes on stdout (never a partial file)."""
    import shutil
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="caterva-") as tmp:
        dest = client.download(target, Path(tmp), progress=report)
        with open(dest, "rb") as src:
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
        sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command()(show)
    app.command()(download)
