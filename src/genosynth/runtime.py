"""Where and how computation runs: device choice, deterministic kernels, progress bars."""

from __future__ import annotations

import contextlib
import torch
from genosynth.errors import InputError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when present)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu, cuda or auto, got {device!r}")
    return torch.device(device)


@contextlib.contextmanager
def deterministic():
    """Deterministic torch algorithms inside the block (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def progress_bar(total: int | None, desc: str, enabled: bool, initial: int = 0, *, unit: str = "epoch",
                 delay: float = 0.0):
    """A tqdm bar of ``total`` ``unit`` (None when ``enabled`` is False); shown after ``delay`` seconds."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True, delay=delay)


# glibc mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
#: glibc's largest mmap threshold on 64-bit: blocks below it can come from the heap (reused, no page zeroing).
#: Its dynamic threshold settles here under PyTorch's large frees; this and twice it (the matching trim
#: threshold) are the values restored after :func:`heap_reuse`
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20
_KEEP_FREED = 2**31 - 1  # mallopt takes a C int: keep up to 2 GiB of freed heap top


def _glibc():
    """The C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def heap_reuse(enabled: bool = True):
    """Serve large CPU blocks from glibc's heap and keep freed memory inside the block; give it back after.

    glibc serves every block above its mmap threshold (32 MiB at most) with a fresh ``mmap`` and
    ``munmap``s it on free, so a training step that makes many 50-150 MB tensors (the VAE at 10^5 SNPs)
    has the kernel zero-fill gigabytes of fresh pages at every step: measured at 100,000 SNPs on 2
    threads, a 128-row VAE step took 7.1 s (6.6 s of it system time) in one pass, about 3.4 s with the
    heap kept (for about 1.2 GiB more peak RSS) and 2.4 s with the heap kept and 32-row micro-batches
    (``training.vae_micro_batch``, 0.9 GiB less peak RSS than one pass; benchmarks/RESULTS.md, "Training
    cost at 100,000 SNPs"). Inside the block
    ``mallopt(M_MMAP_MAX, 0)`` and a 2 GiB trim threshold do what the environment variables of
    docs/scaling.md do for a whole process; on exit the mmap and trim thresholds are set to the values
    glibc's dynamic thresholds settle at (32 and 64 MiB) and ``malloc_trim(0)`` returns the freed
    heap to the system. A no-op when ``enabled`` is False or the C library is not glibc.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, 65536)  # glibc's default
        libc.mallopt(_M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD_MAX)
        libc.malloc_trim(0)
