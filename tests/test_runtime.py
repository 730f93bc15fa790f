"""genosynth.runtime: glibc heap reuse around a training stage."""

import ctypes

import numpy as np
import pytest

from genosynth.runtime import _glibc, heap_reuse

LIBC = _glibc()
pytestmark = pytest.mark.skipif(LIBC is None or not hasattr(LIBC, "mallinfo2"), reason="needs glibc >= 2.33")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]


def mmapped_blocks() -> int:
    LIBC.mallinfo2.restype = _MallInfo2
    return int(LIBC.mallinfo2().hblks)


def big_block_is_mmapped() -> bool:
    before = mmapped_blocks()
    block = np.ones(64 << 17)  # 64 MiB: above glibc's largest mmap threshold
    grew = mmapped_blocks() > before
    del block
    return grew


def test_heap_reuse_serves_large_blocks_from_the_heap_inside_and_restores_after():
    assert big_block_is_mmapped()
    with heap_reuse():
        assert not big_block_is_mmapped()
    assert big_block_is_mmapped()
    with heap_reuse(False):  # disabled: glibc's own behaviour
        assert big_block_is_mmapped()


def test_heap_reuse_restores_after_an_error():
    with pytest.raises(RuntimeError), heap_reuse():
        raise RuntimeError("stage failed")
    assert big_block_is_mmapped()
