"""The wire protocol: names, topics, messages, selections, chunk lists and batch frames."""

from __future__ import annotations

import itertools

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caterva.errors import BadRequest, BadSelection, InvalidName, ProtocolError
from caterva.protocol import rest, selection, topics
from caterva.protocol.dtypes import dtype_from_json, dtype_to_json
from caterva.protocol.messages import Announcement, Change, Discover, Status
from caterva.protocol.metadata import DatasetInfo, chunk_digest
from caterva.protocol.names import check_path, check_root, split_address

segment = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,15}", fullmatch=True)
paths = st.lists(segment, min_size=1, max_size=4).map("/".join)


@pytest.mark.parametrize("name", ["", "a/b", "+", "#", "a+b", ".hidden", "x" * 65, "a b", "é"])
def test_bad_root_names(name):
    with pytest.raises(InvalidName):
        check_root(name)


@pytest.mark.parametrize(
    "path",
    ["", "/abs", "a//b", "a/../b", "..", "./a", "a/.", "a+b", "a/#", "a\\b", "a\x00b", "x" * 2000],
)
def test_bad_dataset_paths(path):
    with pytest.raises(InvalidName):
        check_path(path)


def test_invalid_name_is_a_value_error():
    with pytest.raises(ValueError):
        check_root("a/b")


@given(root=segment, path=paths)
def test_address_round_trip(root, path):
    assert split_address(f"{root}/{path}") == (root, path)
    assert split_address(root) == (root, None)


@given(pub=segment, root=segment)
def test_topics_parse_what_they_build(pub, root):
    assert topics.parse(topics.status(pub)) == topics.Topic("status", pub)
    assert topics.parse(topics.root(pub, root)) == topics.Topic("root", pub, root)
    assert topics.parse(topics.changes(pub, root)) == topics.Topic("changes", pub, root)


@pytest.mark.parametrize(
    "topic",
    [
        "caterva/v2/pub/a/status",
        "caterva/v1/pub/a",
        "caterva/v1/pub/+/status",
        "caterva/v1/pub/a/roots/b/c",
        "caterva/v1/pub/a/other/b",
        "elsewhere",
    ],
)
def test_foreign_topics_are_ignored(topic):
    assert topics.parse(topic) is None


messages = st.one_of(
    st.builds(
        Status,
        state=st.sampled_from(["online", "offline"]),
        session=segment,
        url=st.none() | st.just("http://127.0.0.1:8470"),
    ),
    st.builds(
        Announcement,
        root=segment,
        url=st.just("http://h:1"),
        session=segment,
        manifest_etag=segment,
        datasets=st.integers(0, 10**6),
        origin=segment,
        hops=st.lists(segment, max_size=3),
    ),
    st.builds(
        Change,
        root=segment,
        path=paths,
        op=st.sampled_from(["create", "update", "delete"]),
        session=segment,
        seq=st.integers(1, 2**40),
        manifest_etag=segment,
        etag=st.none() | segment,
        chunks=st.none() | st.lists(st.integers(0, 10**6)),
    ),
    st.builds(Discover, sender=segment),
)


@given(messages)
def test_messages_round_trip(message):
    assert type(message).from_bytes(message.to_bytes()) == message


def test_messages_tolerate_unknown_fields_and_reject_wrong_types():
    status = Status.from_bytes(b'{"proto": 2, "state": "online", "session": "s", "future": [1]}')
    assert status == Status("online", "s")
    for bad in [
        b"not json",
        b"[1]",
        b'{"state": "online", "session": "s"}',
        b'{"proto": 1, "state": "sleepy", "session": "s"}',
        b'{"proto": 1, "state": "online", "session": 5}',
        b'{"proto": true, "state": "online", "session": "s"}',
    ]:
        with pytest.raises(ProtocolError):
            Status.from_bytes(bad)
    with pytest.raises(ProtocolError):  # a path that escapes is refused at decode time
        Change.from_bytes(
            b'{"proto":1,"root":"r","path":"../x","op":"update","session":"s",'
            b'"seq":1,"manifest_etag":"e"}'
        )


# --- selections ------------------------------------------------------------------------------


def keys(ndim: int):
    bound = st.none() | st.integers(-12, 12)
    step = st.none() | st.integers(-5, 5).filter(lambda s: s != 0)
    item = st.one_of(st.integers(-4, 3), st.builds(slice, bound, bound, step))
    return st.lists(item, max_size=ndim).map(tuple)


