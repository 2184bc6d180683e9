"""The host allocator setting: made on glibc, refused with a clear message for nonsense."""

from __future__ import annotations

import sys

import pytest

from latentpath.allocator import keep_large_blocks


def test_keep_large_blocks_is_made_on_linux_and_left_elsewhere():
    assert keep_large_blocks() is sys.platform.startswith("linux")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1GB"])
def test_keep_large_blocks_refuses_what_is_not_a_positive_size(bad):
    with pytest.raises(ValueError, match="keep_bytes must be a positive whole number"):
        keep_large_blocks(bad)
