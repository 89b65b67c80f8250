"""The .npy answer of the subscriber's ``GET .../data`` route."""

from __future__ import annotations

import io

from fastapi import Response

NPY = "application/x-npy"
NPY_PIECE = 1 << 20  # an array is sent this many bytes at a time


class NpyResponse(Response):
    """An array as .npy: its header, then the array's own memory (no copy into a buffer; a
    selection can be tens of MB)."""

    def __init__(self, array) -> None:
        import numpy as np

        # asarray, not ascontiguousarray: that one turns a 0-d result (ds[i, j]) into shape (1,)
        array = np.asarray(array, order="C")
        header = io.BytesIO()
        fields = np.lib.format.header_data_from_array_1_0(array)
        try:
            np.lib.format.write_array_header_1_0(header, fields)
        except ValueError:  # a header too long for format 1.0 (huge structured dtypes)
            np.lib.format.write_array_header_2_0(header, fields)
        self._parts = (header.getvalue(), array.reshape(-1).view(np.uint8).data)
        size = len(self._parts[0]) + array.nbytes
        super().__init__(media_type=NPY, headers={"content-length": str(size)})

    async def __call__(self, scope, receive, send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        head, data = self._parts
        await send({"type": "http.response.body", "body": head, "more_body": True})
        # in pieces: the server waits for each to drain instead of copying the rest of a big
        # array into its write buffer
        for start in range(0, len(data), NPY_PIECE):
            piece = data[start : start + NPY_PIECE]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
