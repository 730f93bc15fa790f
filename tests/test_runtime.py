"""genosynth.runtime: glibc heap reuse around a training stage.

Each check runs in a fresh interpreter: free heap chunks that earlier tests of this process left behind
(training with ``heap_reuse``) may serve a large block from the heap whatever the mmap settings are.
"""

import subprocess
import sys

import pytest

from genosynth.runtime import _glibc

LIBC = _glibc()
pytestmark = pytest.mark.skipif(LIBC is None or not hasattr(LIBC, "mallinfo2"), reason="needs glibc >= 2.33")

_PROBE = '''
import ctypes
import numpy as np
from genosynth.runtime import _glibc, heap_reuse

LIBC = _glibc()

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]

LIBC.mallinfo2.restype = MallInfo2

def big_block_is_mmapped():
    before = LIBC.mallinfo2().hblks
    block = np.ones(64 << 17)  # 64 MiB: above glibc's largest mmap threshold
    grew = LIBC.mallinfo2().hblks > before
    del block
    return grew

seen = [big_block_is_mmapped()]
with heap_reuse():
    seen.append(big_block_is_mmapped())
seen.append(big_block_is_mmapped())
with heap_reuse(False):  # disabled: glibc's own behaviour
    seen.append(big_block_is_mmapped())
try:
    with heap_reuse():
        raise RuntimeError("stage failed")
except RuntimeError:
    pass
seen.append(big_block_is_mmapped())
print(" ".join(str(int(s)) for s in seen))
'''


def test_heap_reuse_serves_large_blocks_from_the_heap_inside_and_restores_after_also_after_an_error():
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True).stdout.split()
    before, inside, after, disabled, after_error = (s == "1" for s in out)
    assert before and not inside and after and disabled and after_error
