"""numpy dtypes <-> JSON, losslessly: what DatasetInfo.dtype holds.

Apart from caterva.protocol.layout and caterva.protocol.gather (which need blosc2, ~0.1-0.3 s
to import), so a client that only decodes arrays, like `caterva show`, loads numpy and nothing
heavier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from caterva.errors import ProtocolError


def dtype_to_json(dt: np.dtype) -> Any:
    """A lossless JSON form: a dtype string, or a dict for structured and sub-array dtypes."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": dtype_to_json(base), "shape": list(shape)}
    if dt.names is None:
        return dt.str
    return {
        "names": list(dt.names),
        "formats": [dtype_to_json(dt.fields[n][0]) for n in dt.names],
        "offsets": [dt.fields[n][1] for n in dt.names],
        "itemsize": dt.itemsize,
    }


def dtype_from_json(value: Any) -> np.dtype:
    try:
        if isinstance(value, str):
            dt = np.dtype(value)
        elif isinstance(value, dict) and "base" in value:
            dt = np.dtype((dtype_from_json(value["base"]), tuple(int(n) for n in value["shape"])))
        elif isinstance(value, dict):
            dt = np.dtype(
                {
                    "names": [str(n) for n in value["names"]],
                    "formats": [dtype_from_json(f) for f in value["formats"]],
                    "offsets": [int(o) for o in value["offsets"]],
                    "itemsize": int(value["itemsize"]),
                }
            )
        else:
            raise TypeError(type(value).__name__)
    except (TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(f"invalid dtype description: {value!r:.80}") from exc
    if dt.hasobject:
        raise ProtocolError("object dtypes are not supported")
    return dt