@given(st.data())
@settings(max_examples=300)
def test_selection_text_round_trip_and_chunks_touched(data):
    shape = data.draw(st.lists(st.integers(4, 11), min_size=1, max_size=3).map(tuple))
    chunks = data.draw(st.tuples(*[st.integers(1, s) for s in shape]))
    key = data.draw(keys(len(shape)))
    if data.draw(st.booleans()) and len(key) < len(shape):
        key = (Ellipsis, *key)
    assert selection.parse(selection.format(key)) == key
    norm = selection.normalize(key, shape)
    original = np.arange(int(np.prod(shape))).reshape(shape)
    assert np.array_equal(original[norm], original[key])
    assert selection.result_shape(norm) == original[key].shape
    # brute force: which chunks hold a selected element
    grid = [-(-s // c) for s, c in zip(shape, chunks)]
    owner = np.zeros(shape, dtype=np.int64)
    for idx in itertools.product(*[range(s) for s in shape]):
        coords = [i // c for i, c in zip(idx, chunks)]
        owner[idx] = np.ravel_multi_index(coords, grid)
    expected = sorted(set(np.asarray(owner[key]).ravel().tolist()))
    assert selection.touched_chunks(norm, chunks, grid) == expected


@pytest.mark.parametrize(
    "text", ["a", "1:2:3:4", "::0", "1.5", "0,...,...", "1;2", "__import__('os')"]
)
def test_bad_selections(text):
    with pytest.raises(BadSelection):
        selection.normalize(selection.parse(text), (5, 5, 5))


def test_out_of_bounds_and_too_many_indices():
    with pytest.raises(BadSelection, match="out of bounds"):
        selection.normalize((5,), (5,))
    with pytest.raises(BadSelection, match="too many"):
        selection.normalize((0, 0), (5,))
    assert selection.normalize((), ()) == ()


# --- dtypes, chunk lists, batch frames -------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    [
        "<i4",
        ">f8",
        "<c16",
        "|S7",
        "<U5",
        "?",
        "<M8[s]",
        [("a", "<i4"), ("b", "<f8", (2, 3)), ("c", "|S3")],
        {"names": ["x", "y"], "formats": ["<u2", "<f4"], "offsets": [0, 8], "itemsize": 16},
        [("outer", [("inner", "<i2"), ("z", "<f8")])],
    ],
)
def test_dtype_json_round_trip(dtype):
    dt = np.dtype(dtype)
    assert dtype_from_json(dtype_to_json(dt)) == dt


@pytest.mark.parametrize("bad", ["O", "|O", [["a", "O"]], 5, {"names": ["a"]}, "not a dtype"])
def test_dtype_json_refuses_objects_and_garbage(bad):
    value = (
        {"names": ["a"], "formats": ["|O"], "offsets": [0], "itemsize": 8}
        if bad == [["a", "O"]]
        else bad
    )
    with pytest.raises(ProtocolError):
        dtype_from_json(value)


@given(st.sets(st.integers(0, 3000), max_size=200))
def test_chunk_lists_round_trip(indices):
    text = rest.format_indices(indices)
    assert rest.parse_indices(text) == sorted(indices) if indices else text == ""


@pytest.mark.parametrize("text", ["", "a", "1-", "-1", "5-2", "1,,2", "0-99999"])
def test_bad_chunk_lists(text):
    with pytest.raises(BadRequest):
        rest.parse_indices(text)


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_batch_frames_survive_any_split(payloads, data):
    stream = b"".join(rest.frame_header(i, p, chunk_digest(p)) + p for i, p in enumerate(payloads))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    reader, got = rest.BatchReader((i, len(p)) for i, p in enumerate(payloads)), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        got.extend(reader.feed(stream[a:b]))
    reader.close()
    assert got == [(i, chunk_digest(p), p) for i, p in enumerate(payloads)]


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_unjoined_frames_come_as_the_pieces_received(payloads, data):
    """The client's write path: each chunk as views of the pieces fed, no copy made."""
    stream = b"".join(rest.frame_header(i, p, chunk_digest(p)) + p for i, p in enumerate(payloads))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    expected = ((i, len(p)) for i, p in enumerate(payloads))
    reader, got = rest.BatchReader(expected, joined=False), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        got.extend(reader.feed(stream[a:b]))
    reader.close()
    assert all(isinstance(parts, list) for _, _, parts in got)
    assert [(i, d, b"".join(parts)) for i, d, parts in got] == [
        (i, chunk_digest(p), p) for i, p in enumerate(payloads)
    ]


def test_a_truncated_batch_is_an_error():
    reader = rest.BatchReader([(0, 3)])
    list(reader.feed(rest.frame_header(0, b"abc", chunk_digest(b"abc")) + b"ab"))
    with pytest.raises(ProtocolError):
        reader.close()


def test_a_frame_is_checked_before_its_bytes_are_kept():
    def info(chunksize: int) -> DatasetInfo:
        return DatasetInfo(
            path="a.b2nd",
            kind="b2nd",
            shape=[4],
            dtype="<f8",
            chunks=[1],
            blocks=[1],
            nchunks=4,
            chunksize=chunksize,
            nbytes=32,
            cbytes=32,
            cparams={},
            vlmeta={},
            digests=["0" * 32] * 4,
        )

    # two datasets, each its chunks ascending: what format_indices asks for
    expected = list(rest.expected_frames([(info(8), [3, 1, 1]), (info(100), [0])]))
    assert expected == [(1, 8 + 32), (3, 8 + 32), (0, 100 + 32)]
    assert rest.MAX_OVERHEAD == blosc2.MAX_OVERHEAD

    def fed(*frames: tuple[int, int]) -> list:
        reader = rest.BatchReader(expected)
        stream = b"".join(rest.FRAME.pack(i, n, bytes(16)) for i, n in frames)
        return list(reader.feed(stream + b"x" * 64))  # only headers: no frame completes

    with pytest.raises(ProtocolError, match="chunk 3 where chunk 1 was due"):
        fed((3, 1))
    with pytest.raises(ProtocolError, match="announced 41 bytes for chunk 1"):
        fed((1, 41))
    with pytest.raises(ProtocolError, match=f"announced {2**40} bytes"):
        fed((1, 2**40))
    reader = rest.BatchReader([(5, 3)])
    frame = rest.frame_header(5, b"abc", "0" * 32) + b"abc"
    assert len(list(reader.feed(frame))) == 1
    with pytest.raises(ProtocolError, match="after every chunk asked for"):
        list(reader.feed(frame))
