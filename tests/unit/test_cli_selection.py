"""Selection errors say what is wrong without printing what they were given whole."""

from __future__ import annotations

import numpy as np
import pytest

from caterva.errors import BadSelection
from caterva.protocol import selection


@pytest.mark.parametrize("text", ["[1, 2]", "[[1, 2]]", "[1,2], 3", "0, [True, False]"])
def test_list_indexing_is_named(text):
    with pytest.raises(BadSelection, match="^list indexing is not supported"):
        selection.parse(f"[{text}]")


@pytest.mark.parametrize("key", [[1, 2], ([0, 1],)])
def test_list_keys_are_named(key):
    with pytest.raises(BadSelection, match="^list indexing is not supported"):
        selection.normalize(key, (10,))


def test_a_mask_is_described_not_printed():
    mask = np.ones(1_000_000, bool)
    with pytest.raises(BadSelection) as info:
        selection.normalize((mask,), (1_000_000,))
    assert str(info.value) == (
        "only integers, slices and ... are supported, not an array of shape (1000000,) and "
        "dtype bool"
    )


def test_long_text_is_cut():
    with pytest.raises(BadSelection) as info:
        selection.parse("x" * 10_000)
    assert len(str(info.value)) < 200
