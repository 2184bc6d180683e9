"""The host allocator setting: made on glibc, refused with a clear message for nonsense."""

from __future__ import annotations

import numpy as np
import pytest

from latentpath.allocator import has_glibc, keep_large_blocks


def test_keep_large_blocks_is_made_on_glibc_and_left_elsewhere():
    assert keep_large_blocks() is has_glibc()
    assert keep_large_blocks(np.int64(1 << 30)) is has_glibc()


@pytest.mark.parametrize("bad", [0, -1, 1 << 31, True, 1.5, "1GB"])
def test_keep_large_blocks_refuses_what_is_not_a_size_mallopt_takes(bad):
    with pytest.raises(ValueError, match="keep_bytes must be"):
        keep_large_blocks(bad)
